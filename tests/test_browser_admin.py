"""The operator `make run` prints, in a real browser: the admin's job page shows the job's images
and downloads its zip; and the team's credits page, on a desktop and on a phone."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import Browser, BrowserContext, Page, expect

from generation.models import GenerationJob
from generation.providers.base import OutputRequest
from generation.providers.local import LocalProvider
from tests.browser import DESKTOP, PHONE, SLOW, PolicyWatch, log_in, screenshot
from tests.helpers import job_deliver
from tests.processes import ROOT
from tests.test_credits_page import failed, submit, succeeded
from tests.test_zip_names import job_with_images

pytestmark = pytest.mark.django_db(transaction=True)


def makefile_default(name: str) -> str:
    """A variable's value in the Makefile (`NAME ?= value`): what `make run` uses and prints."""
    return re.search(rf"^{name} \??= (\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)


@pytest.fixture
def operator_login() -> tuple[str, str]:
    """The demo's bootstrap as `make run` calls it; the operator login it prints."""
    email, password = makefile_default("OPERATOR_EMAIL"), makefile_default("OPERATOR_PASSWORD")
    call_command(
        "bootstrap", email=makefile_default("DEMO_EMAIL"), password=makefile_default("DEMO_PASSWORD"),
        team="Demo", credits=500, operator_email=email, operator_password=password,
    )  # fmt: skip
    return email, password


@pytest.fixture
def context(browser: Browser, live_server) -> BrowserContext:
    context = browser.new_context(
        base_url=live_server.url, viewport=DESKTOP, accept_downloads=True, timezone_id="Europe/Paris"
    )
    context.set_default_timeout(SLOW)
    watch = PolicyWatch(context)
    yield context
    for page in context.pages:
        page.wait_for_load_state()
    context.close()
    assert watch.refusals == []


def images_loaded(page: Page, selector: str) -> int:
    page.wait_for_function(f"() => [...document.querySelectorAll('{selector}')].every(i => i.complete)")
    return page.evaluate(f"() => [...document.querySelectorAll('{selector}')].filter(i => i.naturalWidth > 0).length")


def test_the_printed_operator_sees_a_jobs_images_and_downloads_its_zip_in_the_admin(
    alice, operator_login, context, tmp_path
):
    now = timezone.now()
    prompt = "Golden roses at dusk over the old harbour, oil on canvas"
    drawn = [
        LocalProvider(latency_ms=0, failure_rate=0).generate(
            OutputRequest(job_id="admin", kind="image", model="atelier-sketch-1", prompt=prompt, index=n, seed=7 + n)
        )
        for n in range(3)
    ]  # images as the local provider draws them, for the screenshot
    made_at = [now - timedelta(seconds=s) for s in (9, 6, 3)]
    job = job_with_images(alice.team, prompt, made_at, [output.content for output in drawn])
    email, password = operator_login
    page = context.new_page()
    page.goto("/admin/")
    page.locator("#id_username").fill(email)
    page.locator("#id_password").fill(password)
    page.locator("input[type=submit]").click()
    expect(page.locator("#site-name")).to_be_visible()

    page.goto("/admin/generation/generationjob/")
    row = page.locator("#result_list tbody tr").first
    expect(row.locator("th a")).to_have_text("Golden roses at dusk over the old harbour, oil on canvas")
    expect(row.locator(".field-progress")).to_have_text("3 of 3")
    row.locator("th a").click()

    expect(page.locator("h1")).to_contain_text("Job: Golden roses at dusk")
    expect(page.get_by_test_id("admin-zip")).to_have_text("Download zip (3 images)")
    assert images_loaded(page, "[data-testid=admin-output] img") == 6  # the job's files, and the inline rows
    expect(page.locator(".field-number")).to_have_text(["Image 1", "Image 2", "Image 3"])
    page.get_by_test_id("admin-zip").scroll_into_view_if_needed()
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "admin-job.png", full_page=False)  # the page as an operator first sees it

    with page.expect_download() as download_info:
        page.get_by_test_id("admin-zip").click()
    path = tmp_path / "job.zip"
    download_info.value.save_as(path)
    assert download_info.value.suggested_filename == "golden-roses-at-dusk-over-the-old.zip"
    archive = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    assert archive.namelist() == [f"golden-roses-at-dusk-over-the-old-{n}.png" for n in (1, 2, 3)]
    assert all(archive.read(name).startswith(b"\x89PNG") for name in archive.namelist())
    assert str(job.id) in page.url


def test_the_credits_page_shows_one_row_per_job_on_a_desktop_and_a_phone(alice, context):
    succeeded(alice, "ten roses in a tall glass vase on a sunny windowsill", 10)
    failed(alice, "a storm over the harbour at night", 4, delivered=1)
    running = submit(alice, "paper lanterns drifting over a quiet river town, watercolour", 2)
    job_deliver(job=running, indexes=[0])
    GenerationJob.objects.filter(id=running.id).update(
        status=GenerationJob.Status.RUNNING,
        started_at=timezone.now(),
        lease_owner="worker-1",
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )
    page = log_in(context, alice.user.email)
    page.goto("/credits/")
    expect(page.get_by_test_id("credit-job")).to_have_count(3)
    expect(page.get_by_test_id("credit-entry")).to_have_count(1)  # the team's starting grant
    expect(page.get_by_text("Times are in Europe/Paris.")).to_be_visible()
    first = page.get_by_test_id("credit-job").first
    expect(first.get_by_test_id("credit-images")).to_have_text("1 of 2 images")
    expect(first).to_contain_text("Running")  # still holding credits
    screenshot(page, "credits.png")

    page.set_viewport_size(PHONE)
    page.reload()
    expect(page.get_by_test_id("credit-job")).to_have_count(3)
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scroll
    assert page.evaluate(
        "() => document.querySelector('[data-testid=credit-activity]').scrollWidth"
        " <= document.querySelector('.table-scroll').clientWidth"
    )  # nor within the table: every column it keeps on a phone fits
    screenshot(page, "credits-phone.png")

    page.get_by_test_id("ledger-link").click()
    expect(page.get_by_test_id("ledger-entry")).to_have_count(1 + 11 + 3 + 2)  # grant; 10 images; 1 + release; 1
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
