"""Remix and "More like this" in a real browser (Playwright driving Debian's Chromium) against
the live server, PostgreSQL, Redis and a real worker."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage
from playwright.sync_api import Browser, BrowserContext, Page, expect

from generation.models import GenerationJob, InputAsset, Look, RemixMode
from tests.browser import DESKTOP, SLOW, PolicyWatch, log_in, screenshot
from tests.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

PROMPT = "a watercolor fox in the snowy forest at dawn, soft light"


@pytest.fixture(scope="module")
def stack(make_stack):
    return make_stack(LOCAL_PROVIDER_LATENCY_MS="300")


@pytest.fixture
def context(browser: Browser, live_server) -> BrowserContext:
    context = browser.new_context(base_url=live_server.url, viewport=DESKTOP)
    context.set_default_timeout(SLOW)
    watch = PolicyWatch(context)
    yield context
    for page in context.pages:
        page.wait_for_load_state()  # refusals still on their way are reported
    context.close()
    assert watch.refusals == []  # the page did all it did under the Content-Security-Policy


def a_finished_look(page: Page, team) -> Look:  # type: ignore[no-untyped-def]
    """Generates one image with a known seed from the studio, then opens its look's page."""
    page.get_by_test_id("prompt").fill(PROMPT)
    page.get_by_test_id("count").select_option("1")
    page.locator("[name=style]").select_option("minimal")
    page.locator("[name=aspect_ratio]").select_option("16:9")
    page.get_by_test_id("seed").fill("4242")
    page.get_by_test_id("generate").click()
    expect(page.get_by_test_id("status")).to_have_text("Succeeded")
    wait_until(lambda: Look.objects.filter(team=team).exists(), timeout=10)
    look = Look.objects.select_related("output", "job").get(team=team)
    page.goto(f"/collection/{look.id}/")
    expect(page.get_by_test_id("full-image")).to_be_visible()
    return look


def file_bytes(name: str) -> bytes:
    with default_storage.open(name, "rb") as handle:
        return handle.read()


def test_remix_attaches_the_look_with_a_new_seed_and_one_image(stack, alice, context):
    page = log_in(context, alice.user.email)
    look = a_finished_look(page, alice.team)
    screenshot(page, "look-remix-controls.png", full_page=False)

    page.get_by_test_id("remix").click()  # "Remix with this as reference"
    page.wait_for_url("**/studio/*/")

    expect(page.get_by_test_id("tab-link").last).to_contain_text("Remix: a watercolor fox in the snowy forest at…")
    expect(page.get_by_text("This look is attached as reference 1; a new seed is drawn")).to_be_visible()
    expect(page.get_by_test_id("prompt")).to_have_value(PROMPT)
    expect(page.get_by_test_id("style")).to_have_value("minimal")
    expect(page.get_by_test_id("aspect_ratio")).to_have_value("16:9")
    expect(page.get_by_test_id("seed")).to_have_value("")  # no stale seed: a new one is drawn
    expect(page.get_by_test_id("count")).to_have_value("1")
    asset = InputAsset.objects.get(team=alice.team)
    kept = page.locator(f"img[src*='{asset.id}']")
    expect(kept).to_be_visible()  # the look, kept as the first reference
    assert kept.evaluate("image => image.complete && image.naturalWidth > 0")
    screenshot(page, "remix-tab.png", full_page=False)

    page.get_by_test_id("generate").click()
    expect(page.get_by_test_id("status")).to_have_text("Succeeded")
    remix = GenerationJob.objects.exclude(id=look.job_id).get(team=alice.team)
    [link] = remix.reference_links.select_related("asset")
    assert link.role == "reference" and file_bytes(link.asset.file.name) == file_bytes(look.output.file.name)
    assert remix.total_outputs == 1 and remix.params["seed"] != 4242
    assert remix.remix_of_id == look.output_id and remix.remix_mode == RemixMode.REFERENCE

    page.goto(f"/jobs/{remix.id}/")
    expect(page.get_by_test_id("lineage")).to_contain_text("Remix of image 1 of")
    screenshot(page, "remix-lineage.png", full_page=False)
    page.get_by_test_id("remix-parent-link").click()
    page.wait_for_url(f"**/jobs/{look.job_id}/")
    page.get_by_test_id("remix-child-link").click()
    page.wait_for_url(f"**/jobs/{remix.id}/")


def test_edit_this_image_opens_an_edit_of_the_look(stack, alice, context):
    page = log_in(context, alice.user.email)
    look = a_finished_look(page, alice.team)

    page.get_by_test_id("remix-edit").click()
    page.wait_for_url("**/studio/*/")

    expect(page.get_by_test_id("tab-link").last).to_contain_text("Edit: a watercolor fox in the snowy forest at…")
    expect(page.get_by_test_id("kind")).to_have_value("edit")
    asset = InputAsset.objects.get(team=alice.team)
    expect(page.locator(f"img[src*='{asset.id}']")).to_be_visible()  # the look, kept as the source
    page.get_by_test_id("generate").click()
    expect(page.get_by_test_id("status")).to_have_text("Succeeded")
    edit = GenerationJob.objects.exclude(id=look.job_id).get(team=alice.team)
    assert edit.kind == "edit" and file_bytes(edit.source_asset.file.name) == file_bytes(look.output.file.name)
    assert edit.remix_mode == RemixMode.SOURCE and edit.params["seed"] != 4242


def test_more_like_this_makes_variations_in_a_new_tab_where_they_progress(stack, alice, context):
    page = log_in(context, alice.user.email)
    look = a_finished_look(page, alice.team)
    button = page.get_by_test_id("more-like-this")
    expect(button).to_have_text("More like this · 4 images · 4 credits")

    button.click()
    page.wait_for_url("**/studio/*/")

    expect(page.get_by_test_id("tab-link").last).to_contain_text("Variations: a watercolor fox in the snowy forest at…")
    expect(page.get_by_test_id("status")).to_have_text("Succeeded")
    expect(page.get_by_test_id("thumb")).to_have_count(4)
    variations = GenerationJob.objects.exclude(id=look.job_id).get(team=alice.team)
    [link] = variations.reference_links.select_related("asset")
    assert file_bytes(link.asset.file.name) == file_bytes(look.output.file.name)
    assert variations.remix_mode == RemixMode.VARIATIONS and variations.params["seed"] != 4242
