"""Live previews in a real browser (Playwright driving Debian's Chromium) against the live server,
PostgreSQL, Redis and a real worker running the local provider, which shows a blurred early look
at each image halfway through its latency: the studio tab and the job's page show it in the
image's own slot, loaded from the preview route, before the image arrives; then the image takes
that slot and no preview is left."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from generation.models import GenerationJob
from generation.providers.local import PREVIEW_LONG_SIDE
from tests.browser import DESKTOP, SLOW, PolicyWatch, log_in, screenshot
from tests.conftest import wait_for_finish

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

JOBS = "/api/v1/jobs"
# Each image takes this long; its preview shows for the second half (a page polls every second).
LATENCY_MS = 4000

# One look at the slots of a job's progress panel, taken in a single pass over the DOM so that
# what it says about the preview and the images holds at one instant: for each slot in order,
# what it holds ("preview", "image" or "pending"), its number, its image's src, whether that
# image has loaded (complete, naturalWidth > 0) and still fades in, and the box it takes.
SLOTS = """
(panelId) => {
  const grid = document.querySelector(`#${panelId} [data-testid=thumbs]`);
  if (!grid) return null;
  return Array.from(grid.children).map((slot) => {
    const img = slot.querySelector("img");
    const box = slot.getBoundingClientRect();
    return {
      kind: slot.matches("[data-testid=preview]") ? "preview" : img ? "image" : "pending",
      number: slot.dataset.number ? Number(slot.dataset.number) : null,
      src: img ? img.getAttribute("src") : null,
      loaded: Boolean(img && img.complete && img.naturalWidth > 0),
      naturalWidth: img ? img.naturalWidth : 0,
      naturalHeight: img ? img.naturalHeight : 0,
      fading: Boolean(img && img.getAnimations().length),
      fit: img ? getComputedStyle(img).objectFit : null,
      width: box.width,
      height: box.height,
      imgWidth: img ? img.getBoundingClientRect().width : 0,
      imgHeight: img ? img.getBoundingClientRect().height : 0,
    };
  });
}
"""


@pytest.fixture(scope="module")
def stack(make_stack):
    return make_stack(LOCAL_PROVIDER_LATENCY_MS=str(LATENCY_MS), LOCAL_PROVIDER_PREVIEWS="true")


@pytest.fixture
def context(browser: Browser, live_server) -> BrowserContext:
    context = browser.new_context(base_url=live_server.url, viewport=DESKTOP)
    context.set_default_timeout(SLOW)
    watch = PolicyWatch(context)
    yield context
    for page in context.pages:
        page.wait_for_load_state()  # refusals still on their way are reported
    context.close()
    assert watch.refusals == []  # the preview loads under the Content-Security-Policy


def wait_for_slots(page: Page, job: GenerationJob, condition: str) -> list[dict[str, Any]]:
    """The panel's slots as soon as `condition` (JavaScript over `slots`) holds for them, read
    in the same pass as the condition was checked."""
    handle = page.wait_for_function(
        f"(panelId) => {{ const slots = ({SLOTS})(panelId); return slots && ({condition}) ? slots : null; }}",
        arg=f"progress-{job.id}",
        timeout=SLOW,
    )
    return handle.json_value()


def showing_loaded_preview(page: Page, job: GenerationJob, number: int) -> list[dict[str, Any]]:
    """The slots once the preview of image `number` is in a slot, loaded and done fading in."""
    return wait_for_slots(
        page, job, f"slots.some((s) => s.kind === 'preview' && s.number === {number} && s.loaded && !s.fading)"
    )


def assert_preview_in_its_slot(found: list[dict[str, Any]], job: GenerationJob, number: int) -> None:
    """Image `number`'s slot (the one after the images already made) holds its preview, served by
    the preview route, and not the image: the image has not arrived yet."""
    slot = found[number - 1]
    assert slot["kind"] == "preview" and slot["number"] == number
    assert slot["src"].startswith(f"{JOBS}/{job.id}/preview?at=")
    # The local provider's preview: PREVIEW_LONG_SIDE pixels on its long side, a 1:1 image's shape.
    assert (slot["naturalWidth"], slot["naturalHeight"]) == (PREVIEW_LONG_SIDE, PREVIEW_LONG_SIDE)
    assert [s["kind"] for s in found[: number - 1]] == ["image"] * (number - 1)
    assert [s["kind"] for s in found[number:]] == ["pending"] * (job.total_outputs - number)
    # In the thumbnail's own square, the picture filling it unstretched (same box as the slot,
    # cropped rather than squeezed to it, as the image's thumbnail will be).
    assert slot["width"] == pytest.approx(slot["height"], abs=1) and slot["fit"] == "cover"
    assert (slot["imgWidth"], slot["imgHeight"]) == pytest.approx((slot["width"], slot["height"]), abs=1)


def image_arrived_in(page: Page, job: GenerationJob, number: int) -> list[dict[str, Any]]:
    """The slots once image `number` is in its slot, loaded, and no preview of it is left."""
    return wait_for_slots(
        page,
        job,
        f"slots.length >= {number} && slots[{number - 1}].kind === 'image' && slots[{number - 1}].loaded"
        f" && !slots.some((s) => s.kind === 'preview' && s.number === {number})",
    )


def test_the_studio_shows_each_images_preview_in_its_slot_until_the_image_replaces_it(stack, alice, context):
    page = log_in(context, alice.user.email)
    page.get_by_test_id("prompt").fill("a lighthouse in a storm, forming")
    page.get_by_test_id("count").select_option("3")
    page.get_by_test_id("generate").click()
    expect(page.get_by_test_id("progress")).to_contain_text("a lighthouse in a storm")
    job = GenerationJob.objects.get(team=alice.team, prompt="a lighthouse in a storm, forming")

    # Image 1's preview, in image 1's slot, while no image has arrived.
    found = showing_loaded_preview(page, job, 1)
    assert_preview_in_its_slot(found, job, 1)

    # Image 1 arrives in that slot; image 2's preview then shows in the next one.
    arrived = image_arrived_in(page, job, 1)
    assert arrived[0]["src"] == f"{JOBS}/{job.id}/outputs/1"
    found = showing_loaded_preview(page, job, 2)
    assert_preview_in_its_slot(found, job, 2)
    screenshot(page, "studio-preview.png", full_page=False)

    # The job ends: every slot holds its image, and no preview is left on the page.
    assert wait_for_finish(job.id).status == GenerationJob.Status.SUCCEEDED
    expect(page.get_by_test_id("status")).to_have_text("Succeeded")
    final = image_arrived_in(page, job, 3)
    assert [(s["kind"], s["loaded"]) for s in final] == [("image", True)] * 3
    assert [s["src"] for s in final] == [f"{JOBS}/{job.id}/outputs/{n}" for n in (1, 2, 3)]
    expect(page.get_by_test_id("preview")).to_have_count(0)


def test_the_jobs_page_shows_the_preview_the_same_way(stack, alice, context):
    page = log_in(context, alice.user.email)
    answer = alice.client.post(JOBS, {"prompt": "a fox in the snow, forming", "count": 1}, format="json")
    assert answer.status_code == 202, answer.content
    job = GenerationJob.objects.get(id=answer.json()["id"])
    page.goto(f"/jobs/{job.id}/")

    found = showing_loaded_preview(page, job, 1)
    assert_preview_in_its_slot(found, job, 1)

    arrived = image_arrived_in(page, job, 1)
    assert arrived == [arrived[0]] and arrived[0]["src"] == f"{JOBS}/{job.id}/outputs/1"
    expect(page.get_by_test_id("preview")).to_have_count(0)
    assert wait_for_finish(job.id).status == GenerationJob.Status.SUCCEEDED
