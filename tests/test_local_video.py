"""Clips from the offline provider: real H.264 MP4s that browsers play, made and sold like images."""

from __future__ import annotations

import io
import time
import zipfile
from dataclasses import dataclass
from fractions import Fraction

import av
import pytest
from av.video.frame import VideoFrame
from django.core.files.storage import default_storage
from PIL import Image, ImageChops, ImageStat

from generation.models import GeneratedOutput, GenerationJob
from generation.providers.base import OutputRequest, PermanentProviderError, TransientProviderError
from generation.providers.local import LocalProvider
from tests.conftest import wait_for_finish

FPS = 24


def clip_request(**overrides) -> OutputRequest:
    values = {
        "job_id": "job-1",
        "kind": "video",
        "model": "atelier-motion-1",
        "prompt": "a lighthouse above the ocean waves at night",
        "index": 0,
        "seed": 1234,
        "params": {"aspect_ratio": "16:9", "duration_seconds": 2, "style": "realistic", "quality": "standard"},
    }
    values.update(overrides)
    return OutputRequest(**values)


@dataclass(frozen=True)
class Decoded:
    """What a player finds in a clip."""

    codec: str
    pix_fmt: str
    size: tuple[int, int]
    rate: Fraction
    frames: int
    seconds: float
    first: Image.Image
    last: Image.Image


def decode(content: bytes) -> Decoded:
    with av.open(io.BytesIO(content), mode="r") as container:
        stream = container.streams.video[0]
        frames = [frame for frame in container.decode(video=0) if isinstance(frame, VideoFrame)]
        assert container.duration is not None and stream.average_rate is not None
        return Decoded(
            codec=stream.codec_context.name,
            pix_fmt=str(stream.codec_context.pix_fmt),
            size=(stream.width, stream.height),
            rate=stream.average_rate,
            frames=len(frames),
            seconds=container.duration / av.time_base,
            first=frames[0].to_image(),
            last=frames[-1].to_image(),
        )


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).mean) / 3


@pytest.fixture
def provider() -> LocalProvider:
    return LocalProvider(latency_ms=0, failure_rate=0.0)


# -- the provider ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("aspect_ratio", "duration", "size"),
    [("16:9", 2, (640, 360)), ("9:16", 3, (360, 640)), ("1:1", 4, (480, 480))],
)
def test_a_clip_is_an_h264_mp4_of_the_asked_size_and_duration(
    provider: LocalProvider, aspect_ratio: str, duration: int, size: tuple[int, int]
) -> None:
    request = clip_request(params={"aspect_ratio": aspect_ratio, "duration_seconds": duration})
    output = provider.generate(request)

    assert output.mime == "video/mp4"
    assert (output.width, output.height) == size
    clip = decode(output.content)
    assert clip.codec == "h264"
    assert clip.pix_fmt == "yuv420p"  # the one chroma layout every browser decodes
    assert clip.size == size
    assert clip.rate == FPS
    assert clip.frames == duration * FPS
    assert clip.seconds == pytest.approx(duration, abs=1 / FPS)
    assert output.report == {
        "model_version": "atelier-motion-1",
        "frames": duration * FPS,
        "duration_seconds": duration,
    }


def test_the_poster_is_the_first_frame_of_the_clip(provider: LocalProvider) -> None:
    output = provider.generate(clip_request())
    assert output.poster is not None
    poster = Image.open(io.BytesIO(output.poster))
    assert poster.format == "PNG"
    assert poster.size == (output.width, output.height)
    clip = decode(output.content)
    # The poster is the frame before compression: the decoded first frame differs only by it.
    assert mean_difference(poster, clip.first) < 3
    assert mean_difference(poster, clip.last) > mean_difference(poster, clip.first) + 5  # the camera moved


def test_a_clip_puts_its_index_first_so_playback_starts_before_it_has_loaded(provider: LocalProvider) -> None:
    content = provider.generate(clip_request()).content
    assert content[4:8] == b"ftyp"
    assert 0 < content.index(b"moov") < content.index(b"mdat")


def test_the_same_request_gives_a_byte_identical_clip(provider: LocalProvider) -> None:
    first = provider.generate(clip_request())
    second = LocalProvider(latency_ms=0, failure_rate=0.0).generate(clip_request())
    assert first == second
    other_seed = provider.generate(clip_request(seed=99))
    assert other_seed.content != first.content
    assert (
        mean_difference(Image.open(io.BytesIO(other_seed.poster or b"")), Image.open(io.BytesIO(first.poster or b"")))
        > 5
    )


def test_a_longer_clip_films_the_same_design(provider: LocalProvider) -> None:
    short = provider.generate(clip_request(params={"aspect_ratio": "1:1", "duration_seconds": 2}))
    long = provider.generate(clip_request(params={"aspect_ratio": "1:1", "duration_seconds": 4}))
    assert short.poster == long.poster
    short_clip, long_clip = decode(short.content), decode(long.content)
    assert long_clip.frames == 2 * short_clip.frames
    assert mean_difference(short_clip.last, long_clip.last) < 3  # the same move, slower


def test_a_forbidden_prompt_is_refused_for_a_clip_too(provider: LocalProvider) -> None:
    with pytest.raises(PermanentProviderError) as caught:
        provider.generate(clip_request(prompt="a forbidden dance"))
    assert caught.value.code == "CONTENT_POLICY"


def test_a_clip_is_refused_from_the_configured_output_on(provider: LocalProvider, settings) -> None:
    settings.LOCAL_PROVIDER_REFUSE_FROM_IMAGE = 2
    provider.generate(clip_request(index=0))
    with pytest.raises(PermanentProviderError) as caught:
        provider.generate(clip_request(index=1))
    assert (caught.value.code, caught.value.message) == ("CONTENT_POLICY", "Clip 2 was refused by the content policy.")


def test_a_simulated_outage_fails_a_clip_for_now() -> None:
    with pytest.raises(TransientProviderError) as caught:
        LocalProvider(latency_ms=0, failure_rate=1.0).generate(clip_request())
    assert caught.value.code == "PROVIDER_UNAVAILABLE"


def test_a_clip_slower_than_its_timeout_gives_up_at_the_timeout() -> None:
    slow = LocalProvider(latency_ms=5000, failure_rate=0.0)
    started = time.monotonic()
    with pytest.raises(TransientProviderError) as caught:
        slow.generate(clip_request(timeout_seconds=0.2))
    assert caught.value.code == "PROVIDER_TIMEOUT"
    assert 0.2 <= time.monotonic() - started < 2


def test_the_hang_drill_holds_up_a_clip_once(provider: LocalProvider, settings) -> None:
    settings.LOCAL_PROVIDER_HANG_WORD = "stuck"
    settings.LOCAL_PROVIDER_HANG_SECONDS = 0.3
    request = clip_request(job_id="hang-drill-clip", prompt="a stuck lift")
    started = time.monotonic()
    held_up = provider.generate(request)
    assert time.monotonic() - started >= 0.3
    assert provider.generate(request) == held_up  # the drill delays the clip, never changes it


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"model": "atelier-sketch-1"}, "UNSUPPORTED_KIND"),
        ({"kind": "image"}, "UNSUPPORTED_KIND"),  # the motion model makes only clips
        ({"params": {"aspect_ratio": "16:9", "duration_seconds": 5}}, "INVALID_REQUEST"),
        ({"params": {"aspect_ratio": "4:3", "duration_seconds": 2}}, "INVALID_REQUEST"),
    ],
)
def test_what_the_motion_model_cannot_make_is_refused_at_once(overrides: dict, code: str) -> None:
    slow = LocalProvider(latency_ms=5000, failure_rate=0.0)
    started = time.monotonic()
    with pytest.raises(PermanentProviderError) as caught:
        slow.generate(clip_request(**overrides))
    assert caught.value.code == code
    assert time.monotonic() - started < 1  # before the simulated latency: no point waiting


# -- on a real worker, through the API ---------------------------------------------------------


@pytest.fixture(scope="module")
def stack(make_stack):
    return make_stack(LOCAL_PROVIDER_LATENCY_MS="100")


def submit_clip(person, **body):  # type: ignore[no-untyped-def]
    payload = {
        "prompt": "red paper lanterns drifting over a city",
        "kind": "video",
        "params": {"duration_seconds": 2, "aspect_ratio": "16:9"},
        **body,
    }
    response = person.client.post("/api/v1/jobs", payload, format="json")
    assert response.status_code == 202, response.content
    return response.json()


def streamed(response) -> bytes:  # type: ignore[no-untyped-def]
    return b"".join(response.streaming_content)


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_clip_job_delivers_a_playable_mp4_with_its_poster_and_costs_its_seconds(stack, alice) -> None:  # noqa: ARG001
    submitted = submit_clip(alice)
    assert submitted["model"] == "atelier-motion-1"
    assert submitted["credits"]["held"] == 2  # 1 credit a second, 2 s

    assert wait_for_finish(submitted["id"]).status == GenerationJob.Status.SUCCEEDED
    body = alice.client.get(f"/api/v1/jobs/{submitted['id']}").json()
    assert body["credits"] == {"per_output": 2, "held": 2, "captured": 2, "released": 0}
    [described] = body["outputs"]
    assert (described["mime"], described["width"], described["height"]) == ("video/mp4", 640, 360)
    assert described["provider_report"] == {"model_version": "atelier-motion-1", "frames": 48, "duration_seconds": 2}

    output = GeneratedOutput.objects.get(job_id=submitted["id"])
    assert output.poster.name and default_storage.exists(output.poster.name)

    served = alice.client.get(described["url"])
    assert served.status_code == 200
    assert served["Content-Type"] == "video/mp4"
    clip = decode(streamed(served))
    assert (clip.codec, clip.size, clip.frames) == ("h264", (640, 360), 48)
    assert clip.seconds == pytest.approx(2, abs=1 / FPS)

    poster = alice.client.get(described["poster_url"])
    assert poster["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(streamed(poster))).size == (640, 360)


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_the_download_of_a_two_clip_job_holds_clip_1_and_clip_2(stack, alice) -> None:  # noqa: ARG001
    submitted = submit_clip(alice, count=2, params={"duration_seconds": 3, "aspect_ratio": "9:16"})
    assert wait_for_finish(submitted["id"]).status == GenerationJob.Status.SUCCEEDED
    assert alice.client.get(f"/api/v1/jobs/{submitted['id']}").json()["credits"]["captured"] == 2 * 3

    download = alice.client.get(f"/api/v1/jobs/{submitted['id']}/download")
    assert download["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(streamed(download)))
    assert archive.namelist() == [
        "red-paper-lanterns-drifting-over-a-city-1.mp4",
        "red-paper-lanterns-drifting-over-a-city-2.mp4",
    ]
    first, second = (decode(archive.read(name)) for name in archive.namelist())
    assert [(clip.size, clip.frames) for clip in (first, second)] == [((360, 640), 72)] * 2
    assert mean_difference(first.first, second.first) > 5  # two clips, two designs


# -- validation --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_clip_length_the_model_does_not_make_is_refused_naming_the_lengths_it_does(alice) -> None:
    response = alice.client.post(
        "/api/v1/jobs", {"prompt": "a kite", "kind": "video", "params": {"duration_seconds": 5}}, format="json"
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    [message] = error["details"]["params.duration_seconds"]
    assert all(str(offered) in message for offered in (2, 3, 4, 6))
    assert not GenerationJob.objects.exists()


@pytest.mark.django_db
def test_a_clip_from_the_still_image_model_is_refused_naming_the_kind(alice) -> None:
    response = alice.client.post(
        "/api/v1/jobs", {"prompt": "a kite", "kind": "video", "model": "atelier-sketch-1"}, format="json"
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert list(error["details"]) == ["kind"]
    assert not GenerationJob.objects.exists()
