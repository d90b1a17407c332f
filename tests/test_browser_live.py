"""The live status of every page in a real browser (Playwright driving Debian's Chromium) against
the live server, PostgreSQL, Redis and a real worker: the header's balance, the banner, the
studio tabs' busy dots and the queue panel follow the jobs without a reload, wherever the jobs
were started."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, BrowserContext, Dialog, Page, expect

from credits.models import CreditAccount
from generation.models import GenerationJob
from tests.browser import DESKTOP, PHONE, SLOW, PolicyWatch, log_in, screenshot
from tests.conftest import wait_for_finish, wait_for_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

JOBS = "/api/v1/jobs"


@pytest.fixture(scope="module")
def stack(make_stack):
    # Slow enough images that two jobs are still running while the test looks at them.
    return make_stack(LOCAL_PROVIDER_LATENCY_MS="2000")


@pytest.fixture(autouse=True)
def _waits_for_the_next_poll():
    """What the page shows changes at its next activity poll (every few seconds): each `expect`
    here waits up to SLOW for it, then this module leaves Playwright's default as it was."""
    expect.set_options(timeout=SLOW)
    yield
    expect.set_options(timeout=None)


def watched_context(browser: Browser, base_url: str, viewport: dict) -> tuple[BrowserContext, PolicyWatch]:
    context = browser.new_context(base_url=base_url, viewport=viewport)
    context.set_default_timeout(SLOW)
    return context, PolicyWatch(context)


def closed_without_refusals(context: BrowserContext, watch: PolicyWatch) -> None:
    for page in context.pages:
        page.wait_for_load_state()  # refusals still on their way are reported
    context.close()
    assert watch.refusals == []  # the page did all it did under the Content-Security-Policy


@pytest.fixture
def context(browser: Browser, live_server) -> BrowserContext:
    context, watch = watched_context(browser, live_server.url, DESKTOP)
    yield context
    closed_without_refusals(context, watch)


def generate(page: Page, prompt: str, count: int) -> GenerationJob:
    page.get_by_test_id("prompt").fill(prompt)
    page.get_by_test_id("count").select_option(str(count))
    page.get_by_test_id("generate").click()
    expect(page.get_by_test_id("progress").first).to_contain_text(prompt[:40])
    return GenerationJob.objects.get(prompt=prompt)


def new_tab(page: Page) -> None:
    page.get_by_test_id("new-tab").click()
    page.wait_for_url("**/studio/*/")


def mark_document(page: Page) -> None:
    """A mark on this document: still there later means the page was never reloaded."""
    page.evaluate("window.atelierSameDocument = true")


def same_document(page: Page) -> bool:
    return page.evaluate("window.atelierSameDocument === true")


def available(person) -> int:  # type: ignore[no-untyped-def]
    return CreditAccount.objects.get(team=person.team).available


def open_queue(page: Page) -> None:
    page.get_by_test_id("queue-link").click()
    expect(page.get_by_test_id("queue-drawer")).to_be_visible()


def test_the_header_balance_and_the_banner_follow_a_job_to_its_end_without_a_reload(stack, alice, context):
    page = log_in(context, alice.user.email)
    job = generate(page, "a harbour at dawn, canceled half way", 8)
    page.goto("/collection/")  # any page, not the job's own
    mark_document(page)
    held = available(alice)
    assert held < 1000  # the job's credits are held
    expect(page.get_by_test_id("balance")).to_have_text(f"{held} credits")
    expect(page.get_by_test_id("activity-active")).to_contain_text("1 still generating")

    # Canceled from another client (the API) after its first image: the unmade images' credits
    # come back, and the page says so by itself.
    wait_for_job(job.id, lambda job: job.completed_outputs >= 1)
    assert alice.client.post(f"{JOBS}/{job.id}/cancel").status_code in (200, 202)
    assert wait_for_finish(job.id).status == "canceled"
    refunded = available(alice)
    assert refunded > held
    expect(page.get_by_test_id("balance")).to_have_text(f"{refunded} credits")
    expect(page.get_by_test_id("activity-active")).to_have_count(0)  # nothing still generating
    notice = page.get_by_test_id("activity-notice")
    expect(notice).to_contain_text("1 generation finished")
    expect(notice).to_contain_text("(canceled)")
    expect(page.get_by_test_id("queue-count")).to_have_text("(0)")
    assert same_document(page)
    assert GenerationJob.objects.get(id=job.id).seen_at is not None  # shown, so seen: not shown again
    page.reload()
    expect(page.get_by_test_id("balance")).to_have_text(f"{refunded} credits")
    expect(page.get_by_test_id("activity-notice")).to_have_count(0)


def test_a_tabs_busy_dot_goes_when_its_job_ends_without_a_reload(stack, alice, context):
    page = log_in(context, alice.user.email)
    job = generate(page, "three quick sketches of a cat", 3)
    new_tab(page)  # the first tab, busy, seen from the second
    mark_document(page)
    first_tab = page.get_by_test_id("tab-link").nth(0)
    expect(first_tab.get_by_test_id("tab-busy")).to_have_count(1)
    expect(page.get_by_test_id("tab-link").nth(1).get_by_test_id("tab-busy")).to_have_count(0)
    assert wait_for_finish(job.id).status == "succeeded"
    expect(first_tab.get_by_test_id("tab-busy")).to_have_count(0)
    assert same_document(page)


def test_the_queue_panel_lists_two_running_jobs_and_cancels_one(stack, alice, bob, context, browser, live_server):
    page = log_in(context, alice.user.email)
    first = generate(page, "first of two: a lighthouse in a storm", 10)
    new_tab(page)
    second = generate(page, "second of two: a field of poppies", 10)
    for job in (first, second):
        wait_for_job(job.id, lambda job: job.completed_outputs >= 1)  # both running, both under way
    mark_document(page)
    expect(page.get_by_test_id("status").first).to_have_text("Running")  # the tab's own panel

    open_queue(page)
    items = page.get_by_test_id("queue-drawer").get_by_test_id("queue-item")
    expect(items).to_have_count(2)
    expect(items.filter(has_text="a lighthouse in a storm").get_by_test_id("queue-status")).to_have_text("Running")
    expect(items.filter(has_text="a field of poppies").get_by_test_id("queue-counter")).to_contain_text("of 10")
    expect(page.get_by_test_id("queue-count")).to_have_text("(2)")
    for counter in items.get_by_test_id("queue-counter").all():
        expect(counter).not_to_have_text("0 of 10")
    screenshot(page, "queue-panel.png", full_page=False)

    questions: list[str] = []

    def answer(dialog: Dialog) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    items.filter(has_text="a lighthouse in a storm").get_by_test_id("queue-cancel").click()
    expect(items).to_have_count(1)
    expect(items.first).to_contain_text("a field of poppies")
    assert questions and questions[0].startswith("Cancel this generation?")
    assert wait_for_finish(first.id).status == "canceled"
    assert GenerationJob.objects.get(id=second.id).status in ("queued", "running", "succeeded")
    expect(page.get_by_test_id("queue-count")).to_have_text("(1)")
    assert same_document(page)

    # The queue on a phone, from another browser of the same person, with jobs the API started.
    for person, prompt in (
        (alice, "from the API: a quiet street at night"),
        (bob, "from the API: bicycles by a canal"),
    ):
        assert person.client.post(JOBS, {"prompt": prompt, "count": 10}, format="json").status_code == 202
    phone, phone_watch = watched_context(browser, live_server.url, PHONE)
    phone_page = log_in(phone, alice.user.email)
    open_queue(phone_page)
    expect(phone_page.get_by_test_id("queue-item").filter(has_text="from the API")).to_have_count(2)
    expect(phone_page.get_by_test_id("queue-item").filter(has_text="bicycles")).to_contain_text("bob@example.com")
    drawer_box = phone_page.get_by_test_id("queue-drawer").bounding_box()
    assert drawer_box is not None and drawer_box["width"] <= PHONE["width"]
    expect(phone_page.get_by_test_id("queue-cancel").first).to_be_in_viewport(ratio=1)  # in reach
    screenshot(phone_page, "queue-panel-phone.png", full_page=False)
    closed_without_refusals(phone, phone_watch)


def test_a_job_started_through_the_api_shows_up_in_the_queue_and_the_balance_without_a_reload(stack, alice, context):
    page = log_in(context, alice.user.email)
    page.goto("/collection/")
    mark_document(page)
    expect(page.get_by_test_id("balance")).to_have_text(f"{available(alice)} credits")
    open_queue(page)
    expect(page.get_by_test_id("queue-drawer").get_by_test_id("queue-empty")).to_be_visible()
    expect(page.get_by_test_id("queue-count")).to_have_text("(0)")

    response = alice.client.post(JOBS, {"prompt": "started elsewhere: a paper crane", "count": 4}, format="json")
    assert response.status_code == 202
    held = available(alice)
    items = page.get_by_test_id("queue-drawer").get_by_test_id("queue-item")
    expect(items).to_have_count(1)
    expect(items.first).to_contain_text("started elsewhere: a paper crane")
    expect(page.get_by_test_id("queue-count")).to_have_text("(1)")
    expect(page.get_by_test_id("balance")).to_have_text(f"{held} credits")
    expect(page.get_by_test_id("activity-active")).to_contain_text("1 still generating")

    assert wait_for_finish(response.json()["id"]).status == "succeeded"
    expect(page.get_by_test_id("queue-drawer").get_by_test_id("queue-empty")).to_be_visible()
    expect(page.get_by_test_id("queue-count")).to_have_text("(0)")
    assert same_document(page)


def test_a_focused_cancel_in_the_queue_keeps_focus_while_the_poll_redraws_the_list(stack, alice, context):
    page = log_in(context, alice.user.email)
    job = generate(page, "by keyboard: a lantern on a pier", 10)
    wait_for_job(job.id, lambda job: job.completed_outputs >= 1)
    open_queue(page)
    drawer = page.get_by_test_id("queue-drawer")
    item = drawer.locator(f'[data-testid=queue-item][data-job-id="{job.id}"]')
    cancel = item.get_by_test_id("queue-cancel")
    counter = item.get_by_test_id("queue-counter")
    expect(counter).not_to_have_text("0 of 10")

    # A mark on this very button (a property, which a redrawn list does not carry over).
    cancel.evaluate("button => { button.atelierBeforeThePoll = true; }")
    cancel.focus()
    before = counter.inner_text()
    expect(counter).not_to_have_text(before)  # the job made progress: a poll redrew the list

    expect(cancel).to_be_focused()  # the same job's Cancel, though a new button
    assert page.evaluate("document.activeElement.atelierBeforeThePoll") is None

    # Enter on it cancels; the job stops, its Cancel goes, and focus stays in the panel.
    page.on("dialog", lambda dialog: dialog.accept())
    page.keyboard.press("Enter")
    expect(item.get_by_test_id("queue-cancel")).to_have_count(0)
    expect(drawer.get_by_test_id("queue-list")).to_be_focused()
    assert wait_for_finish(job.id).status == "canceled"


def test_escape_in_the_lightbox_closes_the_lightbox_and_leaves_the_queue_drawer_open(stack, alice, context):
    page = log_in(context, alice.user.email)
    job = generate(page, "one sketch of a teapot", 1)
    assert wait_for_finish(job.id).status == "succeeded"
    thumb = page.get_by_test_id("progress").get_by_test_id("thumb")
    expect(thumb).to_have_count(1)
    open_queue(page)
    drawer = page.get_by_test_id("queue-drawer")
    lightbox = page.get_by_test_id("lightbox")

    thumb.click()
    expect(lightbox).to_be_visible()
    page.keyboard.press("Escape")
    expect(lightbox).to_be_hidden()
    expect(drawer).to_be_visible()  # one Escape, one thing closed

    page.keyboard.press("Escape")
    expect(drawer).to_be_hidden()
