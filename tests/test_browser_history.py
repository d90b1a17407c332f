"""Retry that reads like one generation, in a real browser (Playwright driving Debian's Chromium)
against the live server, PostgreSQL, Redis and a real worker: the Jobs page groups a job with its
retries, a canceled job finishes its missing images, a refused prompt says why and offers an edit."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, BrowserContext, Page, expect

from credits.models import LedgerEntry
from generation.models import GeneratedOutput, GenerationJob
from tests.browser import DESKTOP, PHONE, SLOW, PolicyWatch, log_in, screenshot
from tests.factories import GenerationJobFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

# What sticks out past the right edge of the screen, for the message of a failed width check.
WIDER_THAN_THE_SCREEN = """[...document.querySelectorAll("body *")]
  .filter((element) => element.getBoundingClientRect().right > window.innerWidth)
  .map((element) => `${element.tagName}.${element.className} ${Math.round(element.getBoundingClientRect().right)}`)
  .slice(0, 10)"""
REFUSED_WORDS = "The provider refused this prompt or image under its content policy."


@pytest.fixture(scope="module")
def stack(make_stack):
    return make_stack(LOCAL_PROVIDER_LATENCY_MS="500")


def watched_context(browser: Browser, live_server, viewport: dict) -> tuple[BrowserContext, PolicyWatch]:
    context = browser.new_context(base_url=live_server.url, viewport=viewport, timezone_id="Europe/Paris")
    context.set_default_timeout(SLOW)
    return context, PolicyWatch(context)


@pytest.fixture
def context(browser: Browser, live_server) -> BrowserContext:
    context, watch = watched_context(browser, live_server, DESKTOP)
    yield context
    for page in context.pages:
        page.wait_for_load_state()  # refusals still on their way are reported
    context.close()
    assert watch.refusals == []  # the page did all it did under the Content-Security-Policy


def generate(page: Page, prompt: str, count: int) -> None:
    page.get_by_test_id("prompt").fill(prompt)
    page.get_by_test_id("count").select_option(str(count))
    page.get_by_test_id("generate").click()
    expect(page.get_by_test_id("progress")).to_contain_text(prompt[:40])


def with_refusals_from_image(stack, number: int) -> None:
    stack.worker.stop()
    stack.env["LOCAL_PROVIDER_REFUSE_FROM_IMAGE"] = str(number)
    stack.restart_worker()


def still_failed_job(team, prompt: str) -> GenerationJob:
    """A failed job made directly (no worker runs it): a generation nobody has retried."""
    return GenerationJobFactory(
        team=team,
        prompt=prompt,
        total_outputs=2,
        status=GenerationJob.Status.FAILED,
        finished_at=timezone.now(),
        error_code="PROVIDER_TIMEOUT",
        error_message="The provider did not answer in time.",
    )


def test_a_failed_job_and_its_successful_retry_are_one_generation_on_the_jobs_page(
    stack, alice, context, browser, live_server
):
    with_refusals_from_image(stack, 3)
    page = log_in(context, alice.user.email)
    generate(page, "amber dunes under a violet sky, refused half way", 4)
    expect(page.get_by_test_id("status")).to_have_text("Failed", timeout=SLOW)
    expect(page.get_by_test_id("thumb")).to_have_count(2)
    expect(page.get_by_test_id("failure-words")).to_contain_text(REFUSED_WORDS)
    expect(page.get_by_test_id("error-code")).to_have_text("CONTENT_POLICY")  # small print, for support
    expect(page.get_by_test_id("edit-prompt")).to_be_visible()

    with_refusals_from_image(stack, 0)
    page.get_by_test_id("retry").click()  # two images came: the same prompt may pass again
    expect(page.get_by_test_id("status")).to_have_text("Succeeded", timeout=SLOW)
    expect(page.get_by_test_id("thumb")).to_have_count(4, timeout=SLOW)
    original = GenerationJob.objects.get(retry_of__isnull=True, prompt__startswith="amber dunes")
    retry = GenerationJob.objects.get(retry_of=original)

    page.goto(f"/jobs/{original.id}/")  # the failed original points at its retry
    expect(page.get_by_test_id("retried")).to_contain_text("Retried: see the retry")
    page.get_by_test_id("retry-link").click()
    page.wait_for_url(f"**/jobs/{retry.id}/")
    expect(page.get_by_test_id("status")).to_have_text("Succeeded", timeout=SLOW)

    still_failed_job(alice.team, "copper kettles, still failed")
    page.goto("/jobs/")
    rows = page.get_by_test_id("job-row")
    expect(rows).to_have_count(2)
    chain = rows.filter(has_text="amber dunes")
    expect(chain.get_by_test_id("job-status")).to_have_text("Succeeded", timeout=SLOW)
    expect(chain.get_by_test_id("job-count")).to_have_text("4 of 4 images")
    expect(chain.get_by_test_id("attempt")).to_have_count(2)
    expect(chain.get_by_test_id("attempt").first).not_to_be_visible()  # the history starts folded
    chain.locator("summary").click()
    attempts = chain.get_by_test_id("attempt")
    expect(attempts.nth(0).get_by_test_id("attempt-status")).to_have_text("Failed", timeout=SLOW)
    expect(attempts.nth(0).get_by_test_id("thumb")).to_have_count(2)
    expect(attempts.nth(1).get_by_test_id("attempt-status")).to_have_text("Succeeded", timeout=SLOW)
    expect(attempts.nth(1).get_by_test_id("thumb")).to_have_count(2)  # the two it made itself
    expect(chain.locator("time").first).to_contain_text("CET")  # the person's zone, named
    screenshot(page, "jobs.png")

    page.get_by_role("link", name="Failed", exact=True).click()
    expect(page.get_by_test_id("job-row")).to_have_count(1)  # what is still failed, only
    expect(page.get_by_test_id("job-row")).to_contain_text("copper kettles, still failed")

    phone, watch = watched_context(browser, live_server, PHONE)
    phone_page = log_in(phone, alice.user.email)
    phone_page.goto("/jobs/")
    phone_page.get_by_test_id("job-row").filter(has_text="amber dunes").locator("summary").click()
    first_attempt = phone_page.get_by_test_id("attempt").first
    expect(first_attempt).to_be_visible()
    for thumb in first_attempt.get_by_test_id("thumb").all():  # drawn before the picture is taken
        expect(thumb).to_have_js_property("complete", True)
    width = phone_page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= PHONE["width"], phone_page.evaluate(WIDER_THAN_THE_SCREEN)
    screenshot(phone_page, "jobs-phone.png", full_page=False)
    phone.close()
    assert watch.refusals == []


def test_a_canceled_job_finishes_its_missing_images(stack, alice, context):
    page = log_in(context, alice.user.email)
    generate(page, "lanterns over a canal, stopped early", 8)
    expect(page.get_by_test_id("thumb").first).to_be_visible(timeout=SLOW)
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("cancel").click()
    expect(page.get_by_test_id("status")).to_have_text("Canceled", timeout=SLOW)
    canceled = GenerationJob.objects.get(prompt__startswith="lanterns")
    missing = canceled.total_outputs - canceled.completed_outputs
    assert missing > 0
    finish = page.get_by_test_id("finish-missing")
    price = missing * canceled.credits_per_output
    expect(finish).to_have_text(
        f"Finish the missing {missing} image{'s' if missing > 1 else ''} · {price} credit{'s' if price > 1 else ''}"
    )

    finish.click()
    expect(page.get_by_test_id("status")).to_have_text("Succeeded", timeout=SLOW)
    expect(page.get_by_test_id("counter")).to_have_text("8 of 8")
    expect(page.get_by_test_id("thumb")).to_have_count(8)
    retry = GenerationJob.objects.get(retry_of=canceled)
    assert GeneratedOutput.objects.filter(job=retry, carried_from__isnull=False).count() == canceled.completed_outputs
    assert GeneratedOutput.objects.filter(job=retry, carried_from__isnull=True).count() == missing
    hold = LedgerEntry.objects.get(job_id=retry.id, kind=LedgerEntry.Kind.HOLD)
    assert hold.held_delta == missing * retry.credits_per_output  # only the missing ones were held


def test_a_content_policy_refusal_says_why_and_offers_to_edit_the_prompt(stack, alice, context):
    page = log_in(context, alice.user.email)
    generate(page, "a forbidden garden at dawn", 2)
    expect(page.get_by_test_id("status")).to_have_text("Failed", timeout=SLOW)
    expect(page.get_by_test_id("failure-words")).to_have_text(
        "The provider refused this prompt or image under its content policy. Change the prompt and try again."
    )
    expect(page.get_by_test_id("retry")).to_have_count(0)  # no blind retry of the same prompt
    questions: list[str] = []
    page.on("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
    page.get_by_test_id("edit-prompt").click()
    page.wait_for_url("**/studio/*/#id_prompt")
    prompt = page.get_by_test_id("prompt")
    expect(prompt).to_have_value("a forbidden garden at dawn")
    expect(prompt).to_be_focused()  # the studio opened at #id_prompt: the field is ready to type in
    expect(prompt).to_be_in_viewport(ratio=1)
    header = page.locator("header.site").bounding_box()
    assert prompt.bounding_box()["y"] >= header["y"] + header["height"]  # not under the sticky header
    page.get_by_test_id("prompt").fill("a quiet garden at dawn")
    page.get_by_test_id("generate").click()
    expect(page.get_by_test_id("status")).to_have_text("Succeeded", timeout=SLOW)
    assert questions == []  # nothing asked along the way


def test_the_jobs_list_follows_a_running_job_to_its_end_without_a_reload(stack, alice, context):
    page = log_in(context, alice.user.email)
    generate(page, "a slow parade of paper lanterns", 4)
    page.goto("/jobs/")
    row = page.get_by_test_id("job-row").filter(has_text="a slow parade of paper lanterns")
    expect(row.get_by_test_id("job-status")).to_have_text(re.compile("Queued|Running"))  # drawn mid-way

    # No reload: the list draws itself again as the live status changes.
    expect(row.get_by_test_id("job-status")).to_have_text("Succeeded")
    expect(row.get_by_test_id("job-count")).to_contain_text("4 of 4")
    expect(row.locator("[data-lightbox]")).to_have_count(4)
    assert GenerationJob.objects.get(prompt="a slow parade of paper lanterns").status == "succeeded"
