"""Uploads tried as an attacker would (issue 9): damaged files, small files hiding huge bitmaps,
floods of uploads, the same file again and again. Each is refused with a clear 4xx and nothing
stored, or stored once; and a worker preparing the largest accepted picture stays within the
documented memory ceiling (JOB_MEMORY_CEILING_MB)."""

from __future__ import annotations

import html
import io
import json
import random
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from PIL import Image, ImageFile

from accounts.quotas import QuotaExceeded
from credits.services import JobCredits, credits_hold, job_credits
from generation.models import GenerationJob, InputAsset
from generation.services import assets
from generation.services.assets import DAMAGED, asset_upload
from generation.services.decoding import MB, decode_bytes, image_decode_bytes
from generation.services.dispatch import job_dispatch_on_commit
from generation.services.inputs import InputsTooLarge, input_image_prepare, web_decode_budget
from generation.services.studio import tab_create
from tests.conftest import wait_for_finish
from tests.factories import big_png_bytes, png_bytes
from tests.processes import ManagedProcess, child_environment, start_worker

ROOT = Path(__file__).resolve().parent.parent
ASSETS = "/api/v1/assets"
# 128 MB of RGBA pixels: the largest square picture UPLOAD_MAX_DECODED_MB (128) accepts.
LARGEST_ACCEPTED_SIDE = 5792


# -- pictures -----------------------------------------------------------------------------------


def encoded(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def noise(size: tuple[int, int], *, seed: int = 1) -> Image.Image:
    """Incompressible RGB pixels: its PNG weighs about its raw size."""
    return Image.frombytes("RGB", size, random.Random(seed).randbytes(size[0] * size[1] * 3))


def picture(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A picture with some texture (and some transparency, in a mode with alpha), quick to make
    at any size."""
    texture = Image.effect_noise((max(1, size[0] // 8), max(1, size[1] // 8)), 60).resize(size)
    image = texture.convert(mode)
    if "A" in mode:
        image.putalpha(Image.linear_gradient("L").resize(size))
    return image


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(size: tuple[int, int], *, bit_depth: int, colour_type: int, channels: int) -> bytes:
    """A PNG of any bit depth and colour type, which Pillow cannot write itself (16-bit RGB...)."""
    width, height = size
    row = b"\x00" + b"\x5a" * (width * channels * bit_depth // 8)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    palette = png_chunk(b"PLTE", bytes(range(48))) if colour_type == 3 else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + palette
        + png_chunk(b"IDAT", zlib.compress(row * height))
        + png_chunk(b"IEND", b"")
    )


def png_with_corrupt_stream() -> bytes:
    """A PNG whose chunks are all well formed (right lengths, right CRCs) but whose compressed
    pixels are not a valid zlib stream: only decoding them finds out."""
    content = encoded(noise((300, 300)), "PNG")
    start = content.index(b"IDAT")
    length = struct.unpack(">I", content[start - 4 : start])[0]
    data = bytearray(content[start + 4 : start + 4 + length])
    for index in range(100, 200):
        data[index] ^= 0x55
    return content[: start - 4] + png_chunk(b"IDAT", bytes(data)) + content[start + 8 + length :]


def jpeg_with_one_component_first_scan() -> bytes:
    """A baseline colour JPEG whose first scan names one component of three: libjpeg then keeps
    every coefficient until the last scan, as for a progressive one. (Only its header is read.)"""
    content = encoded(picture((80, 64)), "JPEG", subsampling=0)
    start = content.index(b"\xff\xda")
    length = struct.unpack(">H", content[start + 2 : start + 4])[0]
    one_component = b"\xff\xda" + struct.pack(">HB", 8, 1) + content[start + 5 : start + 7] + b"\x00\x3f\x00"
    return content[:start] + one_component + content[start + 2 + length :]


def multi_picture_jpeg() -> bytes:
    frames = [Image.new("RGB", (80, 64), "red"), Image.new("RGB", (80, 64), "blue")]
    return encoded(frames[0], "MPO", save_all=True, append_images=frames[1:])


def upload(person, content: bytes, name: str = "picture.png"):  # type: ignore[no-untyped-def]
    return person.client.post(ASSETS, {"file": SimpleUploadedFile(name, content)}, format="multipart")


def stored_uploads(team) -> list[Path]:  # type: ignore[no-untyped-def]
    """The files under MEDIA_ROOT that hold the team's uploads."""
    folder = Path(settings.MEDIA_ROOT) / "teams" / str(team.id) / "inputs"
    return sorted(folder.iterdir()) if folder.exists() else []


def assert_nothing_stored(team) -> None:  # type: ignore[no-untyped-def]
    assert not InputAsset.objects.filter(team=team).exists()
    assert stored_uploads(team) == []


@pytest.fixture
def uploads_unthrottled(settings) -> None:  # type: ignore[no-untyped-def]
    """Quota tests upload more than the per-minute rate allows; the rate has its own tests."""
    settings.RATE_LIMIT_UPLOAD = "10000/min"


# -- damaged files ------------------------------------------------------------------------------


def test_pillow_is_not_told_to_accept_truncated_images():
    # Set to True anywhere in the process (some libraries do), a truncated file decodes "fine"
    # with grey where its data ends, and every check below lets it through.
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


DAMAGED_FILES = {
    "truncated JPEG": lambda: (lambda jpeg: jpeg[: len(jpeg) // 2])(encoded(noise((300, 300)), "JPEG")),
    "JPEG without its end marker": lambda: encoded(noise((300, 300)), "JPEG")[:-2],
    "truncated PNG": lambda: (lambda png: png[: len(png) // 2])(encoded(noise((300, 300)), "PNG")),
    "PNG with a corrupt zlib stream": png_with_corrupt_stream,
    "truncated WebP": lambda: (lambda webp: webp[: len(webp) // 2])(encoded(noise((300, 300)), "WEBP")),
}


@pytest.mark.django_db
@pytest.mark.parametrize("make", DAMAGED_FILES.values(), ids=DAMAGED_FILES.keys())
def test_a_damaged_image_is_refused_at_upload_naming_the_file_and_nothing_is_stored(alice, make):
    response = upload(alice, make())
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "VALIDATION_ERROR",
        "message": f"file: {DAMAGED}",
        "details": {"file": [DAMAGED]},
    }
    assert_nothing_stored(alice.team)


# -- the decoded-size cap -----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_small_png_of_6300_by_6300_rgba_is_refused_at_upload_naming_the_memory_it_needs(alice):
    content = big_png_bytes(6300, 6300)
    assert len(content) < 200 * 1024  # about 170 KB of file for 152 MB of pixels
    response = upload(alice, content)
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {
        "file": [
            "The image is 6300 x 6300 pixels (RGBA); decoding it takes 152 MB of memory and at most 128 MB "
            "are accepted. Please upload a smaller picture."
        ]
    }
    assert_nothing_stored(alice.team)


@pytest.mark.django_db
def test_a_progressive_jpeg_is_charged_for_the_coefficients_its_decoder_keeps(alice, settings):
    settings.UPLOAD_MAX_DECODED_MB = 20
    flat = Image.new("RGB", (2000, 1500), (90, 140, 60))
    # 11.4 MB of pixels either way; the progressive one also keeps 6 bytes a pixel of coefficients.
    baseline = upload(alice, encoded(flat, "JPEG", subsampling=0), "baseline.jpg")
    assert baseline.status_code == 201, baseline.content
    progressive = upload(alice, encoded(flat, "JPEG", subsampling=0, progressive=True), "progressive.jpg")
    assert progressive.status_code == 400
    assert progressive.json()["error"]["details"]["file"] == [
        "The image is 2000 x 1500 pixels (RGB); decoding it takes 29 MB of memory and at most 20 MB are "
        "accepted. Please upload a smaller picture."
    ]
    assert InputAsset.objects.filter(team=alice.team).count() == 1


# Every mode Pillow opens a PNG, JPEG or WebP file in, and what decoding 80 x 64 pixels of it
# takes: Pillow's bytes a pixel of that mode (src/libImaging/Storage.c), a JPEG's coefficient
# buffer when its decoder keeps one (80 x 64 pixels are 80 blocks of 8 x 8 a component, 20 for
# a 4:2:0 chroma component; 128 bytes each), 4.5 times the pixels for WebP.
PIXELS = 80 * 64
DECODE_TABLE = {
    "PNG 1-bit": (lambda: encoded(Image.new("1", (80, 64)), "PNG"), "1", PIXELS),
    "PNG 2-bit grey": (lambda: raw_png((80, 64), bit_depth=2, colour_type=0, channels=1), "L", PIXELS),
    "PNG 8-bit grey": (lambda: encoded(picture((80, 64), "L"), "PNG"), "L", PIXELS),
    "PNG grey with a transparent shade": (
        lambda: encoded(picture((80, 64), "L"), "PNG", transparency=0),
        "L",
        PIXELS,
    ),
    "PNG 16-bit grey": (lambda: encoded(Image.new("I;16", (80, 64)), "PNG"), "I;16", 2 * PIXELS),
    "PNG palette": (lambda: encoded(picture((80, 64), "P"), "PNG"), "P", PIXELS),
    "PNG 4-bit palette": (lambda: raw_png((80, 64), bit_depth=4, colour_type=3, channels=1), "P", PIXELS),
    "PNG palette with transparency": (
        lambda: encoded(picture((80, 64), "P"), "PNG", transparency=0),
        "P",
        PIXELS,
    ),
    "PNG grey and alpha": (lambda: encoded(picture((80, 64), "LA"), "PNG"), "LA", 4 * PIXELS),
    "PNG 16-bit grey and alpha": (
        lambda: raw_png((80, 64), bit_depth=16, colour_type=4, channels=2),
        "RGBA",
        4 * PIXELS,
    ),
    "PNG RGB": (lambda: encoded(picture((80, 64)), "PNG"), "RGB", 4 * PIXELS),
    "PNG 16-bit RGB": (lambda: raw_png((80, 64), bit_depth=16, colour_type=2, channels=3), "RGB", 4 * PIXELS),
    "PNG RGBA": (lambda: encoded(picture((80, 64), "RGBA"), "PNG"), "RGBA", 4 * PIXELS),
    "PNG 16-bit RGBA": (lambda: raw_png((80, 64), bit_depth=16, colour_type=6, channels=4), "RGBA", 4 * PIXELS),
    "JPEG grey": (lambda: encoded(picture((80, 64), "L"), "JPEG"), "L", PIXELS),
    "JPEG colour 4:2:0": (lambda: encoded(picture((80, 64)), "JPEG"), "RGB", 4 * PIXELS),
    "JPEG CMYK": (lambda: encoded(picture((80, 64), "CMYK"), "JPEG"), "CMYK", 4 * PIXELS),
    "multi-picture JPEG (MPO)": (multi_picture_jpeg, "RGB", 4 * PIXELS),
    "progressive JPEG grey": (
        lambda: encoded(picture((80, 64), "L"), "JPEG", progressive=True),
        "L",
        PIXELS + 80 * 128,
    ),
    "progressive JPEG colour 4:4:4": (
        lambda: encoded(picture((80, 64)), "JPEG", progressive=True, subsampling=0),
        "RGB",
        4 * PIXELS + 3 * 80 * 128,
    ),
    "progressive JPEG colour 4:2:0": (
        lambda: encoded(picture((80, 64)), "JPEG", progressive=True, subsampling=2),
        "RGB",
        4 * PIXELS + (80 + 20 + 20) * 128,
    ),
    "progressive JPEG CMYK": (
        lambda: encoded(picture((80, 64), "CMYK"), "JPEG", progressive=True),
        "CMYK",
        4 * PIXELS + 4 * 80 * 128,
    ),
    "baseline JPEG whose first scan holds one component": (
        jpeg_with_one_component_first_scan,
        "RGB",
        4 * PIXELS + 3 * 80 * 128,
    ),
    "WebP lossy": (lambda: encoded(picture((80, 64)), "WEBP"), "RGB", 18 * PIXELS),
    "WebP with alpha": (lambda: encoded(picture((80, 64), "RGBA"), "WEBP"), "RGBA", 18 * PIXELS),
    "WebP lossless": (lambda: encoded(picture((80, 64)), "WEBP", lossless=True), "RGB", 18 * PIXELS),
}


@pytest.mark.parametrize(("make", "mode", "needed"), DECODE_TABLE.values(), ids=DECODE_TABLE.keys())
def test_the_memory_a_decode_takes_counts_the_bands_and_bit_depth_of_every_mode(make, mode, needed):
    content = make()
    with Image.open(io.BytesIO(content)) as image:
        assert (image.size, image.mode) == ((80, 64), mode)
        assert image_decode_bytes(image, content) == needed


def test_a_jpeg_decoded_at_a_reduced_scale_still_keeps_its_full_size_coefficients():
    content = encoded(picture((800, 640)), "JPEG", progressive=True, subsampling=0)
    with Image.open(io.BytesIO(content)) as image:
        # draft to 100 x 80: decoded at 1/8 scale, 100 x 80 pixels of 4 bytes
        assert image_decode_bytes(image, content, draft_to=(100, 80)) == 100 * 80 * 4 + 3 * 100 * 80 * 128


def test_a_worker_counts_a_progressive_jpegs_coefficients_before_it_decodes_one(settings):
    settings.JOB_MEMORY_CEILING_MB = 64
    photo = picture((3000, 2000))
    # At 1/2 scale its pixels take 6 MB either way; the progressive one keeps 34 MB of coefficients.
    prepared = input_image_prepare(content=encoded(photo, "JPEG", subsampling=0), subject="The source", max_side=1024)
    assert Image.open(io.BytesIO(prepared)).size == (1024, 683)
    with pytest.raises(InputsTooLarge) as caught:
        input_image_prepare(
            content=encoded(photo, "JPEG", subsampling=0, progressive=True), subject="The source", max_side=1024
        )
    assert caught.value.message == (
        "The source is 3000 x 2000 pixels and would need about 73 MB of memory to prepare; a job may use at "
        "most 64 MB. Please use a picture of at most about 4 megapixels."
    )


# The child's peak is read from /proc (VmHWM reset to the current RSS first), in a fresh process
# per picture: memory a previous decode freed but kept would hide this one's.
_MEASURE_DECODE = """
import io, json, sys
from PIL import Image
from generation.services.decoding import image_decode_bytes

def status(field):
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(field + ":"))

content = open(sys.argv[1], "rb").read()
image = Image.open(io.BytesIO(content))
estimate = image_decode_bytes(image, content)
with open("/proc/self/clear_refs", "w") as reset:
    reset.write("5")
before = status("VmRSS")
image.load()
print(json.dumps({"estimate": estimate, "peak": status("VmHWM") - before}))
"""

MEASURED = {
    "PNG RGBA": lambda: encoded(picture((3000, 2000), "RGBA"), "PNG", compress_level=1),
    "PNG grey": lambda: encoded(picture((3000, 2000), "L"), "PNG", compress_level=1),
    "PNG 16-bit grey": lambda: encoded(picture((3000, 2000), "L").convert("I;16"), "PNG", compress_level=1),
    "JPEG baseline": lambda: encoded(picture((3000, 2000)), "JPEG"),
    "JPEG progressive 4:4:4": lambda: encoded(picture((3000, 2000)), "JPEG", progressive=True, subsampling=0),
    "JPEG progressive CMYK": lambda: encoded(picture((3000, 2000), "CMYK"), "JPEG", progressive=True),
    "WebP lossy": lambda: encoded(picture((3000, 2000)), "WEBP"),
    "WebP lossless": lambda: encoded(picture((3000, 2000), "RGBA"), "WEBP", lossless=True, method=0, quality=0),
}


@pytest.mark.parametrize("make", MEASURED.values(), ids=MEASURED.keys())
def test_the_estimated_decode_memory_is_what_decoding_really_takes(make, tmp_path):
    path = tmp_path / "picture"
    path.write_bytes(make())
    completed = subprocess.run(
        [sys.executable, "-c", _MEASURE_DECODE, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    measured = json.loads(completed.stdout.strip().splitlines()[-1])
    estimate, peak = measured["estimate"], measured["peak"]
    print(f"[figure] decoding: estimated {estimate / MB:.1f} MB, measured {peak / MB:.1f} MB")
    # The decoders' own small buffers (a zlib window, libjpeg's rows, libwebp's tables) are
    # left out of the estimate: a few MB whatever the picture's size.
    assert peak <= estimate + 8 * MB
    assert estimate <= peak * 1.25 + 8 * MB  # and it does not refuse pictures for what they do not take


def test_the_row_estimate_and_the_upload_cap_agree_for_a_png():
    assert decode_bytes(size=(LARGEST_ACCEPTED_SIDE,) * 2, mode="RGBA", image_format="PNG") <= 128 * MB
    assert decode_bytes(size=(LARGEST_ACCEPTED_SIDE + 1,) * 2, mode="RGBA", image_format="PNG") > 128 * MB


# -- quotas -------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.usefixtures("uploads_unthrottled")
def test_the_31st_upload_over_a_quota_of_30_is_refused_and_stores_nothing(alice, settings):
    settings.QUOTA_UPLOADS = 30
    for number in range(30):
        assert upload(alice, png_bytes(40, 30, colour=(number, 80, 40))).status_code == 201
    response = upload(alice, png_bytes(40, 30, colour=(250, 80, 40)))
    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "QUOTA_EXCEEDED",
        "message": "Your team's quota of 30 uploaded images is reached.",
        "details": {"quota": "uploads", "limit": 30, "used": 30},
    }
    assert InputAsset.objects.filter(team=alice.team).count() == 30
    assert len(stored_uploads(alice.team)) == 30


@pytest.mark.django_db
def test_an_upload_over_the_teams_megabytes_is_refused_and_stores_nothing(alice, settings):
    settings.QUOTA_UPLOAD_MB = 1
    first = encoded(noise((450, 450), seed=1), "PNG")  # about 0.6 MB each: incompressible
    assert upload(alice, first).status_code == 201
    response = upload(alice, encoded(noise((450, 450), seed=2), "PNG"))
    assert response.status_code == 409
    error = response.json()["error"]
    assert (error["code"], error["details"]) == ("QUOTA_EXCEEDED", {"quota": "upload_mb", "limit": 1, "used": 1})
    assert error["message"] == (
        "Your team's quota of 1 MB of uploaded images is reached: 1 MB are used and this image takes 0.6 MB."
    )
    assert [asset.bytes for asset in InputAsset.objects.filter(team=alice.team)] == [len(first)]
    assert len(stored_uploads(alice.team)) == 1


@pytest.mark.django_db
def test_the_teams_own_upload_quota_wins_over_the_setting(alice, charlie, settings):
    settings.QUOTA_UPLOADS = 1
    alice.team.quota_uploads = 3  # the admin raised it for her team
    alice.team.save(update_fields=["quota_uploads"])
    charlie.team.quota_uploads = 0  # and closed his
    charlie.team.save(update_fields=["quota_uploads"])
    statuses = [upload(alice, png_bytes(40, 30, colour=(number, 0, 0))).status_code for number in range(4)]
    assert statuses == [201, 201, 201, 409]
    refused = upload(charlie, png_bytes())
    assert refused.status_code == 409
    assert refused.json()["error"]["details"] == {"quota": "uploads", "limit": 0, "used": 0}
    assert_nothing_stored(charlie.team)


@pytest.mark.django_db
def test_the_same_file_uploaded_twice_is_stored_once_and_answers_the_same_asset(alice, bob, settings):
    settings.QUOTA_UPLOADS = 2
    content = png_bytes(120, 80)
    first = upload(alice, content, "one.png")
    again = upload(bob, content, "another-name.png")  # a teammate, under another name
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert InputAsset.objects.filter(team=alice.team).count() == 1
    assert len(stored_uploads(alice.team)) == 1
    # The copy cost no quota: a second, different picture still fits, a third does not.
    assert upload(alice, png_bytes(60, 40)).status_code == 201
    assert upload(alice, content).status_code == 200  # even at the quota, a known file is answered
    assert upload(alice, png_bytes(30, 20)).status_code == 409


@pytest.mark.django_db
def test_another_team_uploading_the_same_file_gets_its_own_asset(alice, charlie):
    content = png_bytes(120, 80)
    mine, theirs = upload(alice, content), upload(charlie, content)
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]
    assert charlie.client.get(f"{ASSETS}/{mine.json()['id']}/content").status_code == 404


def _at_once(calls: list[Callable[[], object]]) -> list[object]:
    """Run `calls` in threads released together; each result, or the exception it raised."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = calls[index]()
        except Exception as error:  # noqa: BLE001 - the test looks at what each one got
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.mark.django_db(transaction=True)
def test_uploads_at_the_same_moment_cannot_both_take_the_last_place(alice, settings):
    settings.QUOTA_UPLOADS = 1

    def send(colour: int) -> Callable[[], object]:
        return lambda: asset_upload(
            team=alice.team, user=alice.user, upload=SimpleUploadedFile("p.png", png_bytes(64, 48, (colour, 0, 0)))
        )

    results = _at_once([send(colour) for colour in range(4)])
    assert sum(1 for result in results if isinstance(result, QuotaExceeded)) == 3
    assert InputAsset.objects.filter(team=alice.team).count() == 1
    assert len(stored_uploads(alice.team)) == 1


@pytest.mark.django_db(transaction=True)
def test_the_same_file_sent_several_times_at_once_is_stored_once(alice):
    content = png_bytes(64, 48)
    results = _at_once(
        [
            lambda: asset_upload(team=alice.team, user=alice.user, upload=SimpleUploadedFile("p.png", content))
            for _ in range(4)
        ]
    )
    assert len({result.asset.id for result in results}) == 1  # type: ignore[attr-defined]
    assert sum(result.created for result in results) == 1  # type: ignore[attr-defined]
    assert InputAsset.objects.filter(team=alice.team).count() == 1
    assert len(stored_uploads(alice.team)) == 1


@pytest.mark.django_db
def test_the_studio_shows_the_upload_quota_next_to_the_image_and_stores_nothing(alice, settings):
    settings.QUOTA_UPLOADS = 2
    for number in range(2):
        assert upload(alice, png_bytes(40, 30, colour=(number, 9, 9))).status_code == 201
    client = Client()
    client.force_login(alice.user)
    tab = tab_create(user=alice.user, team=alice.team)
    source = SimpleUploadedFile("source.png", png_bytes(50, 50))
    page = client.post(
        f"/studio/{tab.id}/generate/", {"prompt": "p", "kind": "edit", "source_image": source}, follow=True
    )
    assert page.redirect_chain == [(f"/studio/{tab.id}/", 302)]
    assert "Your team's quota of 2 uploaded images is reached." in html.unescape(page.content.decode())
    assert InputAsset.objects.filter(team=alice.team).count() == 2
    assert not GenerationJob.objects.exists()


# -- the web process's decode budget -------------------------------------------------------------


@pytest.fixture
def web_budget_full(monkeypatch) -> Iterator[Callable[[], None]]:  # type: ignore[no-untyped-def]
    """The web process's decode budget held whole, as by other uploads decoding in other
    threads; the returned call releases it. Uploads wait a tenth of a second for room here."""
    monkeypatch.setattr(assets, "DECODE_WAIT_SECONDS", 0.1)
    budget = web_decode_budget()
    held: list[int] = []
    holder = threading.Thread(target=lambda: held.append(budget.acquire(budget.capacity) or 0))
    holder.start()
    holder.join()
    assert held == [budget.capacity]

    def release() -> None:
        if held:
            budget.release(held.pop())

    yield release
    release()


@pytest.mark.django_db
def test_with_the_web_decode_budget_full_an_upload_is_503_server_busy_and_stores_nothing(alice, web_budget_full):
    refused = upload(alice, png_bytes(40, 30))

    assert refused.status_code == 503
    error = refused.json()["error"]
    assert error["code"] == "SERVER_BUSY"
    assert int(refused["Retry-After"]) >= 1
    assert error["details"] == {"wait": int(refused["Retry-After"])}
    assert_nothing_stored(alice.team)

    web_budget_full()  # the other decodes finish
    assert upload(alice, png_bytes(40, 30)).status_code == 201
    assert web_decode_budget().in_use == 0  # the decode gave its share back


@pytest.mark.django_db
def test_with_the_web_decode_budget_full_the_studio_says_to_send_the_image_again(alice, web_budget_full):
    client = Client()
    client.force_login(alice.user)
    tab = tab_create(user=alice.user, team=alice.team)
    source = SimpleUploadedFile("source.png", png_bytes(50, 50))

    page = client.post(
        f"/studio/{tab.id}/generate/", {"prompt": "p", "kind": "edit", "source_image": source}, follow=True
    )

    assert page.redirect_chain == [(f"/studio/{tab.id}/", 302)]  # a reload sends nothing again
    assert "Press Generate again in" in page.content.decode()
    assert "The server is busy checking other uploads" in page.content.decode()
    assert_nothing_stored(alice.team)
    assert not GenerationJob.objects.exists()


def test_the_upload_operation_documents_server_busy():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    responses = schema["paths"]["/api/v1/assets"]["post"]["responses"]
    assert "SERVER_BUSY" in responses["503"]["description"]


# -- a real worker and its memory ----------------------------------------------------------------


def _status_bytes(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as lines:
        return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(field + ":"))


def _reset_peak(pid: int) -> None:
    """VmHWM back to the current RSS, so the next reading is this job's peak."""
    with open(f"/proc/{pid}/clear_refs", "w") as reset:
        reset.write("5")


@pytest.fixture(scope="module")
def worker(django_db_setup, django_db_blocker, log_dir: Path) -> Iterator[ManagedProcess]:  # noqa: ARG001
    """One job worker running one job at a time, so its peak is one job's."""
    with django_db_blocker.unblock():
        env = child_environment(LOCAL_PROVIDER_LATENCY_MS="0")
    process = start_worker(env, log_dir, concurrency=1, name="memory-worker")
    yield process
    process.stop()


def _edit(person, source_id: str):  # type: ignore[no-untyped-def]
    body = {"prompt": "recolour it", "kind": "edit", "count": 1, "inputs": {"source_asset_id": source_id}}
    return person.client.post("/api/v1/jobs", body, format="json")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_an_edit_of_the_largest_accepted_source_keeps_the_worker_under_the_job_memory_ceiling(worker, alice):
    # A first edit loads the code and libraries every job uses: the baseline is a worker at work.
    warm_up = upload(alice, encoded(picture((1600, 1200)), "PNG"))
    assert wait_for_finish(_edit(alice, warm_up.json()["id"]).json()["id"], timeout=30).status == "succeeded"
    largest = upload(alice, big_png_bytes(LARGEST_ACCEPTED_SIDE, LARGEST_ACCEPTED_SIDE))
    assert largest.status_code == 201, largest.content  # the most the upload checks let through
    baseline = _status_bytes(worker.pid, "VmRSS")
    _reset_peak(worker.pid)
    job = wait_for_finish(_edit(alice, largest.json()["id"]).json()["id"], timeout=45)
    peak = _status_bytes(worker.pid, "VmHWM") - baseline
    ceiling = settings.JOB_MEMORY_CEILING_MB * MB
    print(
        f"[figure] worker editing a {LARGEST_ACCEPTED_SIDE} x {LARGEST_ACCEPTED_SIDE} RGBA source: peak "
        f"{peak / MB:.0f} MB above its {baseline / MB:.0f} MB baseline; ceiling {ceiling // MB} MB"
    )
    assert (job.status, job.completed_outputs) == (GenerationJob.Status.SUCCEEDED, 1)
    assert peak < ceiling


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_6300_square_source_stored_before_the_cap_is_refused_at_submit_and_never_decoded_by_a_worker(worker, alice):
    # Stored before the decoded-size cap existed: the file and the row, as the upload then left them.
    content = big_png_bytes(6300, 6300)
    name = default_storage.save(f"teams/{alice.team.id}/inputs/older-upload.png", ContentFile(content))
    older = InputAsset.objects.create(
        team=alice.team, file=name, mime="image/png", width=6300, height=6300, bytes=len(content), sha256="1" * 64
    )
    refused = _edit(alice, str(older.id))
    assert refused.status_code == 400
    assert list(refused.json()["error"]["details"]) == ["inputs.source_asset_id"]
    assert not GenerationJob.objects.exists()

    # A job that reached the queue anyway (submitted before the ceiling existed) fails at once.
    job = GenerationJob.objects.create(
        team=alice.team, kind=GenerationJob.Kind.EDIT, provider="local", model="atelier-sketch-1",
        prompt="recolour it", optimized_prompt="recolour it", source_asset=older, total_outputs=2,
        credits_per_output=1,
    )  # fmt: skip
    credits_hold(team_id=alice.team.id, job_id=job.id, amount=2)
    baseline = _status_bytes(worker.pid, "VmRSS")
    _reset_peak(worker.pid)
    job_dispatch_on_commit(job.id)
    failed = wait_for_finish(job.id, timeout=30)
    peak = _status_bytes(worker.pid, "VmHWM") - baseline
    assert (failed.status, failed.error_code, failed.attempts) == (GenerationJob.Status.FAILED, "INPUT_TOO_LARGE", 1)
    assert failed.error_message.startswith("The source image is 6300 x 6300 pixels")
    assert job_credits(job.id) == JobCredits(held=2, captured=0, released=2)
    assert peak < 64 * MB  # decoding it would take 152 MB
