"""The studio's progress panel on its job's event stream, in a real browser (Playwright driving
Debian's Chromium) against the web process of the Procfile (gunicorn with uvicorn workers, where
the stream stays open), PostgreSQL, Redis and a real worker.

The panel opens its job's stream and shows the job's steps as they come; with the stream
refused, the polling alone brings the job to its end.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Response, expect

from accounts.models import Team
from generation.models import GenerationJob
from generation.services.dispatch import job_dispatch
from tests.browser import DESKTOP, SLOW, PolicyWatch
from tests.conftest import Person, wait_for_finish
from tests.helpers import signed_in
from tests.processes import start_web

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

# Every change of the panel's counter ("2 of 4"), as the page shows it.
RECORD_COUNTERS = """() => {
  window.countersSeen = [];
  const note = () => {
    const counter = document.querySelector('[data-testid="counter"]');
    const text = counter && counter.textContent.trim();
    if (text && window.countersSeen[window.countersSeen.length - 1] !== text) window.countersSeen.push(text);
  };
  new MutationObserver(note).observe(document.body, { childList: true, subtree: true, characterData: true });
  note();
}"""


@pytest.fixture(scope="module")
def stack(make_stack):
    # An image a second: the panel has time to show each step.
    return make_stack(LOCAL_PROVIDER_LATENCY_MS="1000")


@pytest.fixture(autouse=True)
def _waits_for_the_job():
    """Each `expect` here waits up to SLOW for the job's next state, then this module leaves
    Playwright's default as it was."""
    expect.set_options(timeout=SLOW)
    yield
    expect.set_options(timeout=None)


@pytest.fixture(scope="module")
def web_url(stack, log_dir) -> Iterator[str]:
    web, url = start_web(stack.env, log_dir)
    yield url
    web.stop()


@pytest.fixture
def context(browser: Browser, web_url: str) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=web_url, viewport=DESKTOP)
    context.set_default_timeout(SLOW)
    watch = PolicyWatch(context)
    yield context
    for page in context.pages:
        page.wait_for_load_state()  # refusals still on their way are reported
    context.close()
    assert watch.refusals == []  # the stream too is opened under the Content-Security-Policy


def open_studio(context: BrowserContext, person: Person, web_url: str) -> Page:
    """The studio, signed in by a session of the database (the web process is another process,
    which knows only the production password hashers, not the tests' fast one)."""
    session = signed_in(person).cookies["sessionid"].value
    context.add_cookies([{"name": "sessionid", "value": session, "url": web_url}])
    page = context.new_page()
    page.goto("/studio/")
    page.wait_for_url("**/studio/*/")
    return page


def hold_jobs(person: Person) -> None:
    """The team may run no job for now: a job submitted waits, queued, until `release`."""
    Team.objects.filter(id=person.team.id).update(quota_running_jobs=0)


def release(person: Person, job: GenerationJob) -> None:
    Team.objects.filter(id=person.team.id).update(quota_running_jobs=None)
    job_dispatch(job.id)  # the wake-up its submit published found it held


def is_stream_of_a_job(response: Response) -> bool:
    return re.search(r"/api/v1/jobs/[0-9a-f-]+/events$", response.url) is not None


def generate(page: Page, prompt: str, count: int) -> GenerationJob:
    page.get_by_test_id("prompt").fill(prompt)
    page.get_by_test_id("count").select_option(str(count))
    page.get_by_test_id("generate").click()
    expect(page.get_by_test_id("progress")).to_contain_text(prompt[:40])
    return GenerationJob.objects.get(prompt=prompt)


def test_the_studio_panel_opens_its_jobs_event_stream_and_shows_each_step(stack, alice, context, web_url):
    page = open_studio(context, alice, web_url)
    hold_jobs(alice)
    with page.expect_response(is_stream_of_a_job) as opening:
        job = generate(page, "a lighthouse in a storm, on the stream", 4)
    stream_url = f"/api/v1/jobs/{job.id}/events"
    assert opening.value.url.endswith(stream_url)
    assert opening.value.status == 200
    assert opening.value.headers["content-type"] == "text/event-stream"
    panel = page.get_by_test_id("progress")
    expect(panel).to_have_attribute("data-events-url", stream_url)
    expect(page.get_by_test_id("status")).to_have_text("Queued")

    # While the stream is open the panel polls only every 10 s (job-events.js); each event asks
    # for the panel at once.
    page.evaluate(RECORD_COUNTERS)
    release(alice, job)

    expect(page.get_by_test_id("status")).to_have_text("Succeeded")
    expect(page.get_by_test_id("counter")).to_have_text("4 of 4")
    expect(page.get_by_test_id("thumb")).to_have_count(4)
    assert wait_for_finish(job.id).status == "succeeded"
    seen = page.evaluate("window.countersSeen")
    # The panel moved through the job while it ran, not only at its end, never backwards.
    assert seen[0] == "0 of 4" and seen[-1] == "4 of 4", seen
    assert {"1 of 4", "2 of 4", "3 of 4"} & set(seen), seen
    assert seen == sorted(seen), seen
    # A finished job's panel names no stream: nothing is opened again.
    expect(panel).not_to_have_attribute("data-events-url", re.compile(".*"))


def test_with_the_stream_refused_the_panel_polls_its_job_to_the_end(stack, alice, context, web_url):
    refused: list[str] = []

    def refuse(route) -> None:
        refused.append(route.request.url)
        route.abort()

    context.route(re.compile(r".*/api/v1/jobs/[0-9a-f-]+/events$"), refuse)
    page = open_studio(context, alice, web_url)
    job = generate(page, "a lighthouse in a storm, polled", 3)
    expect(page.get_by_test_id("status")).to_have_text("Succeeded")
    expect(page.get_by_test_id("counter")).to_have_text("3 of 3")
    expect(page.get_by_test_id("thumb")).to_have_count(3)
    assert any(url.endswith(f"/api/v1/jobs/{job.id}/events") for url in refused)  # it was tried
