"""The studio laid out for the work, in a real browser (Playwright driving Debian's Chromium)
against the live server, PostgreSQL, Redis and a real worker: Generate in the first screen, the
progress first on a phone, a reload after a refusal that sends nothing, a second job beside the
running one, and the style's addition shown beside its select."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from credits.models import CreditAccount, LedgerEntry
from generation.models import GenerationJob
from tests.browser import DESKTOP, PHONE, SLOW, PolicyWatch, log_in, screenshot
from tests.conftest import _person, wait_for_finish, wait_for_job
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


@pytest.fixture(scope="module")
def stack(make_stack):
    return make_stack(LOCAL_PROVIDER_LATENCY_MS="900")


def _context(browser: Browser, live_server, viewport: dict) -> BrowserContext:
    context = browser.new_context(base_url=live_server.url, viewport=viewport)
    context.set_default_timeout(SLOW)
    return context


@pytest.fixture
def desktop(browser: Browser, live_server):
    context = _context(browser, live_server, DESKTOP)
    watch = PolicyWatch(context)
    yield context
    for page in context.pages:
        page.wait_for_load_state()
    context.close()
    assert watch.refusals == []  # the page did all it did under the Content-Security-Policy


@pytest.fixture
def phone(browser: Browser, live_server):
    context = _context(browser, live_server, PHONE)
    watch = PolicyWatch(context)
    yield context
    for page in context.pages:
        page.wait_for_load_state()
    context.close()
    assert watch.refusals == []


def in_first_screen(page: Page, element: Locator) -> bool:
    """Whether the element lies wholly within the screen as the page opens (nothing scrolled)."""
    box = element.bounding_box()
    viewport = page.viewport_size
    assert box is not None and viewport is not None
    scrolled = page.evaluate("window.scrollY")
    return scrolled == 0 and box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"]


def start(page: Page, prompt: str, count: int) -> GenerationJob:
    page.get_by_test_id("prompt").fill(prompt)
    page.get_by_test_id("count").select_option(str(count))
    page.get_by_test_id("generate").click()
    page.wait_for_url("**/studio/*/")
    return GenerationJob.objects.get(prompt=prompt)


def test_generate_is_in_the_first_screen_at_1366x900_with_a_job_running(stack, alice, desktop):
    page = log_in(desktop, alice.user.email)
    assert in_first_screen(page, page.get_by_test_id("generate"))
    assert in_first_screen(page, page.get_by_test_id("count"))

    job = start(page, "ink sketches of city rooftops at dawn", 8)
    expect(page.get_by_test_id("progress")).to_contain_text("ink sketches of city rooftops")
    wait_for_job(job.id, lambda job: job.completed_outputs >= 3)
    expect(page.get_by_test_id("thumb").nth(2)).to_be_visible()
    expect(page.get_by_test_id("status")).to_have_text("Running")
    page.evaluate("window.scrollTo(0, 0)")
    assert in_first_screen(page, page.get_by_test_id("generate"))  # the draft is kept; Generate stays up top
    assert in_first_screen(page, page.get_by_test_id("status"))  # the progress beside the form, not below it
    assert in_first_screen(page, page.get_by_test_id("thumb").first)
    assert in_first_screen(page, page.get_by_test_id("cancel"))
    screenshot(page, "studio.png", full_page=False)
    assert wait_for_finish(job.id).status == "succeeded"  # nothing left running for the next test


def test_on_a_phone_the_running_job_comes_first(stack, alice, phone):
    page = log_in(phone, alice.user.email)
    assert in_first_screen(page, page.get_by_test_id("generate"))  # no job yet: the form is first

    job = start(page, "watercolor foxes in tall grass", 6)
    wait_for_job(job.id, lambda job: job.completed_outputs >= 2)
    expect(page.get_by_test_id("thumb").nth(1)).to_be_visible()
    progress, form = page.get_by_test_id("progress"), page.locator("#generate-form")
    assert progress.bounding_box()["y"] < form.bounding_box()["y"]  # type: ignore[index]
    assert in_first_screen(page, page.get_by_test_id("status"))
    assert in_first_screen(page, page.get_by_test_id("counter"))
    assert in_first_screen(page, page.get_by_test_id("cancel"))  # and its Cancel
    assert in_first_screen(page, page.get_by_test_id("generate-bar"))  # and Generate, in the bar
    screenshot(page, "studio-phone.png", full_page=False)
    # The form's Generate is a short scroll away, right under the prompt.
    page.get_by_test_id("generate").scroll_into_view_if_needed()
    expect(page.get_by_test_id("generate")).to_be_in_viewport()
    assert wait_for_finish(job.id).status == "succeeded"


def test_a_reload_after_short_credits_sends_nothing_and_the_page_says_what_is_short(stack, phone):
    user = UserFactory(email="short@example.com")
    person = _person(user, user.personal_team, credits=2)
    page = log_in(phone, person.user.email)
    page.get_by_test_id("prompt").fill("five foxes, two credits")
    page.get_by_test_id("count").select_option("5")
    page.get_by_test_id("generate").click()
    expect(page.get_by_test_id("shortfall")).to_contain_text("this needs 5 and the team has 2, 3 short")
    assert page.url.endswith(f"/studio/{user.studio_tabs.get().id}/")  # redirected: not /generate/
    entries = LedgerEntry.objects.filter(account__team=person.team).count()

    page.reload()
    expect(page.get_by_test_id("prompt")).to_have_value("five foxes, two credits")  # the draft is kept
    expect(page.get_by_test_id("shortfall")).to_have_count(0)  # said once
    assert not GenerationJob.objects.filter(team=person.team).exists()
    assert LedgerEntry.objects.filter(account__team=person.team).count() == entries  # no hold, no release
    assert CreditAccount.objects.get(team=person.team).held == 0


def test_generating_again_in_a_busy_tab_shows_both_jobs(stack, alice, desktop):
    page = log_in(desktop, alice.user.email)
    first = start(page, "the first job, still running", 10)
    wait_for_job(first.id, lambda job: job.status == "running")
    second = start(page, "the second job, beside it", 2)

    expect(page.get_by_test_id("progress").first).to_contain_text("the second job, beside it")
    earlier = page.get_by_test_id("earlier-active")
    expect(earlier).to_contain_text("the first job, still running")
    expect(earlier.get_by_test_id("cancel")).to_be_visible()  # its own Cancel
    jobs = GenerationJob.objects.filter(team=alice.team)
    assert {job.id for job in jobs} == {first.id, second.id}
    assert {job.tab_id for job in jobs} == {page_tab_id(page)}

    # Canceling the earlier job from its own panel leaves the newer one going.
    page.on("dialog", lambda dialog: dialog.accept())
    earlier.get_by_test_id("cancel").click()
    assert wait_for_finish(first.id).status == "canceled"
    assert wait_for_finish(second.id).status == "succeeded"  # the newer one went on


def page_tab_id(page: Page) -> int:
    return int(page.url.rstrip("/").rsplit("/", 1)[1])


def test_the_style_says_what_it_adds_and_none_sends_the_prompt_as_written(stack, alice, desktop):
    page = log_in(desktop, alice.user.email)
    expect(page.get_by_test_id("style")).to_have_value("none")  # a new draft adds nothing
    note = page.locator('[data-testid="style-note"]:visible')
    expect(note).to_have_text("Adds nothing: your prompt is sent as written.")
    page.get_by_test_id("prompt").fill("a watercolor fox")
    expect(page.get_by_test_id("optimized-prompt")).to_have_text("a watercolor fox")

    page.get_by_test_id("style").select_option("realistic")
    expect(note).to_contain_text("Adds: photorealistic, natural lighting")
    expect(page.get_by_test_id("optimized-prompt")).to_contain_text("a watercolor fox, photorealistic")
    page.get_by_test_id("style").select_option("none")
    expect(note).to_have_text("Adds nothing: your prompt is sent as written.")
    expect(page.get_by_test_id("optimized-prompt")).to_have_text("a watercolor fox")

    # The keyboard shows where it is: from the prompt, Tab reaches the count, the style, then Generate.
    page.get_by_test_id("prompt").focus()
    for _ in range(3):
        page.keyboard.press("Tab")
    generate = page.get_by_test_id("generate")
    expect(generate).to_be_focused()
    assert generate.evaluate("button => getComputedStyle(button).outlineStyle") == "solid"

    job = start(page, "a watercolor fox", 1)
    assert (job.params["style"], job.optimized_prompt) == ("none", "a watercolor fox")
    assert wait_for_finish(job.id).status == "succeeded"
