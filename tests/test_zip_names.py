"""A job's zip: entries named after its prompt and numbered from 1, dated when each file was made;
the same zip, under the same name, from the API (the studio's button) and the admin."""

from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone

from accounts.models import User
from generation.models import GeneratedOutput, GenerationJob
from generation.services.archives import job_archive_open
from generation.services.files import (
    archive_is_current,
    archive_name_for,
    archive_store,
    job_folder,
    output_download_name,
    prompt_slug,
)
from generation.services.retry import job_retry
from tests.factories import GenerationJobFactory, png_bytes
from tests.helpers import signed_in

pytestmark = pytest.mark.django_db


def job_with_images(team, prompt: str, made_at: list[datetime], contents: list[bytes] | None = None) -> GenerationJob:  # type: ignore[no-untyped-def]
    """A finished job whose images are real files (small PNGs, or `contents`), each recorded at its own time."""
    job = GenerationJobFactory(
        team=team, prompt=prompt, total_outputs=len(made_at), status="succeeded", finished_at=timezone.now()
    )
    for index, moment in enumerate(made_at):
        image_made_at(job, index, moment, contents[index] if contents else None)
    GenerationJob.objects.filter(id=job.id).update(completed_outputs=len(made_at))
    return job


def image_made_at(job: GenerationJob, index: int, moment: datetime, content: bytes | None = None) -> GeneratedOutput:
    """Output `index` of `job`: a real small PNG (or `content`), recorded as made at `moment`."""
    content = content or png_bytes(colour=(index * 40, 80, 40))
    name = default_storage.save(f"teams/{job.team_id}/jobs/{job.id}/image-{index + 1}-t.png", ContentFile(content))
    output = GeneratedOutput.objects.create(
        job=job, index=index, file=name, mime="image/png", width=64, height=48, bytes=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
    )  # fmt: skip
    GeneratedOutput.objects.filter(id=output.id).update(created_at=moment)  # auto_now_add ignores a value
    output.refresh_from_db()
    return output


def test_the_prompt_becomes_a_short_slug_cut_at_a_word():
    assert prompt_slug("Golden roses, at dusk!") == "golden-roses-at-dusk"
    long_prompt = "ocean waves at night under a violet sky with a lighthouse far away"
    assert prompt_slug(long_prompt) == "ocean-waves-at-night-under-a-violet-sky"  # 39 characters, whole words
    assert prompt_slug("x" * 90) == "x" * 40  # one long word is cut where it reaches the limit
    assert prompt_slug("!!! ???") == "atelier"  # nothing left to name it by
    assert output_download_name(prompt="red lanterns", index=0, mime="video/mp4") == "red-lanterns-1.mp4"
    assert output_download_name(prompt="red lanterns", index=2, mime="image/png") == "red-lanterns-3.png"


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


def zip_chunks(response) -> list[bytes]:  # type: ignore[no-untyped-def]
    """The zip a download answered with, as sent."""
    assert (response.status_code, response["Content-Type"]) == (200, "application/zip")
    return list(response.streaming_content)


def unzipped(response) -> zipfile.ZipFile:  # type: ignore[no-untyped-def]
    return zipfile.ZipFile(io.BytesIO(b"".join(zip_chunks(response))))


@pytest.fixture
def operator() -> Client:
    User.objects.create_superuser(email="ops@example.com", password="operator-password")
    client = Client()
    client.login(email="ops@example.com", password="operator-password")
    return client


def downloads(alice, operator, job: GenerationJob) -> list:  # type: ignore[no-untyped-def]
    """The job's zip as the team downloads it (the studio's button) and as an operator does."""
    return [
        alice.client.get(f"/api/v1/jobs/{job.id}/download"),
        operator.get(f"/admin/generation/generationjob/{job.id}/download/"),
    ]


def test_the_team_and_the_operator_download_the_stored_zip_under_the_prompts_name(alice, operator):
    job = job_with_images(alice.team, "Golden roses, at dusk!", [timezone.now()] * 3)
    stored = archive_store(job=job, outputs=list(job.outputs.all()), name=archive_name_for(job))
    GenerationJob.objects.filter(id=job.id).update(archive=stored)  # what the pipeline does when a job succeeds

    for download in downloads(alice, operator, job):
        assert (download.status_code, download["Content-Type"]) == (200, "application/zip")
        assert download["Content-Disposition"] == 'attachment; filename="golden-roses-at-dusk.zip"'
        assert "no-store" in download["Cache-Control"]
        body = b"".join(download.streaming_content)
        assert body == default_storage.open(stored).read()  # the stored zip, served as stored
        assert zipfile.ZipFile(io.BytesIO(body)).namelist() == [f"golden-roses-at-dusk-{n}.png" for n in (1, 2, 3)]


def zips_in_folder(job: GenerationJob) -> list[str]:
    _, files = default_storage.listdir(job_folder(job))
    return sorted(f"{job_folder(job)}/{name}" for name in files if name.endswith(".zip"))


def test_a_zip_stored_with_the_old_entry_names_is_built_afresh_and_stored_in_its_place(alice, operator):
    job = job_with_images(alice.team, "harbour at dawn", [timezone.now()] * 2)
    old_name = f"teams/{alice.team.id}/jobs/{job.id}/images-0a1b2c3d.zip"  # before the entries were named
    old = io.BytesIO()
    with zipfile.ZipFile(old, "w") as archive:
        for output in job.outputs.all():
            archive.writestr(f"image-{output.index + 1}.png", default_storage.open(output.file.name).read())
    default_storage.save(old_name, ContentFile(old.getvalue()))
    GenerationJob.objects.filter(id=job.id).update(archive=old_name)

    for download in downloads(alice, operator, job):
        assert download["Content-Disposition"] == 'attachment; filename="harbour-at-dawn.zip"'
        archive = unzipped(download)
        assert archive.namelist() == ["harbour-at-dawn-1.png", "harbour-at-dawn-2.png"]
        stored = [default_storage.open(output.file.name).read() for output in job.outputs.order_by("index")]
        assert [archive.read(name) for name in archive.namelist()] == stored
    job.refresh_from_db()
    assert archive_is_current(job.archive.name)  # the first download stored today's zip, the second served it
    assert zips_in_folder(job) == [job.archive.name]  # and the old one, which nothing serves, is gone


def test_a_finished_job_without_a_zip_stores_the_zip_its_first_download_builds(alice, operator):
    job = job_with_images(alice.team, "Lanterns on the river", [timezone.now()] * 2)
    assert not job.archive

    first = alice.client.get(f"/api/v1/jobs/{job.id}/download")
    body = b"".join(zip_chunks(first))
    job.refresh_from_db()
    assert archive_is_current(job.archive.name)  # recorded as the job's zip
    assert default_storage.open(job.archive.name).read() == body  # what the download sent is what was stored

    for again in downloads(alice, operator, job):  # the team again, and the operator: served as stored
        assert b"".join(zip_chunks(again)) == body
    assert GenerationJob.objects.get(id=job.id).archive.name == job.archive.name  # not built a second time
    assert zips_in_folder(job) == [job.archive.name]


def test_a_one_image_job_stores_its_zip_like_any_other(alice):
    job = job_with_images(alice.team, "A single lighthouse", [timezone.now()])

    download = alice.client.get(f"/api/v1/jobs/{job.id}/download")

    assert unzipped(download).namelist() == ["a-single-lighthouse-1.png"]
    job.refresh_from_db()
    assert zips_in_folder(job) == [job.archive.name]


def test_a_running_jobs_zip_is_built_for_the_download_and_not_stored(alice):
    job = job_with_images(alice.team, "Storm coming", [timezone.now()])
    GenerationJob.objects.filter(id=job.id).update(
        status="running", total_outputs=3, finished_at=None, lease_owner="worker-token",
        lease_expires_at=timezone.now() + timedelta(hours=1), started_at=timezone.now(),
    )  # fmt: skip

    download = alice.client.get(f"/api/v1/jobs/{job.id}/download")

    assert unzipped(download).namelist() == ["storm-coming-1.png"]  # the images it has so far
    assert GenerationJob.objects.get(id=job.id).archive.name == ""  # more may come: the pipeline stores the zip
    assert zips_in_folder(job) == []


def test_two_downloads_at_once_keep_one_zip_and_the_later_one_serves_the_first(alice):
    job = job_with_images(alice.team, "Twin peaks", [timezone.now()] * 2)
    read_before = GenerationJob.objects.get(id=job.id)  # a download that read the job before the other stored

    alice.client.get(f"/api/v1/jobs/{job.id}/download")
    winner = GenerationJob.objects.get(id=job.id).archive.name
    late = job_archive_open(job=read_before)

    assert (late.stored_name, late.built) == (winner, None)  # the zip recorded first is served
    assert GenerationJob.objects.get(id=job.id).archive.name == winner
    assert zips_in_folder(job) == [winner]  # the later download deleted its own


def test_when_the_zip_cannot_be_stored_the_download_still_gets_it(alice, caplog):
    job = job_with_images(alice.team, "Gulls over the pier", [timezone.now()] * 2)
    images = [default_storage.open(output.file.name).read() for output in job.outputs.order_by("index")]
    # The images live elsewhere (a retry's carried-over images live in the first job's folder),
    # and the job's own folder cannot take a file: a plain file holds its place (root ignores
    # permissions), so the zip's write fails for real.
    for output, content in zip(job.outputs.order_by("index"), images, strict=True):
        moved = default_storage.save(
            f"teams/{alice.team.id}/jobs/elsewhere/image-{output.index + 1}.png", ContentFile(content)
        )
        default_storage.delete(output.file.name)
        GeneratedOutput.objects.filter(id=output.id).update(file=moved)
    folder = Path(default_storage.path(job_folder(job)))
    folder.rmdir()
    folder.write_text("not a folder")
    try:
        with caplog.at_level("WARNING", logger="generation.services.archives"):
            download = alice.client.get(f"/api/v1/jobs/{job.id}/download")

        archive = unzipped(download)
        assert [archive.read(name) for name in archive.namelist()] == images  # built here and sent
        assert GenerationJob.objects.get(id=job.id).archive.name == ""  # nothing recorded
        assert "could not be stored" in caplog.text
    finally:
        folder.unlink()


def test_images_a_retry_carried_over_keep_the_date_they_were_made_in_the_zip(alice, operator, settings):
    settings.TIME_ZONE = "UTC"
    first, second, third = (datetime(2026, 3, 1, 9, minute, 0, tzinfo=UTC) for minute in (10, 20, 45))
    failed = job_with_images(alice.team, "storm over the harbour", [first, second])
    GenerationJob.objects.filter(id=failed.id).update(total_outputs=3, status="failed")
    retry, created = job_retry(job=failed, user=alice.user)
    assert created
    assert [output.carried_from_id for output in retry.outputs.all()] == list(
        failed.outputs.values_list("id", flat=True)
    )
    image_made_at(retry, 2, third)
    GenerationJob.objects.filter(id=retry.id).update(
        status="succeeded", completed_outputs=3, finished_at=timezone.now()
    )
    dates = [(2026, 3, 1, 9, 10, 0), (2026, 3, 1, 9, 20, 0), (2026, 3, 1, 9, 45, 0)]

    for download in downloads(alice, operator, retry):  # built at the download
        assert [entry.date_time for entry in unzipped(download).infolist()] == dates
    # The zip the pipeline stores when the retry succeeds, from the retry's own rows.
    stored = archive_store(job=retry, outputs=list(retry.outputs.order_by("index")), name=archive_name_for(retry))
    archive = zipfile.ZipFile(default_storage.open(stored))
    assert archive.namelist() == [f"storm-over-the-harbour-{n}.png" for n in (1, 2, 3)]
    assert [entry.date_time for entry in archive.infolist()] == dates


def test_on_s3_the_signed_zip_url_names_the_file_after_the_prompt(alice, operator, settings, monkeypatch):
    job = job_with_images(alice.team, "Golden roses, at dusk!", [timezone.now()] * 2)
    stored = archive_store(job=job, outputs=list(job.outputs.all()), name=archive_name_for(job))
    GenerationJob.objects.filter(id=job.id).update(archive=stored)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATEST")  # signing is local: nothing is sent
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    options = {"bucket_name": "atelier-media", "region_name": "eu-west-3", "querystring_auth": True}
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options},
    }

    for download in downloads(alice, operator, job):
        assert download.status_code == 302
        signed = unquote(download["Location"])
        assert stored in signed  # the stored zip itself, no bytes through the web process
        assert 'response-content-disposition=attachment; filename="golden-roses-at-dusk.zip"' in signed
        assert "response-cache-control=private, no-store" in signed


def test_a_single_image_downloads_under_the_name_it_has_in_the_zip(alice):
    job = job_with_images(alice.team, "Golden roses, at dusk!", [timezone.now(), timezone.now()])

    answer = signed_in(alice).get(f"/api/v1/jobs/{job.id}/outputs/2")

    assert answer.status_code == 200
    assert answer["Content-Disposition"] == 'inline; filename="golden-roses-at-dusk-2.png"'
