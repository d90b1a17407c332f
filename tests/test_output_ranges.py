"""A clip is served in byte ranges, so the browser's player can seek without the whole file."""

import hashlib

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from generation.models import GeneratedOutput
from tests.factories import GenerationJobFactory

CLIP = bytes(range(256)) * 40  # 10,240 bytes standing in for an MP4


@pytest.fixture
def clip_url(alice) -> str:
    job = GenerationJobFactory(team=alice.team, kind="video", total_outputs=1)
    name = default_storage.save(f"teams/{alice.team.id}/jobs/{job.id}/clip-1-test.mp4", ContentFile(CLIP))
    GeneratedOutput.objects.create(
        job=job, index=0, file=name, mime="video/mp4", width=640, height=360, bytes=len(CLIP),
        sha256=hashlib.sha256(CLIP).hexdigest(),
    )  # fmt: skip
    return f"/api/v1/jobs/{job.id}/outputs/1"


def _body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_the_whole_clip_is_served_and_says_it_takes_ranges(alice, clip_url):
    response = alice.client.get(clip_url)
    assert response.status_code == 200
    assert response["Accept-Ranges"] == "bytes"
    assert response["Content-Type"] == "video/mp4"
    assert _body(response) == CLIP


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=100-199", 100, 199),
        ("bytes=10000-", 10000, 10239),
        ("bytes=-40", 10200, 10239),
        ("bytes=0-99999", 0, 10239),
    ],
)
def test_a_range_is_answered_with_206_and_only_those_bytes(alice, clip_url, header, start, end):
    response = alice.client.get(clip_url, HTTP_RANGE=header)
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {start}-{end}/{len(CLIP)}"
    assert _body(response) == CLIP[start : end + 1]


def test_a_range_past_the_end_is_416_and_several_ranges_get_the_whole_clip(alice, clip_url):
    response = alice.client.get(clip_url, HTTP_RANGE="bytes=20000-")
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(CLIP)}"
    whole = alice.client.get(clip_url, HTTP_RANGE="bytes=0-1,5-6")
    assert whole.status_code == 200
    assert _body(whole) == CLIP


def test_another_teams_clip_is_a_404_with_or_without_a_range(db, clip_url, charlie):
    assert charlie.client.get(clip_url).status_code == 404
    assert charlie.client.get(clip_url, HTTP_RANGE="bytes=0-10").status_code == 404
