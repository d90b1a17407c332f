"""A local video job from the studio, in a real browser (Playwright driving Debian's Chromium)
against the live server, PostgreSQL, Redis and a real worker: its progress, and its clip playing."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from generation.models import GenerationJob, Look
from tests.browser import DESKTOP, PHONE, SLOW, log_in, screenshot, wait_until_still
from tests.conftest import wait_for_finish
from tests.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

# A clip that takes a few seconds, so the page shows it running (and its time ticking) first.
LATENCY_MS = "4500"
# The <video> has decoded a frame (HAVE_CURRENT_DATA) and knows how long the clip lasts.
PLAYABLE = "video => video.readyState >= 2 && video.duration > 0"


@pytest.fixture(scope="module")
def stack(make_stack):
    return make_stack(LOCAL_PROVIDER_LATENCY_MS=LATENCY_MS)


def new_context(browser: Browser, base_url: str, viewport: dict) -> BrowserContext:
    context = browser.new_context(base_url=base_url, viewport=viewport)
    context.set_default_timeout(SLOW)
    return context


def wait_until_playable(page: Page, test_id: str) -> dict:
    """Plays the clip (muted, as a browser lets a page do by itself) and waits, up to SLOW, until it
    has decoded a frame and knows its duration; returns what the element then reports."""
    video = page.get_by_test_id(test_id).first
    video.evaluate("video => { video.muted = true; return video.play(); }")
    page.wait_for_function(
        f"() => [...document.querySelectorAll('[data-testid={test_id}]')].some({PLAYABLE})", timeout=SLOW
    )
    return video.evaluate(
        "video => ({readyState: video.readyState, duration: video.duration, width: video.videoWidth,"
        " height: video.videoHeight, error: video.error && video.error.code})"
    )


def show_poster(page: Page) -> None:
    """Waits until the clip has loaded what it preloads (no spinner over it) and the page is idle."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=clip]')]"
        ".every(video => video.readyState >= 1 && video.networkState !== HTMLMediaElement.NETWORK_LOADING)",
        timeout=SLOW,
    )
    page.wait_for_load_state("networkidle")
    for clip in page.get_by_test_id("clip").all():
        wait_until_still(clip)


def test_a_video_job_from_the_studio_runs_and_its_clip_plays(stack, alice, browser, live_server):
    context = new_context(browser, live_server.url, DESKTOP)
    page = log_in(context, alice.user.email)
    page.get_by_test_id("prompt").fill("a lighthouse at dusk, the camera drifting")
    page.get_by_test_id("kind").select_option("video")
    # The settings follow the kind: the local video model, its durations, "Clips".
    expect(page.get_by_test_id("model")).to_have_value("atelier-motion-1")
    expect(page.locator("label[for=id_count]")).to_contain_text("Clips")
    expect(page.get_by_test_id("duration_seconds")).to_have_value("3")
    expect(page.get_by_test_id("seed")).to_be_visible()
    expect(page.get_by_test_id("reference_1")).to_have_count(0)
    page.get_by_test_id("duration_seconds").select_option("2")
    page.get_by_test_id("aspect_ratio").select_option("16:9")
    expect(page.get_by_test_id("estimate")).to_contain_text("2 credits for 1 clip of 2 s")
    page.get_by_test_id("generate").click()

    expect(page.get_by_test_id("status")).to_have_text("Running")
    # The running time ticks in the page between polls (which stay 304s while nothing changes).
    expect(page.get_by_test_id("elapsed")).to_have_text(re.compile(r"for 0:0[2-9]"))
    expect(page.get_by_test_id("status")).to_have_text("Succeeded")
    expect(page.get_by_test_id("counter")).to_have_text("1 of 1 clip")
    clip = wait_until_playable(page, "clip")
    assert clip["error"] is None
    assert 1.5 < clip["duration"] < 2.5  # the 2 s asked for
    assert (clip["width"], clip["height"]) == (640, 360)  # 16:9
    job = wait_for_finish(GenerationJob.objects.get(prompt__startswith="a lighthouse").id)
    assert (job.kind, job.model, job.params["duration_seconds"], job.credits_per_output) == (
        "video",
        "atelier-motion-1",
        2,
        2,
    )
    expect(page.get_by_test_id("clip-download")).to_have_attribute("href", f"/api/v1/jobs/{job.id}/outputs/1")
    page.reload()  # the finished tab as a person finds it: the clip's poster frame, ready to play
    show_poster(page)
    screenshot(page, "studio-video.png")

    page.goto(f"/jobs/{job.id}/")
    report = page.get_by_test_id("output-report")
    expect(report).to_contain_text("2 credits captured")
    report.get_by_text("What the provider reported").click()
    expect(report).to_contain_text("atelier-motion-1")
    show_poster(page)
    screenshot(page, "job-video.png")
    wait_until_playable(page, "clip")

    wait_until(lambda: Look.objects.filter(job=job).exists(), timeout=10)
    page.goto("/collection/")
    poster = page.get_by_test_id("look-poster")
    expect(poster).to_be_visible()
    # The poster may still be on its way when the page is shown: wait for it, with a deadline.
    page.wait_for_function(
        "() => { const img = document.querySelector('[data-testid=look-poster]');"
        " return img && img.complete && img.naturalWidth > 0; }",
        timeout=10_000,
    )
    assert poster.evaluate("img => img.naturalWidth") == 640
    poster.click()  # the lightbox plays the clip
    wait_until_playable(page, "lightbox-clip")
    page.get_by_test_id("lightbox-open").click()  # and so does the look's page
    wait_until_playable(page, "full-clip")
    context.close()

    phone = new_context(browser, live_server.url, PHONE)
    page = log_in(phone, alice.user.email)
    page.goto(f"/studio/{job.tab_id}/")
    # The job comes first; Generate within reach without scrolling (the phone's bar), and
    # nothing wider than the screen.
    expect(page.get_by_test_id("generate-bar")).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    # What a phone shows once scrolled to the result: the clip, with Generate still at hand.
    page.get_by_test_id("progress").evaluate("element => element.scrollIntoView({block: 'end'})")
    expect(page.get_by_test_id("generate-bar")).to_be_in_viewport()
    expect(page.get_by_test_id("clip")).to_be_in_viewport()
    show_poster(page)
    screenshot(page, "studio-video-phone.png", full_page=False)
    wait_until_playable(page, "clip")
    page.goto(f"/jobs/{job.id}/")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    show_poster(page)
    screenshot(page, "job-video-phone.png")
    wait_until_playable(page, "clip")
    phone.close()
