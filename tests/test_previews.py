"""Live previews: the latest partial image of the image in progress, shown while a job runs.

A provider's partial images (the local provider's blurred early look, OpenAI's streamed partial
images through a fake that speaks the real server-sent events) become the job's preview: a
short-lived file under `previews/`, named on the job's row, in its API answer and at its own
route, announced on the job's channel; never billed, never an output or a look; gone once its
image is recorded or the job ends. A preview that cannot be stored costs nothing but itself.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
import redis
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db.models import Q
from django.utils import timezone
from PIL import Image

from credits.models import LedgerEntry
from generation.models import GeneratedOutput, GenerationJob, Look
from generation.providers.base import OutputRequest, PermanentProviderError, TransientProviderError
from generation.providers.local import PREVIEW_LONG_SIDE, LocalProvider
from generation.providers.openai_images import OpenAIProvider
from generation.services.event_bus import CHANNEL_PREFIX, channel_for
from generation.services.lifecycle import job_finish
from generation.services.previews import PREVIEW_CLEARED, PreviewKeeper, PreviewWriter
from tests.conftest import wait_for_finish, wait_for_job
from tests.factories import GenerationJobFactory, png_bytes
from tests.fakes.openai_server import (
    GENERATIONS,
    IMAGE_COLOUR,
    PARTIAL_COLOUR,
    PARTIAL_IMAGE_TOKENS,
    FakeOpenAI,
    stream_breaks_off,
    stream_error,
)
from tests.processes import wait_until

JOBS = "/api/v1/jobs"
API_KEY = "test-key"
# The local provider's latency in the worker: its preview shows for the second half of it.
LATENCY_MS = 3000
# Between the events of the fake's streamed answers: each partial image shows that long.
PARTIAL_PAUSE_SECONDS = 1.5
TOKEN = "worker-token"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh_fake(fake):
    fake.forget()


@pytest.fixture
def openai_enabled(settings, fake, monkeypatch):
    settings.OPENAI_API_KEY = API_KEY
    monkeypatch.setenv("OPENAI_BASE_URL", f"{fake.url}/v1")


@pytest.fixture(scope="module")
def stack(make_stack, fake):
    return make_stack(
        LOCAL_PROVIDER_LATENCY_MS=str(LATENCY_MS), OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=f"{fake.url}/v1"
    )


def submit(person, **body) -> str:
    response = person.client.post(JOBS, {"prompt": "amber dunes at dusk", **body}, format="json")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def captures(job_id: str) -> int:
    return LedgerEntry.objects.filter(job_id=job_id, kind=LedgerEntry.Kind.CAPTURE).count()


def stored_in(folder: str) -> list[str]:
    """The files under `folder` in storage, however deep (none when it does not exist)."""
    root = Path(default_storage.path(folder))
    return sorted(str(path.relative_to(default_storage.path(""))) for path in root.rglob("*") if path.is_file())


def opened(content: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(content))
    image.load()
    return image


def showing_preview(job_id: str, completed: int) -> GenerationJob:
    """The job as soon as it shows a preview while `completed` images are done (one row: the
    output's record clears the preview in the transaction that counts the image)."""
    return wait_for_job(job_id, lambda job: bool(job.preview_file) and job.completed_outputs == completed)


def job_folder_previews(job: GenerationJob) -> str:
    return f"previews/{job.team_id}/{job.id}"


# -- jobs on a real worker ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_running_job_shows_a_preview_of_each_image_until_the_image_replaces_it(stack, alice):
    listener = redis.Redis.from_url(settings.CACHE_URL).pubsub(ignore_subscribe_messages=True)
    listener.psubscribe(f"{CHANNEL_PREFIX}*")
    job_id = submit(alice, count=2)

    job = showing_preview(job_id, completed=0)
    first = job.preview_file
    assert job.preview_index == 0
    assert first.startswith(f"previews/{alice.team.id}/{job_id}/image-1-") and first.endswith(".jpg")
    assert captures(job_id) == 0  # shown, not billed
    # The API shows it, 1-based like the outputs, and serves it at its own address.
    body = wait_until(lambda: (answer := alice.client.get(f"{JOBS}/{job_id}").json())["preview"] and answer, timeout=10)
    assert body["outputs"] == [] and body["preview"]["index"] == 1
    assert body["preview"]["url"].startswith(f"http://testserver{JOBS}/{job_id}/preview?at=")
    answer = alice.client.get(body["preview"]["url"])
    assert answer.status_code == 200 and answer["Content-Type"] == "image/jpeg"
    assert "no-store" in answer["Cache-Control"]
    preview = opened(b"".join(answer.streaming_content))
    assert max(preview.size) == PREVIEW_LONG_SIDE and preview.width == preview.height  # a 1:1 image's shape
    # Each preview is announced on the job's channel (h3's stream turns it into `event: preview`).
    # Pub/sub is shared by every Redis database (other test runs too): only this job's channel counts.
    announced = wait_until(
        lambda: (
            (message := listener.get_message(timeout=0.2))
            and message["channel"].decode() == channel_for(job_id)
            and json.loads(message["data"]).get("preview")
            and json.loads(message["data"])
        ),
        timeout=10,
    )
    assert announced == {"preview": {"index": 0, "at": job.preview_at.isoformat()}}

    # Image 1 arrives: its preview is cleared with it and its file deleted; image 2 shows its own.
    second = showing_preview(job_id, completed=1)
    assert second.preview_index == 1 and second.preview_file != first
    wait_until(lambda: not default_storage.exists(first), timeout=10, message="the first preview's file to go")

    job = wait_for_finish(job_id)
    listener.close()
    assert job.status == GenerationJob.Status.SUCCEEDED
    assert (job.preview_file, job.preview_index, job.preview_at) == ("", None, None)
    wait_until(lambda: stored_in(job_folder_previews(job)) == [], timeout=10, message="the previews to go")
    # Billed once per image, collected once per image: a preview is neither.
    assert captures(job_id) == 2
    outputs = GeneratedOutput.objects.filter(job_id=job_id)
    assert outputs.count() == 2 and not outputs.filter(file__startswith="previews/").exists()
    assert Look.objects.filter(job_id=job_id).count() == 2
    assert alice.client.get(f"{JOBS}/{job_id}").json()["preview"] is None
    gone = alice.client.get(f"{JOBS}/{job_id}/preview")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "NOT_FOUND"


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_openai_partial_images_are_streamed_and_each_newer_one_replaces_the_preview(stack, alice, openai_enabled, fake):
    fake.partial_pause_seconds = PARTIAL_PAUSE_SECONDS
    job_id = submit(alice, provider="openai", model="gpt-image-2")

    first = showing_preview(job_id, completed=0)
    with default_storage.open(first.preview_file, "rb") as file:
        partial = opened(file.read())
    assert partial.format == "PNG" and partial.getpixel((0, 0)) == PARTIAL_COLOUR
    newer = wait_for_job(job_id, lambda job: job.preview_file not in ("", first.preview_file))
    assert newer.completed_outputs == 0 and newer.preview_index == 0
    wait_until(lambda: not default_storage.exists(first.preview_file), timeout=10, message="the replaced preview")
    assert captures(job_id) == 0

    job = wait_for_finish(job_id)
    assert job.status == GenerationJob.Status.SUCCEEDED and job.preview_file == ""
    wait_until(lambda: stored_in(job_folder_previews(job)) == [], timeout=10, message="the preview to go")
    [request] = fake.generations()
    assert request["stream"] is True and request["partial_images"] == settings.OPENAI_PARTIAL_IMAGES == 2
    [output] = GeneratedOutput.objects.filter(job_id=job_id)
    with default_storage.open(output.file.name, "rb") as file:
        assert opened(file.read()).getpixel((0, 0)) == IMAGE_COLOUR  # the image, not a partial
    usage = output.provider_report["usage"]
    assert usage["output_tokens"] == 1056 + 2 * PARTIAL_IMAGE_TOKENS  # what OpenAI bills is on record
    assert captures(job_id) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_preview_that_cannot_be_stored_is_dropped_and_the_job_goes_on(stack, alice):
    # Storage refuses every preview: a file stands where the previews' folder would be.
    folder = Path(default_storage.path("previews"))
    shutil.rmtree(folder, ignore_errors=True)
    folder.write_bytes(b"in the way")
    try:
        job_id = submit(alice, count=2)
        seen: set[str] = set()

        def finished() -> GenerationJob | None:
            job = GenerationJob.objects.get(id=job_id)
            seen.add(job.preview_file)
            return job if job.is_finished else None

        job = wait_until(finished, timeout=30, message="the job to finish")
    finally:
        folder.unlink()
    assert job.status == GenerationJob.Status.SUCCEEDED and job.completed_outputs == 2
    assert seen == {""}  # never named a preview that is not there
    assert job.pauses == 0 and job.outage_since is None  # not an outage of the job's
    assert captures(job_id) == 2
    assert "could not be stored" in stack.worker.log()


# -- the preview's bookkeeping, in this process -----------------------------------------------------


def running_job(person, **fields) -> GenerationJob:
    return GenerationJobFactory(
        team=person.team,
        status=GenerationJob.Status.RUNNING,
        lease_owner=TOKEN,
        lease_expires_at=timezone.now() + timedelta(hours=1),
        started_at=timezone.now(),
        total_outputs=2,
        **fields,
    )


def keeper_for(job: GenerationJob, *, token: str = TOKEN, index: int = 0) -> PreviewKeeper:
    return PreviewKeeper(job_id=job.id, team_id=job.team_id, index=index, token=token, completed=index)


def written() -> None:
    wait_until(lambda: PreviewWriter.current().idle, timeout=10, message="the preview writer to finish")


def jpeg(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.django_db(transaction=True)
def test_a_newer_preview_replaces_the_older_and_none_is_taken_once_the_image_is_recorded(alice):
    job = running_job(alice)
    keeper = keeper_for(job)
    keeper.offer(jpeg((200, 0, 0)), "image/jpeg")
    written()
    job.refresh_from_db()
    first = job.preview_file
    assert (job.preview_index, default_storage.exists(first)) == (0, True)

    keeper.offer(jpeg((0, 200, 0)), "image/jpeg")
    written()
    job.refresh_from_db()
    second = job.preview_file
    assert second != first and default_storage.exists(second) and not default_storage.exists(first)

    # The image is recorded: its count moves on and its preview is cleared in one transaction.
    GenerationJob.objects.filter(id=job.id).update(completed_outputs=1, **PREVIEW_CLEARED)
    keeper.offer(jpeg((0, 0, 200)), "image/jpeg")  # a partial image that comes too late
    written()
    job.refresh_from_db()
    # Refused, and the keeper is done: the late file and the one it showed are both gone.
    assert job.preview_file == "" and stored_in(job_folder_previews(job)) == []
    keeper.close(recorded=True)
    keeper.offer(jpeg((0, 0, 200)), "image/jpeg")
    written()
    assert stored_in(job_folder_previews(job)) == []


@pytest.mark.django_db(transaction=True)
def test_a_run_without_the_lease_cannot_show_a_preview_and_leaves_the_shown_one_alone(alice):
    job = running_job(alice)
    keeper = keeper_for(job)
    keeper.offer(jpeg((200, 0, 0)), "image/jpeg")
    written()
    job.refresh_from_db()
    shown = job.preview_file

    stale = keeper_for(job, token="a-worker-that-lost-its-lease")
    stale.offer(jpeg((0, 0, 200)), "image/jpeg")
    written()
    stale.close()
    written()
    job.refresh_from_db()
    assert job.preview_file == shown and stored_in(job_folder_previews(job)) == [shown]

    # The run that shows it stops making the image (a pause, a shutdown): its preview goes.
    keeper.close()
    written()
    job.refresh_from_db()
    assert (job.preview_file, job.preview_index, job.preview_at) == ("", None, None)
    assert stored_in(job_folder_previews(job)) == []


@pytest.mark.django_db(transaction=True)
def test_the_end_of_a_job_clears_its_preview_and_deletes_the_file(alice):
    name = default_storage.save(f"previews/{alice.team.id}/a-job/image-1-cafe.jpg", ContentFile(jpeg((9, 9, 9))))
    job = running_job(alice, preview_file=name, preview_index=0, preview_at=timezone.now())
    assert job_finish(job_id=job.id, fence=Q(lease_owner=TOKEN), status=GenerationJob.Status.CANCELED)
    job.refresh_from_db()
    assert (job.status, job.preview_file, job.preview_index, job.preview_at) == ("canceled", "", None, None)
    assert not default_storage.exists(name)


@pytest.mark.django_db
def test_the_preview_route_serves_the_teams_running_job_only(alice, charlie):
    name = default_storage.save(f"previews/{alice.team.id}/route/image-2-beef.jpg", ContentFile(jpeg((1, 2, 3))))
    at = timezone.now()
    job = running_job(alice, preview_file=name, preview_index=1, preview_at=at)
    preview = alice.client.get(f"{JOBS}/{job.id}").json()["preview"]
    assert preview == {
        "index": 2,
        "url": f"http://testserver{JOBS}/{job.id}/preview?{urlencode({'at': at.isoformat()})}",
        "at": at.isoformat(),
    }
    answer = alice.client.get(preview["url"])
    assert answer.status_code == 200 and b"".join(answer.streaming_content) == jpeg((1, 2, 3))
    assert 'filename="teal-marble-nails-2-preview.jpg"' in answer["Content-Disposition"]

    outsider = charlie.client.get(f"{JOBS}/{job.id}/preview")
    assert outsider.status_code == 404 and outsider.json()["error"]["code"] == "NOT_FOUND"
    # Running, but nothing shown yet: no preview either.
    unshown = running_job(alice)
    assert alice.client.get(f"{JOBS}/{unshown.id}").json()["preview"] is None
    nothing = alice.client.get(f"{JOBS}/{unshown.id}/preview")
    assert nothing.status_code == 404 and nothing.json()["error"]["code"] == "NOT_FOUND"
    # Queued again (its run paused): the row may still name a file, but nothing is shown.
    GenerationJob.objects.filter(id=job.id).update(status=GenerationJob.Status.QUEUED)
    assert alice.client.get(f"{JOBS}/{job.id}").json()["preview"] is None
    assert alice.client.get(f"{JOBS}/{job.id}/preview").status_code == 404
    default_storage.delete(name)


# -- the providers ------------------------------------------------------------------------------------


def output_request(**overrides) -> OutputRequest:
    fields = {
        "job_id": "job-1",
        "kind": "image",
        "model": "atelier-sketch-1",
        "prompt": "a red lighthouse on the cliffs",
        "index": 0,
        "seed": 7,
        "params": {"quality": "draft", "aspect_ratio": "16:9"},
        "timeout_seconds": 5.0,
    }
    return OutputRequest(**{**fields, **overrides})


def test_the_local_provider_shows_a_small_blurred_look_at_the_very_image_it_returns(settings):
    settings.LOCAL_PROVIDER_PREVIEWS = True
    previews: list[tuple[bytes, str]] = []
    provider = LocalProvider(latency_ms=40, failure_rate=0.0)

    shown = provider.generate(output_request(on_preview=lambda content, mime: previews.append((content, mime))))
    plain = provider.generate(output_request())

    assert shown.content == plain.content  # previews change nothing of the image
    [(content, mime)] = previews
    preview = opened(content)
    assert mime == "image/jpeg" and preview.format == "JPEG"
    assert max(preview.size) == PREVIEW_LONG_SIDE < max(shown.width, shown.height)
    assert abs(preview.width / preview.height - shown.width / shown.height) < 0.02  # the image's shape


@pytest.mark.parametrize(
    ("setting", "latency_ms", "kind", "model"),
    [
        (False, 40, "image", "atelier-sketch-1"),  # switched off
        (True, 0, "image", "atelier-sketch-1"),  # no wait: the image comes at once
        (True, 40, "video", "atelier-motion-1"),  # a clip's place shows its poster, not a preview
    ],
)
def test_the_local_provider_shows_no_preview_when_there_is_nothing_to_wait_for(
    settings, setting, latency_ms, kind, model
):
    settings.LOCAL_PROVIDER_PREVIEWS = setting
    previews: list[str] = []
    params = {"quality": "draft", "aspect_ratio": "1:1", "duration_seconds": 2} if kind == "video" else {}
    LocalProvider(latency_ms=latency_ms, failure_rate=0.0).generate(
        output_request(kind=kind, model=model, params=params, on_preview=lambda content, mime: previews.append(mime))
    )
    assert previews == []


@pytest.fixture
def openai(openai_enabled) -> OpenAIProvider:
    return OpenAIProvider()


def openai_request(**overrides) -> OutputRequest:
    return output_request(model="gpt-image-2", params={"quality": "standard", "aspect_ratio": "1:1"}, **overrides)


@pytest.mark.django_db
def test_openai_is_asked_for_a_stream_only_when_someone_will_see_the_partial_images(openai, fake, settings):
    openai.generate(openai_request())
    settings.OPENAI_PARTIAL_IMAGES = 0
    openai.generate(openai_request(on_preview=lambda content, mime: None))
    settings.OPENAI_PARTIAL_IMAGES = 3
    previews: list[bytes] = []
    output = openai.generate(openai_request(on_preview=lambda content, mime: previews.append(content)))

    plain, switched_off, streamed = fake.generations()
    assert "stream" not in plain and "partial_images" not in plain
    assert "stream" not in switched_off
    assert streamed["stream"] is True and streamed["partial_images"] == 3
    assert [opened(content).getpixel((0, 0)) for content in previews] == [PARTIAL_COLOUR] * 3
    assert opened(output.content).getpixel((0, 0)) == IMAGE_COLOUR
    assert output.report["usage"]["output_tokens"] == 1056 + 3 * PARTIAL_IMAGE_TOKENS


@pytest.mark.django_db
def test_openai_streamed_edits_show_their_partial_images_too(openai, fake):
    previews: list[str] = []
    output = openai.generate(
        openai_request(kind="edit", source_image=png_bytes(64, 64), on_preview=lambda c, mime: previews.append(mime))
    )
    [edit] = fake.edits()
    assert (edit.fields["stream"], edit.fields["partial_images"]) == ("true", "2")
    assert previews == ["image/png", "image/png"] and output.mime == "image/png"


@pytest.mark.django_db
def test_a_stream_that_goes_wrong_is_an_atelier_error_like_any_answer(openai, fake):
    shown = lambda content, mime: None  # noqa: E731
    fake.script(
        GENERATIONS,
        stream_breaks_off(),
        stream_error(type="image_generation_user_error", code="moderation_blocked", message="Rejected by safety."),
        stream_error(type="server_error", code=None, message="The server had an error."),
    )
    with pytest.raises(TransientProviderError) as broken_off:
        openai.generate(openai_request(on_preview=shown))
    with pytest.raises(PermanentProviderError) as refused:
        openai.generate(openai_request(on_preview=shown))
    with pytest.raises(TransientProviderError) as failed:
        openai.generate(openai_request(on_preview=shown))
    assert broken_off.value.code == "PROVIDER_UNAVAILABLE"
    assert refused.value.code == "CONTENT_POLICY"
    assert failed.value.code == "PROVIDER_UNAVAILABLE" and "Rejected" not in failed.value.message
