"""A job's zip: entries named after its prompt and numbered from 1, dated when each file was made."""

from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import UTC, datetime

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from generation.models import GeneratedOutput, GenerationJob
from generation.services.files import archive_entry_name, prompt_slug
from tests.factories import GenerationJobFactory, png_bytes

pytestmark = pytest.mark.django_db


def job_with_images(team, prompt: str, made_at: list[datetime], contents: list[bytes] | None = None) -> GenerationJob:  # type: ignore[no-untyped-def]
    """A finished job whose images are real files (small PNGs, or `contents`), each recorded at its own time."""
    job = GenerationJobFactory(
        team=team, prompt=prompt, total_outputs=len(made_at), status="succeeded", finished_at=timezone.now()
    )
    for index, moment in enumerate(made_at):
        content = contents[index] if contents else png_bytes(colour=(index * 40, 80, 40))
        name = default_storage.save(f"teams/{team.id}/jobs/{job.id}/image-{index + 1}-t.png", ContentFile(content))
        output = GeneratedOutput.objects.create(
            job=job, index=index, file=name, mime="image/png", width=64, height=48, bytes=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
        )  # fmt: skip
        GeneratedOutput.objects.filter(id=output.id).update(created_at=moment)  # auto_now_add ignores a value
    GenerationJob.objects.filter(id=job.id).update(completed_outputs=len(made_at))
    return job


def test_the_prompt_becomes_a_short_slug_cut_at_a_word():
    assert prompt_slug("Golden roses, at dusk!") == "golden-roses-at-dusk"
    long_prompt = "ocean waves at night under a violet sky with a lighthouse far away"
    assert prompt_slug(long_prompt) == "ocean-waves-at-night-under-a-violet-sky"  # 39 characters, whole words
    assert prompt_slug("x" * 90) == "x" * 40  # one long word is cut where it reaches the limit
    assert prompt_slug("!!! ???") == "atelier"  # nothing left to name it by
    assert archive_entry_name(prompt="red lanterns", index=0, mime="video/mp4") == "red-lanterns-1.mp4"
    assert archive_entry_name(prompt="red lanterns", index=2, mime="image/png") == "red-lanterns-3.png"


def test_the_download_names_each_entry_after_the_job_and_dates_it_when_it_was_made(alice, settings):
    settings.TIME_ZONE = "UTC"  # the zip format has no zone: dates are written in the server's
    made_at = [datetime(2026, 3, 1, 9, 15, 30, tzinfo=UTC), datetime(2026, 3, 1, 9, 16, 2, tzinfo=UTC)]
    job = job_with_images(alice.team, "Golden roses, at dusk!", made_at)

    download = alice.client.get(f"/api/v1/jobs/{job.id}/download")
    assert download.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    assert archive.namelist() == ["golden-roses-at-dusk-1.png", "golden-roses-at-dusk-2.png"]
    assert [entry.date_time for entry in archive.infolist()] == [(2026, 3, 1, 9, 15, 30), (2026, 3, 1, 9, 16, 2)]
    stored = [default_storage.open(output.file.name).read() for output in job.outputs.order_by("index")]
    assert [archive.read(name) for name in archive.namelist()] == stored


def test_a_date_in_the_servers_zone_and_never_before_the_zip_epoch(alice, settings):
    settings.TIME_ZONE = "Europe/Paris"
    job = job_with_images(alice.team, "winter", [datetime(2026, 1, 10, 23, 30, tzinfo=UTC)])
    with timezone.override("Europe/Paris"):
        download = alice.client.get(f"/api/v1/jobs/{job.id}/download")
    (entry,) = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))).infolist()
    assert (entry.filename, entry.date_time) == ("winter-1.png", (2026, 1, 11, 0, 30, 0))
