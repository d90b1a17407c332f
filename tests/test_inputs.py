"""A job's input images: decoded once per run, downsized to what the provider needs, and bounded
in memory per upload, per job and per worker process."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageDraw, ImageFile

from credits.services import JobCredits, credits_hold, job_credits
from generation.models import GeneratedOutput, GenerationJob, InputAsset, JobReference
from generation.providers.base import PermanentProviderError
from generation.providers.local import LocalProvider
from generation.providers.local_art import QUALITY_LONG_SIDE
from generation.services.inputs import (
    InputsTooLarge,
    MemoryBudget,
    decode_budget,
    input_image_prepare,
    job_inputs_prepare,
    job_memory_estimate,
)
from generation.services.pipeline import RunOutcome, job_run
from generation.services.submit import JobSpec, ReferenceSpec, job_submit
from tests.factories import GenerationJobFactory, InputAssetFactory, big_png_bytes
from tests.processes import wait_until

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
RED = (230, 20, 20)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The size of every picture Pillow decodes from a file during the test, in order.

    Instrumentation, not a mock: the wrapper counts, then decodes as before.
    """
    sizes: list[tuple[int, int]] = []
    load = ImageFile.ImageFile.load

    def counting_load(image: ImageFile.ImageFile):  # type: ignore[no-untyped-def]
        if image.tile:  # pixels still to decode (a second load() is free)
            sizes.append(image.size)
        return load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    return sizes


@pytest.fixture
def fast_provider(settings) -> None:  # type: ignore[no-untyped-def]
    settings.LOCAL_PROVIDER_LATENCY_MS = 0
    settings.LOCAL_PROVIDER_TRANSIENT_FAILURE_RATE = 0.0


def photo_bytes(size: tuple[int, int], *, fmt: str = "PNG", orientation: int | None = None) -> bytes:
    """A picture with a red block in its top-left corner, to see which way it ends up."""
    image = Image.new("RGB", size, (90, 140, 60))
    ImageDraw.Draw(image).rectangle((0, 0, size[0] // 8, size[1] // 8), fill=RED)
    buffer = io.BytesIO()
    extra = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        extra["exif"] = exif.tobytes()
    image.save(buffer, format=fmt, **extra)
    return buffer.getvalue()


def opened(content: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(content))
    image.load()
    return image


def is_red(pixel: tuple[int, ...]) -> bool:
    return pixel[0] > 180 and pixel[1] < 80 and pixel[2] < 80


# -- uploads ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_upload_of_a_small_png_hiding_a_huge_bitmap_is_refused_naming_its_decoded_size(alice):
    content = big_png_bytes(6320, 6320)
    assert len(content) < MB  # the file is small; its pixels are not
    response = alice.client.post("/api/v1/assets", {"file": SimpleUploadedFile("big.png", content)}, format="multipart")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"] == {
        "file": [
            "The image is 6320 x 6320 pixels (RGBA); decoding it takes 153 MB of memory and at most 128 MB "
            "are accepted. Please upload a smaller picture."
        ]
    }
    assert not InputAsset.objects.exists()


@pytest.mark.django_db
def test_upload_of_a_12_megapixel_phone_photo_is_accepted(alice):
    content = photo_bytes((4032, 3024), fmt="JPEG")
    response = alice.client.post(
        "/api/v1/assets", {"file": SimpleUploadedFile("photo.jpg", content)}, format="multipart"
    )
    assert response.status_code == 201, response.content
    assert (response.json()["width"], response.json()["height"]) == (4032, 3024)


# -- submit -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_submit_with_a_stored_source_too_big_for_a_job_is_400_naming_the_field(alice):
    older_upload = InputAssetFactory(team=alice.team, width=6320, height=6320, bytes=187_000)
    response = alice.client.post(
        "/api/v1/jobs",
        {"prompt": "make it pink", "kind": "edit", "inputs": {"source_asset_id": str(older_upload.id)}},
        format="json",
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"] == {
        "inputs.source_asset_id": [
            "This image is 6320 x 6320 pixels and would need about 237 MB of memory to prepare; a job may "
            "use at most 224 MB. Please use a picture of at most about 36 megapixels."
        ]
    }
    assert not GenerationJob.objects.exists()


@pytest.mark.django_db
def test_submit_names_every_reference_and_sketch_too_big_for_a_job(alice):
    small = InputAssetFactory(team=alice.team, width=4032, height=3024, mime="image/jpeg")
    big = [InputAssetFactory(team=alice.team, width=7000, height=5000) for _ in range(2)]
    response = alice.client.post(
        "/api/v1/jobs",
        {
            "prompt": "make it pink",
            "inputs": {
                "references": [{"asset_id": str(small.id)}, {"asset_id": str(big[0].id)}],
                "sketch": {"asset_id": str(big[1].id)},
            },
        },
        format="json",
    )
    assert response.status_code == 400
    details = response.json()["error"]["details"]
    assert sorted(details) == ["inputs.references.1.asset_id", "inputs.sketch.asset_id"]
    assert details["inputs.sketch.asset_id"][0].startswith("This image is 7000 x 5000 pixels")


@pytest.mark.django_db
def test_the_largest_picture_an_upload_accepts_fits_a_job(alice):
    # 128 MB of RGBA pixels in a 10 MB file: the most both upload limits let through.
    largest = InputAssetFactory(team=alice.team, width=5792, height=5792, bytes=10 * MB)
    spec = JobSpec(prompt="make it pink", kind=GenerationJob.Kind.EDIT, source_asset_id=largest.id)
    assert job_submit(team=alice.team, user=alice.user, spec=spec).created


# -- preparing ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_big_allowed_source_is_downsized_to_the_providers_input_max_side(alice, decodes):
    source = InputAssetFactory(team=alice.team, content=big_png_bytes(3000, 2000))
    job = GenerationJobFactory(team=alice.team, kind=GenerationJob.Kind.EDIT, source_asset=source)
    inputs = job_inputs_prepare(job=job, provider=LocalProvider())
    assert inputs.source is not None and inputs.references == ()
    prepared = opened(inputs.source)
    assert (prepared.format, prepared.size, prepared.mode) == ("PNG", (1024, 683), "RGBA")
    assert decodes[0] == (3000, 2000)


@pytest.mark.django_db
def test_a_phone_photo_is_decoded_at_a_reduced_scale_and_turned_upright(alice, decodes):
    # EXIF orientation 6: the camera was turned; the picture is stored sideways.
    source = InputAssetFactory(team=alice.team, content=photo_bytes((4032, 3024), fmt="JPEG", orientation=6))
    job = GenerationJobFactory(team=alice.team, kind=GenerationJob.Kind.EDIT, source_asset=source)
    inputs = job_inputs_prepare(job=job, provider=LocalProvider())
    assert inputs.source is not None
    assert decodes[0] == (2016, 1512)  # JPEG draft: never decoded at full size
    upright = opened(inputs.source).convert("RGB")
    assert upright.size == (768, 1024)
    assert is_red(upright.getpixel((upright.width - 5, 5)))  # top-left turned clockwise to top-right
    assert not is_red(upright.getpixel((5, 5)))


@pytest.mark.django_db
def test_small_upright_images_reach_the_provider_as_uploaded_in_order_with_their_weights(alice, decodes):
    source_bytes, sketch_bytes = photo_bytes((640, 480)), photo_bytes((300, 200), fmt="JPEG")
    reference_bytes = photo_bytes((1024, 1024), fmt="WEBP")
    source = InputAssetFactory(team=alice.team, content=source_bytes)
    job = GenerationJobFactory(team=alice.team, kind=GenerationJob.Kind.EDIT, source_asset=source)
    JobReference.objects.create(job=job, asset=InputAssetFactory(team=alice.team, content=reference_bytes), weight=0.8)
    JobReference.objects.create(
        job=job,
        asset=InputAssetFactory(team=alice.team, content=sketch_bytes),
        weight=0.3,
        role=JobReference.Role.SKETCH,
    )
    inputs = job_inputs_prepare(job=job, provider=LocalProvider())
    # Unchanged bytes keep the local provider's pictures identical to what they were.
    assert inputs.source == source_bytes
    assert [(ref.content, ref.weight) for ref in inputs.references] == [(reference_bytes, 0.8), (sketch_bytes, 0.3)]
    assert all(max(size) <= 1024 for size in decodes)


@pytest.mark.django_db
def test_a_queued_job_with_a_too_big_source_is_refused_before_anything_is_read(alice, decodes):
    older_upload = InputAssetFactory(team=alice.team, width=6320, height=6320, bytes=187_000)  # no file
    job = GenerationJobFactory(team=alice.team, kind=GenerationJob.Kind.EDIT, source_asset=older_upload)
    with pytest.raises(InputsTooLarge) as caught:
        job_inputs_prepare(job=job, provider=LocalProvider())
    assert caught.value.code == "INPUT_TOO_LARGE"
    assert caught.value.message == (
        "The source image is 6320 x 6320 pixels and would need about 237 MB of memory to prepare; a job may "
        "use at most 224 MB. Please use a picture of at most about 36 megapixels."
    )
    assert decodes == []


def test_a_file_bigger_than_its_row_says_is_refused_before_it_is_decoded(decodes, settings):
    settings.JOB_MEMORY_CEILING_MB = 64
    with pytest.raises(InputsTooLarge) as caught:
        input_image_prepare(content=big_png_bytes(6000, 4000), subject="Reference image 2", max_side=1024)
    assert caught.value.message.startswith("Reference image 2 is 6000 x 4000 pixels")
    assert decodes == []


def test_an_unreadable_input_fails_the_job_for_good_naming_the_image():
    with pytest.raises(PermanentProviderError) as caught:
        input_image_prepare(content=b"\x89PNG\r\n\x1a\nbroken", subject="The sketch", max_side=1024)
    assert caught.value.code == "INVALID_INPUT_IMAGE"
    assert caught.value.message.startswith("The sketch could not be read")


# -- a run --------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fast_provider")
def test_a_run_decodes_each_big_input_once_however_many_images_it_makes(alice, decodes):
    source = InputAssetFactory(team=alice.team, content=big_png_bytes(3000, 2000))
    reference = InputAssetFactory(team=alice.team, content=big_png_bytes(2500, 2500, alpha=False))
    spec = JobSpec(
        prompt="make it pink",
        kind=GenerationJob.Kind.EDIT,
        count=3,
        source_asset_id=source.id,
        references=(ReferenceSpec(asset_id=reference.id),),
    )
    job = job_submit(team=alice.team, user=alice.user, spec=spec).job
    assert job_run(job_id=job.id) is RunOutcome.SUCCEEDED
    assert GeneratedOutput.objects.filter(job=job).count() == 3
    big = [size for size in decodes if max(size) > LocalProvider.input_max_side]
    assert sorted(big) == [(2500, 2500), (3000, 2000)]  # once each, not once per image
    assert len(decodes) - len(big) >= 3  # the provider reads the small prepared copies per image


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fast_provider")
def test_a_job_whose_source_is_too_big_fails_refunded_when_it_reaches_a_worker(alice, decodes):
    older_upload = InputAssetFactory(team=alice.team, width=6320, height=6320, bytes=187_000)
    job = GenerationJobFactory(
        team=alice.team, kind=GenerationJob.Kind.EDIT, source_asset=older_upload, total_outputs=2
    )
    credits_hold(team_id=alice.team.id, job_id=job.id, amount=2, actor=None)
    assert job_run(job_id=job.id) is RunOutcome.FAILED
    job.refresh_from_db()
    assert (job.status, job.error_code) == (GenerationJob.Status.FAILED, "INPUT_TOO_LARGE")
    assert job.error_message.startswith("The source image is 6320 x 6320 pixels")
    assert job_credits(job.id) == JobCredits(held=2, captured=0, released=2)
    assert decodes == []


# -- the worker's decode budget ------------------------------------------------------------------


def test_a_decode_that_does_not_fit_the_budget_waits_until_another_releases_its_share():
    budget = MemoryBudget(100)
    first = budget.acquire(70)
    granted: list[int | None] = []
    waiter = threading.Thread(target=lambda: granted.append(budget.acquire(50)))
    waiter.start()
    wait_until(lambda: budget.waiting == 1, timeout=5, message="the second decode to wait")
    assert budget.acquire(30) == 30  # what fits goes ahead
    assert granted == []
    budget.release(30)
    assert first is not None
    budget.release(first)
    waiter.join(timeout=5)
    assert granted == [50]
    assert budget.in_use == 50


def test_a_decode_larger_than_the_whole_budget_waits_to_run_alone():
    budget = MemoryBudget(100)
    small = budget.acquire(10)
    granted: list[int | None] = []
    waiter = threading.Thread(target=lambda: granted.append(budget.acquire(500)))
    waiter.start()
    wait_until(lambda: budget.waiting == 1, timeout=5, message="the large decode to wait")
    assert granted == []
    assert small is not None
    budget.release(small)
    waiter.join(timeout=5)
    assert granted == [100]  # clamped to the budget, not refused


def test_a_full_size_decode_takes_its_share_of_the_workers_budget(settings):
    settings.WORKER_DECODE_BUDGET_MB = 100
    content = big_png_bytes(3000, 2000)
    budget = decode_budget()
    everything = budget.acquire(budget.capacity)  # other threads are decoding
    prepared: list[bytes] = []
    decoder = threading.Thread(
        target=lambda: prepared.append(input_image_prepare(content=content, subject="The source", max_side=1024))
    )
    decoder.start()
    wait_until(lambda: budget.waiting == 1, timeout=5, message="the decode to wait for its share")
    assert prepared == []
    assert everything is not None
    budget.release(everything)
    decoder.join(timeout=30)
    assert opened(prepared[0]).size == (1024, 683)
    assert budget.in_use == 0


# -- the provider and the measured peak ---------------------------------------------------------


def test_the_local_provider_asks_for_inputs_as_large_as_it_draws():
    assert LocalProvider.input_max_side == max(QUALITY_LONG_SIDE.values())


# The child's peak is read from /proc (VmHWM, reset first where the kernel allows), not from
# getrusage: ru_maxrss of a freshly started child starts at its parent's (pytest's) high-water mark.
_MEASURE = """
import json, sys, time
import django
django.setup()
from generation.services.inputs import input_image_prepare

def status(field):
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) for line in lines if line.startswith(field + ":"))

content = open(sys.argv[1], "rb").read()
try:
    with open("/proc/self/clear_refs", "w") as reset:
        reset.write("5")  # resets VmHWM to the current RSS
except OSError:
    pass
before = status("VmRSS")
started = time.process_time()
input_image_prepare(content=content, subject="The source image", max_side=1024)
print(json.dumps({"baseline_kb": before, "peak_kb": status("VmHWM") - before, "cpu_s": time.process_time() - started}))
"""


def test_preparing_the_largest_source_an_upload_accepts_stays_under_the_job_ceiling(tmp_path, settings):
    # 5792 x 5792 RGBA: 128 MB of pixels, the most UPLOAD_MAX_DECODED_MB lets through.
    path = tmp_path / "largest.png"
    path.write_bytes(big_png_bytes(5792, 5792))
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}  # the test defaults are in os.environ
    completed = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    measured = json.loads(completed.stdout.strip().splitlines()[-1])
    peak_mb = measured["peak_kb"] / 1024
    row = InputAsset(width=5792, height=5792, mime="image/png", bytes=path.stat().st_size)
    estimate_mb = job_memory_estimate(assets=[row], provider=LocalProvider()) / MB
    print(
        f"[figure] preparing a 5792 x 5792 RGBA PNG: peak RSS {peak_mb:.0f} MB above a "
        f"{measured['baseline_kb'] / 1024:.0f} MB baseline, {measured['cpu_s']:.2f} s CPU; "
        f"estimated job peak {estimate_mb:.0f} MB; ceiling {settings.JOB_MEMORY_CEILING_MB} MB"
    )
    assert peak_mb < estimate_mb <= settings.JOB_MEMORY_CEILING_MB
