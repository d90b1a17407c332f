"""The studio in a real browser (Playwright driving Debian's Chromium) against the live server,
PostgreSQL, Redis and a real worker."""

from __future__ import annotations

import io
import zipfile

import pytest
from playwright.sync_api import Browser, BrowserContext, Dialog, Page, expect

from generation.models import GeneratedOutput, GenerationJob, Look
from tests.browser import DESKTOP, SLOW, PolicyWatch, log_in, screenshot
from tests.conftest import wait_for_finish, wait_for_job
from tests.factories import png_bytes
from tests.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


@pytest.fixture(scope="module")
def stack(make_stack):
    return make_stack(LOCAL_PROVIDER_LATENCY_MS="700")


@pytest.fixture
def context(browser: Browser, live_server) -> BrowserContext:
    context = browser.new_context(base_url=live_server.url, viewport=DESKTOP, accept_downloads=True)
    context.set_default_timeout(SLOW)
    watch = PolicyWatch(context)
    yield context
    for page in context.pages:
        page.wait_for_load_state()  # refusals still on their way are reported
    context.close()
    assert watch.refusals == []  # the page did all it did under the Content-Security-Policy


def generate(page: Page, prompt: str, count: int, **selects: str) -> None:
    page.get_by_test_id("prompt").fill(prompt)
    page.get_by_test_id("count").select_option(str(count))
    for name, value in selects.items():
        page.locator(f"[name={name}]").select_option(value) if name != "seed" else page.get_by_test_id("seed").fill(
            value
        )
    page.get_by_test_id("generate").click()
    expect(page.get_by_test_id("progress")).to_contain_text(prompt[:40])


def open_tab(page: Page, position: int) -> None:
    page.get_by_test_id("tab-link").nth(position).click()
    page.wait_for_load_state()


def test_two_tabs_each_show_their_own_progress_and_results(stack, alice, context):
    page = log_in(context, alice.user.email)
    generate(page, "ocean waves at night, tab one", 4)
    page.get_by_test_id("new-tab").click()
    page.wait_for_url("**/studio/*/")
    generate(page, "golden roses in a garden, tab two", 3, style="artistic")
    expect(page.get_by_test_id("counter")).to_contain_text("of 3")

    open_tab(page, 0)
    expect(page.get_by_test_id("progress")).to_contain_text("tab one")
    expect(page.get_by_test_id("counter")).to_contain_text("of 4")
    expect(page.get_by_test_id("thumb").first).to_be_visible()  # images land one by one while we watch
    screenshot(page, "studio-mid-generation.png")
    expect(page.get_by_test_id("status")).to_have_text("Succeeded")
    expect(page.get_by_test_id("counter")).to_have_text("4 of 4")
    expect(page.get_by_test_id("thumb")).to_have_count(4)

    open_tab(page, 1)
    expect(page.get_by_test_id("progress")).to_contain_text("tab two")
    expect(page.get_by_test_id("status")).to_have_text("Succeeded")
    expect(page.get_by_test_id("thumb")).to_have_count(3)
    jobs = {job.prompt: job for job in GenerationJob.objects.filter(team=alice.team)}
    assert jobs["ocean waves at night, tab one"].tab_id != jobs["golden roses in a garden, tab two"].tab_id
    assert {job.status for job in jobs.values()} == {"succeeded"}


def test_leaving_and_reloading_never_stop_the_job_and_the_tab_resumes_it(stack, alice, context):
    page = log_in(context, alice.user.email)
    generate(page, "a job that outlives the page", 4)
    tab_url = page.url
    page.goto("/collection/")
    expect(page.get_by_role("heading", name="Collection")).to_be_visible()
    page.goto(tab_url)
    expect(page.get_by_test_id("progress")).to_contain_text("outlives the page")
    page.reload()
    expect(page.get_by_test_id("progress")).to_contain_text("outlives the page")
    expect(page.get_by_test_id("status")).to_have_text("Succeeded")
    expect(page.get_by_test_id("thumb")).to_have_count(4)
    job = GenerationJob.objects.get(prompt="a job that outlives the page")
    assert job.status == "succeeded" and job.completed_outputs == 4


def test_closing_the_browser_then_returning_shows_what_finished_and_their_images(stack, alice, browser, live_server):
    # No worker until the person has left: a job that ended while a page was open would have
    # been shown ending there (the live banner), so not "while you were away".
    stack.worker.stop()
    first_visit = browser.new_context(base_url=live_server.url)
    first_visit.set_default_timeout(SLOW)
    page = log_in(first_visit, alice.user.email)
    generate(page, "left behind one", 2)
    page.get_by_test_id("new-tab").click()
    page.wait_for_url("**/studio/*/")
    generate(page, "left behind two", 3)
    first_visit.close()  # the person closes the browser while both wait
    stack.restart_worker()

    for job in GenerationJob.objects.filter(team=alice.team):
        assert wait_for_finish(job.id).status == "succeeded"

    second_visit = browser.new_context(base_url=live_server.url)
    second_visit.set_default_timeout(SLOW)
    page = log_in(second_visit, alice.user.email)
    notice = page.get_by_test_id("activity-notice")
    expect(notice).to_contain_text("2 generations finished while you were away (5 images)")
    page.goto("/collection/")
    expect(page.get_by_test_id("look")).to_have_count(5)
    screenshot(page, "collection-after-two-tabs.png")
    expect(page.get_by_test_id("activity-notice")).to_have_count(0)  # shown once
    second_visit.close()


def test_a_failed_job_shows_its_error_and_its_retry_makes_the_missing_images(stack, alice, context):
    stack.worker.stop()
    stack.env["LOCAL_PROVIDER_REFUSE_FROM_IMAGE"] = "3"
    stack.restart_worker()
    page = log_in(context, alice.user.email)
    generate(page, "refused half way", 4)
    expect(page.get_by_test_id("status")).to_have_text("Failed")
    expect(page.get_by_test_id("job-error")).to_contain_text("Image 3 was refused by the content policy.")
    expect(page.get_by_test_id("thumb")).to_have_count(2)

    stack.worker.stop()
    stack.env["LOCAL_PROVIDER_REFUSE_FROM_IMAGE"] = "0"
    stack.restart_worker()
    page.get_by_test_id("retry").click()
    expect(page.get_by_test_id("status")).to_have_text("Succeeded")
    expect(page.get_by_test_id("counter")).to_have_text("4 of 4")
    expect(page.get_by_test_id("thumb")).to_have_count(4)
    retry = GenerationJob.objects.get(retry_of__prompt="refused half way")
    assert GeneratedOutput.objects.filter(job=retry, carried_from__isnull=True).count() == 2


def test_cancel_from_the_page_stops_the_job_and_keeps_its_finished_images(stack, alice, context):
    page = log_in(context, alice.user.email)
    generate(page, "cancel me part way", 8)
    expect(page.get_by_test_id("thumb").first).to_be_visible()
    questions: list[str] = []

    def answer(dialog: Dialog) -> None:
        questions.append(dialog.message)
        dialog.dismiss() if len(questions) == 1 else dialog.accept()

    page.on("dialog", answer)
    page.get_by_test_id("cancel").click()  # asked, and answered "no": the job goes on
    expect(page.get_by_test_id("status")).not_to_have_text("Canceled")
    assert GenerationJob.objects.get(prompt="cancel me part way").cancel_requested is False
    page.get_by_test_id("cancel").click()  # asked again, and answered "yes"
    expect(page.get_by_test_id("status")).to_have_text("Canceled")
    assert questions[0].startswith("Cancel this generation?")
    job = GenerationJob.objects.get(prompt="cancel me part way")
    assert 1 <= job.completed_outputs < 8
    expect(page.get_by_test_id("thumb")).to_have_count(job.completed_outputs)
    expect(page.get_by_test_id("cancel")).to_have_count(0)


def test_download_zip_appears_only_when_a_multi_image_job_has_finished(stack, alice, context, tmp_path):
    page = log_in(context, alice.user.email)
    generate(page, "zip me", 3)
    expect(page.get_by_test_id("status")).to_have_text("Running")
    expect(page.get_by_test_id("download")).to_have_count(0)
    expect(page.get_by_test_id("status")).to_have_text("Succeeded")
    link = page.get_by_test_id("download")
    expect(link).to_have_text("Download zip (3 images)")
    with page.expect_download() as download_info:
        link.click()
    path = tmp_path / "batch.zip"
    download_info.value.save_as(path)
    archive = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    assert archive.namelist() == ["zip-me-1.png", "zip-me-2.png", "zip-me-3.png"]  # named after the prompt
    assert all(archive.read(name).startswith(b"\x89PNG") for name in archive.namelist())

    page.get_by_test_id("new-tab").click()
    page.wait_for_url("**/studio/*/")
    generate(page, "just one", 1)
    expect(page.get_by_test_id("status")).to_have_text("Succeeded")
    expect(page.get_by_test_id("download")).to_have_count(0)


def test_remix_opens_a_new_tab_with_the_looks_prompt_and_settings(stack, alice, context):
    page = log_in(context, alice.user.email)
    generate(page, "minimal teal geometry", 2, style="minimal", aspect_ratio="16:9", seed="4242")
    expect(page.get_by_test_id("status")).to_have_text("Succeeded")
    wait_until(lambda: Look.objects.filter(team=alice.team).count() == 2, timeout=10)
    page.goto("/collection/")
    expect(page.get_by_test_id("look")).to_have_count(2)
    page.goto(f"/collection/{Look.objects.filter(team=alice.team).first().id}/")  # the newest look's page
    expect(page.get_by_test_id("full-image")).to_be_visible()
    page.get_by_test_id("remix").click()
    page.wait_for_url("**/studio/*/")
    expect(page.get_by_test_id("tab-link").last).to_contain_text("Remix: minimal teal geometry")
    expect(page.get_by_test_id("prompt")).to_have_value("minimal teal geometry")
    expect(page.get_by_test_id("style")).to_have_value("minimal")
    expect(page.get_by_test_id("aspect_ratio")).to_have_value("16:9")
    expect(page.get_by_test_id("seed")).to_have_value("")  # a new seed: drawn at Generate
    expect(page.get_by_test_id("count")).to_have_value("1")  # one image; the look attached: test_browser_remix.py
    expect(page.get_by_test_id("estimate-credits")).to_have_text("1 credit")
    expect(page.get_by_test_id("tab-link")).to_have_count(2)
    assert wait_for_job(GenerationJob.objects.get(prompt="minimal teal geometry").id, lambda job: job.is_finished)


def test_a_file_picked_before_the_settings_are_redrawn_is_still_sent(stack, alice, context):
    page = log_in(context, alice.user.email)
    page.get_by_test_id("prompt").fill("recolour the reference")
    picture = {"name": "reference.png", "mimeType": "image/png", "buffer": png_bytes(48, 48)}
    page.get_by_test_id("reference_1").set_input_files(picture)
    page.get_by_test_id("kind").select_option("edit")  # redraws the settings: a source upload appears
    expect(page.get_by_test_id("source_image")).to_be_visible()
    assert page.get_by_test_id("reference_1").evaluate("input => input.files.length") == 1
    page.get_by_test_id("source_image").set_input_files({**picture, "name": "source.png"})
    page.get_by_test_id("generate").click()
    expect(page.get_by_test_id("status")).to_have_text("Succeeded")
    job = GenerationJob.objects.get(prompt="recolour the reference")
    assert job.kind == "edit" and job.source_asset is not None
    assert job.reference_links.get().role == "reference"
