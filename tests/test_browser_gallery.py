"""Images shown properly, in a real browser (Playwright driving Debian's Chromium) against the live
server, PostgreSQL, Redis and a real worker: a look's page keeps the image's shape, the lightbox
over the collection and the studio's progress panel, the collection's search and its dates in
the browser's time zone."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, BrowserContext, Dialog, Page, expect

from generation.models import Look
from generation.services.submit import JobSpec, job_submit
from tests.browser import DESKTOP, PHONE, SLOW, PolicyWatch, log_in, screenshot
from tests.conftest import wait_for_finish
from tests.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


@pytest.fixture(scope="module")
def stack(make_stack):
    return make_stack(LOCAL_PROVIDER_LATENCY_MS="600")


@pytest.fixture(autouse=True)
def _waits_for_the_worker():
    """A page shows a job's next state at its next poll, when the worker (sharing a busy machine)
    gets there: each `expect` here waits up to SLOW, then Playwright's default is restored."""
    expect.set_options(timeout=SLOW)
    yield
    expect.set_options(timeout=None)


@pytest.fixture
def new_context(browser: Browser, live_server):
    """Browser contexts (a viewport, a time zone) that must do all they do under the policy."""
    made: list[tuple[BrowserContext, PolicyWatch]] = []

    def make(viewport: dict = DESKTOP, **options: object) -> BrowserContext:
        context = browser.new_context(base_url=live_server.url, viewport=viewport, accept_downloads=True, **options)
        context.set_default_timeout(SLOW)
        made.append((context, PolicyWatch(context)))
        return context

    yield make
    for context, watch in made:
        for page in context.pages:
            page.wait_for_load_state()  # refusals still on their way are reported
        context.close()
        assert watch.refusals == []  # the pages did all they did under the Content-Security-Policy


def finished_looks(person, prompt: str, count: int = 1, aspect_ratio: str = "1:1") -> list[Look]:  # type: ignore[no-untyped-def]
    """A job made by the worker, and its looks in the collection (newest first, as shown)."""
    spec = JobSpec(prompt=prompt, count=count, params={"aspect_ratio": aspect_ratio})
    job = job_submit(team=person.team, user=person.user, spec=spec).job
    assert wait_for_finish(job.id).status == "succeeded"
    wait_until(lambda: Look.objects.filter(job=job).count() == count, timeout=10)
    return list(Look.objects.filter(job=job).select_related("output").order_by("-created_at", "-output__index"))


def images_loaded(page: Page) -> None:
    """Waits for the thumbnails on the screen to be drawn (a screenshot should show them)."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('.gallery img')].every("
        " img => img.getBoundingClientRect().top > innerHeight || (img.complete && img.naturalWidth > 0))"
    )


def shown_ratio(page: Page, selector: str) -> tuple[float, float]:
    """The ratio of the element's box on the screen and of the picture it holds, once loaded."""
    page.wait_for_function(
        f"() => {{ const img = document.querySelector('{selector}');"
        " return img && img.complete && img.naturalWidth > 0; }"
    )
    box, natural = page.locator(selector).evaluate(
        "img => { const r = img.getBoundingClientRect();"
        " return [r.width / r.height, img.naturalWidth / img.naturalHeight]; }"
    )
    return box, natural


@pytest.mark.parametrize("aspect_ratio", ["16:9", "1:1", "9:16"])
def test_the_look_page_and_the_lightbox_keep_the_images_shape(stack, alice, new_context, aspect_ratio):
    (look,) = finished_looks(alice, f"a lighthouse at {aspect_ratio}", aspect_ratio=aspect_ratio)
    width, height = (int(part) for part in aspect_ratio.split(":"))
    assert abs(look.output.width / look.output.height - width / height) < 0.02  # the provider honoured it

    for viewport in (DESKTOP, PHONE):
        page = log_in(new_context(viewport), alice.user.email)
        page.goto(f"/collection/{look.id}/")
        box, natural = shown_ratio(page, "[data-testid=full-image]")
        assert abs(box / natural - 1) < 0.01, (viewport, box, natural)
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]

        page.goto("/collection/")
        page.get_by_test_id("look").first.get_by_role("link").click()
        expect(page.get_by_test_id("lightbox")).to_be_visible()
        box, natural = shown_ratio(page, "[data-testid=lightbox-image]")
        assert abs(box / natural - 1) < 0.01, (viewport, box, natural)
        image = page.get_by_test_id("lightbox-image").bounding_box()
        assert image and image["width"] <= viewport["width"] and image["y"] + image["height"] <= viewport["height"]


def test_the_lightbox_steps_through_the_collection_with_keys_and_gives_focus_back(stack, alice, new_context):
    looks = finished_looks(alice, "three moods of a fox", count=3, aspect_ratio="16:9")
    square = finished_looks(alice, "a square tile")
    shown = square + looks  # newest first
    page = log_in(new_context(), alice.user.email)
    page.goto("/collection/")
    expect(page.get_by_test_id("look")).to_have_count(4)
    thumbnails = page.locator("[data-gallery] a[data-lightbox]")
    lightbox = page.get_by_test_id("lightbox")
    image = page.get_by_test_id("lightbox-image")
    counter = page.get_by_test_id("lightbox-counter")

    thumbnails.nth(1).click()
    expect(lightbox).to_be_visible()
    expect(counter).to_have_text("2 of 4")
    expect(image).to_have_attribute("src", shown[1].output.get_absolute_url())
    expect(page.get_by_test_id("lightbox-title")).to_contain_text("three moods of a fox")
    expect(page.get_by_test_id("lightbox-download")).to_have_attribute("href", shown[1].output.get_absolute_url())
    expect(page.get_by_test_id("lightbox-open")).to_have_attribute("href", f"/collection/{shown[1].id}/")
    expect(lightbox.locator(f'form[action="/collection/{shown[1].id}/remix/"]')).to_have_count(1)
    page.wait_for_function("() => document.querySelector('[data-testid=lightbox-image]').complete")
    screenshot(page, "lightbox.png", full_page=False)

    page.keyboard.press("ArrowRight")
    expect(counter).to_have_text("3 of 4")
    expect(image).to_have_attribute("src", shown[2].output.get_absolute_url())
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    expect(counter).to_have_text("1 of 4")
    expect(page.get_by_test_id("lightbox-title")).to_contain_text("a square tile")
    page.keyboard.press("ArrowLeft")  # round to the last
    expect(counter).to_have_text("4 of 4")
    page.get_by_test_id("lightbox-next").click()
    expect(counter).to_have_text("1 of 4")

    for _ in range(12):  # Tab goes round inside the lightbox, never to the page behind it
        page.keyboard.press("Tab")
        assert page.evaluate("!!document.activeElement.closest('dialog[open]')")

    page.keyboard.press("Escape")
    expect(lightbox).to_be_hidden()
    # The dialog's `close` event (which gives focus back) is a task of its own, after the hiding.
    page.wait_for_function(
        "full => document.activeElement.closest('[data-testid=look]') !== null"
        " && document.activeElement.dataset.full === full",
        arg=shown[0].output.get_absolute_url(),
    )

    thumbnails.nth(3).click()
    expect(counter).to_have_text("4 of 4")
    page.mouse.click(8, 8)  # outside the lightbox: on its backdrop
    expect(lightbox).to_be_hidden()
    page.wait_for_function(
        "full => document.activeElement.dataset.full === full", arg=shown[3].output.get_absolute_url()
    )


def test_delete_from_the_lightbox_asks_then_removes_the_look_and_stays_in_place(stack, alice, new_context):
    looks = finished_looks(alice, "keep or delete", count=2)
    page = log_in(new_context(), alice.user.email)
    page.goto("/collection/?q=delete")
    expect(page.get_by_test_id("look")).to_have_count(2)
    questions: list[str] = []

    def answer(dialog: Dialog) -> None:
        questions.append(dialog.message)
        dialog.dismiss() if len(questions) == 1 else dialog.accept()

    page.on("dialog", answer)
    page.locator("[data-gallery] a[data-lightbox]").first.click()
    delete = page.get_by_test_id("lightbox-delete")
    delete.click()  # asked, and answered "no"
    expect(page.get_by_test_id("lightbox")).to_be_visible()
    assert questions == ["Delete this look from the collection? This cannot be undone."]
    assert Look.objects.filter(id=looks[0].id).exists()
    delete.click()  # asked again, and answered "yes"
    page.wait_for_url("**/collection/?q=delete")
    expect(page.get_by_test_id("look")).to_have_count(1)
    assert list(Look.objects.filter(team=alice.team).values_list("id", flat=True)) == [looks[1].id]
    expect(page.get_by_test_id("search")).to_have_value("delete")  # back where the person was


def test_the_lightbox_opens_from_the_studio_progress_panel_while_images_arrive(stack, alice, new_context):
    page = log_in(new_context(), alice.user.email)
    page.get_by_test_id("prompt").fill("a studio lightbox while it runs")
    page.get_by_test_id("count").select_option("4")
    page.get_by_test_id("generate").click()
    expect(page.get_by_test_id("status")).to_have_text("Running")
    page.get_by_test_id("thumb").first.click()
    lightbox = page.get_by_test_id("lightbox")
    expect(lightbox).to_be_visible()
    expect(page.get_by_test_id("lightbox-title")).to_contain_text("Image 1")

    # The panel is swapped by every poll while the lightbox is open; it stays, and what arrives joins it.
    expect(page.get_by_test_id("status")).to_have_text("Succeeded")
    expect(lightbox).to_be_visible()
    page.keyboard.press("ArrowRight")
    expect(page.get_by_test_id("lightbox-counter")).to_have_text("2 of 4")
    expect(page.get_by_test_id("lightbox-title")).to_contain_text("Image 2")
    page.keyboard.press("Escape")
    expect(lightbox).to_be_hidden()
    page.wait_for_function(
        "() => document.activeElement.closest('[data-testid=thumbs]') !== null"
        " && document.activeElement.dataset.label === 'Image 2'"
    )

    job_link = page.get_by_test_id("progress").get_by_role("link", name=re.compile("a studio lightbox"))
    page.goto(job_link.get_attribute("href"))  # the job's page shows the same panel
    page.get_by_test_id("thumb").nth(2).click()
    expect(page.get_by_test_id("lightbox-counter")).to_have_text("3 of 4")
    page.get_by_test_id("lightbox-close").click()
    expect(lightbox).to_be_hidden()


def test_search_and_filters_in_the_collection_with_dates_in_the_browsers_zone(stack, alice, charlie, new_context):
    foxes = finished_looks(alice, "A watercolor fox by a river", count=2, aspect_ratio="4:3")
    finished_looks(alice, "teal marble nails", count=3)
    finished_looks(charlie, "watercolor fox of another team")

    page = log_in(new_context(timezone_id="Asia/Tokyo"), alice.user.email)
    page.goto("/collection/")
    expect(page.get_by_test_id("look")).to_have_count(5)
    tokyo = foxes[0].created_at.astimezone(ZoneInfo("Asia/Tokyo"))
    expect(page.get_by_test_id("look-date").nth(3)).to_have_text(f"{tokyo.day} {tokyo:%b %Y, %H:%M} JST")

    page.get_by_test_id("search").fill("WATERCOLOR")
    page.get_by_test_id("kind").select_option("image")
    page.get_by_test_id("provider").select_option("local")
    page.get_by_test_id("period").select_option("today")
    page.get_by_test_id("apply-filters").click()
    expect(page.get_by_test_id("look")).to_have_count(2)
    expect(page.get_by_test_id("search-count")).to_have_text("2 looks match.")
    expect(page.locator("[data-testid=look] .prompt").first).to_have_text("A watercolor fox by a river")
    images_loaded(page)
    screenshot(page, "collection.png", full_page=False)

    page.get_by_test_id("kind").select_option("clip")
    page.get_by_test_id("apply-filters").click()
    expect(page.get_by_test_id("no-match")).to_contain_text("No look matches “WATERCOLOR”.")
    page.get_by_test_id("no-match-reset").click()
    expect(page.get_by_test_id("look")).to_have_count(5)

    page.goto("/collection/?date_from=2026-02-30&provider=dall-e")
    expect(page.get_by_test_id("search-notes")).to_contain_text("“2026-02-30” is not a date we can use")
    expect(page.get_by_test_id("search-notes")).to_contain_text("There is no provider “dall-e”")
    expect(page.get_by_test_id("look")).to_have_count(5)

    phone = log_in(new_context(PHONE, timezone_id="Asia/Tokyo"), alice.user.email)
    phone.goto("/collection/?q=fox")
    expect(phone.get_by_test_id("look")).to_have_count(2)
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    images_loaded(phone)
    screenshot(phone, "collection-phone.png", full_page=False)
