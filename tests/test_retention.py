"""Retention: old zips, orphan files, unused uploads, stale previews, old events and finished
webhook deliveries go; whatever a job, output, look, upload, pending file or studio draft still
names stays. Real files in a media folder of each test's own, real PostgreSQL, no storage mocks."""

from __future__ import annotations

import io
import os
import threading
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from accounts.models import User
from credits.models import CreditAccount
from credits.services import credits_account_lock
from generation.models import (
    GeneratedOutput,
    GenerationJob,
    InputAsset,
    JobEvent,
    JobReference,
    Look,
    RetentionSweep,
    StudioTab,
)
from generation.services import retention
from generation.services.files import archive_is_current, archive_name_for, archive_store, poster_name_for
from generation.services.retention import DIED, retention_sweep
from generation.services.submit import JobSpec, job_submit
from tests.factories import GenerationJobFactory, InputAssetFactory, png_bytes
from tests.processes import child_environment, start_beat, start_webhooks, wait_until
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.services import delivery_resend

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


@pytest.fixture(autouse=True)
def media(settings, tmp_path: Path) -> Path:
    """A media folder of the test's own: what a sweep finds there is what the test put there."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def stored(name: str, *, age: timedelta, content: bytes | None = None) -> str:
    """A real file stored under exactly `name`, last written `age` ago."""
    saved = default_storage.save(name, ContentFile(content if content is not None else png_bytes()))
    assert saved == name
    aged(name, age)
    return name


def aged(name: str, age: timedelta) -> None:
    moment = (timezone.now() - age).timestamp()
    os.utime(default_storage.path(name), (moment, moment))


def there(name: str) -> bool:
    return default_storage.exists(name)


def size(name: str) -> int:
    return default_storage.size(name)


def finished_job_with_zip(team, *, finished: datetime) -> GenerationJob:  # type: ignore[no-untyped-def]
    """A succeeded two-image job, its images saved to the collection and its zip stored."""
    job = GenerationJobFactory(
        team=team, prompt="golden roses", total_outputs=2, completed_outputs=2, status="succeeded",
        created_at=finished - HOUR, started_at=finished - HOUR, finished_at=finished,
    )  # fmt: skip
    for index in range(2):
        content = png_bytes(colour=(40 * index, 90, 160))
        name = stored(f"teams/{team.id}/jobs/{job.id}/image-{index + 1}-0a0b.png", age=timezone.now() - finished)
        output = GeneratedOutput.objects.create(
            job=job, index=index, file=name, mime="image/png", width=64, height=48, bytes=len(content), sha256="0" * 64
        )
        Look.objects.create(team=team, output=output, job=job)
    archive = archive_store(job=job, outputs=list(job.outputs.order_by("index")), name=archive_name_for(job))
    aged(archive, timezone.now() - finished)
    GenerationJob.objects.filter(id=job.id).update(archive=archive)
    job.refresh_from_db()
    return job


def upload(team, *, age: timedelta, colour: tuple[int, int, int]) -> InputAsset:  # type: ignore[no-untyped-def]
    """An uploaded image (row and file) made `age` ago."""
    asset = InputAssetFactory(team=team, content=png_bytes(colour=colour))
    InputAsset.objects.filter(id=asset.id).update(created_at=timezone.now() - age)
    aged(asset.file.name, age)
    return asset


def running_job(team, **fields: object) -> GenerationJob:  # type: ignore[no-untyped-def]
    return GenerationJobFactory(
        team=team, status="running", lease_owner="worker-token", lease_expires_at=timezone.now() + HOUR,
        started_at=timezone.now(), **fields,
    )  # fmt: skip


def zip_entries(answer) -> list[bytes]:  # type: ignore[no-untyped-def]
    body = b"".join(answer.streaming_content)
    archive = zipfile.ZipFile(io.BytesIO(body))
    return [archive.read(name) for name in archive.namelist()]


@pytest.mark.django_db
def test_an_orphan_and_an_old_zip_go_and_every_file_a_row_names_stays(alice, bob):
    team = alice.team
    old_job = finished_job_with_zip(team, finished=timezone.now() - 10 * DAY)
    zip_name = old_job.archive.name
    zip_size = size(zip_name)
    recent_job = finished_job_with_zip(team, finished=timezone.now() - 2 * DAY)
    # What a run that died between writing and recording an image leaves: a file nothing names.
    orphan = stored(f"teams/{team.id}/jobs/{old_job.id}/image-3-dead.png", age=2 * DAY)
    young_orphan = stored(f"teams/{team.id}/jobs/{old_job.id}/image-3-beef.png", age=timedelta(minutes=10))
    # A clip being written by a running job that uses two old uploads: recorded as pending
    # before the write, its poster named after it.
    source = upload(team, age=40 * DAY, colour=(1, 2, 3))
    reference = upload(team, age=40 * DAY, colour=(4, 5, 6))
    writing = running_job(team, kind="edit", source_asset=source, total_outputs=1)
    JobReference.objects.create(job=writing, asset=reference, weight=0.5)
    clip = stored(f"teams/{team.id}/jobs/{writing.id}/clip-1-c0de.mp4", age=2 * DAY, content=b"\x00\x00\x00 ftypisom")
    poster = stored(poster_name_for(clip), age=2 * DAY)
    GenerationJob.objects.filter(id=writing.id).update(pending_file=clip)
    # Uploads: one fresh, one old and unused, one old that Bob's studio tab holds as a pending input.
    fresh = upload(team, age=2 * DAY, colour=(7, 8, 9))
    unused = upload(team, age=40 * DAY, colour=(10, 11, 12))
    in_draft = upload(team, age=40 * DAY, colour=(13, 14, 15))
    StudioTab.objects.create(
        team=team, user=bob.user, draft={"prompt": "a fox", "inputs": {"references": [{"asset_id": str(in_draft.id)}]}}
    )
    not_ours = stored("elsewhere/notes.txt", age=400 * DAY, content=b"someone else's")

    sweep = retention_sweep()

    assert not there(zip_name) and not there(orphan) and not there(unused.file.name)
    assert not InputAsset.objects.filter(id=unused.id).exists()
    assert GenerationJob.objects.get(id=old_job.id).archive.name == ""
    kept = [
        *(output.file.name for output in old_job.outputs.all()),  # a look's image
        *(output.file.name for output in recent_job.outputs.all()),
        recent_job.archive.name,  # a zip younger than RETENTION_ZIP_DAYS
        young_orphan,  # within its grace
        clip,
        poster,  # a pending file and its poster
        source.file.name,
        reference.file.name,  # uploads a job uses
        fresh.file.name,
        in_draft.file.name,
        not_ours,  # outside the folders Atelier judges
    ]
    assert [name for name in kept if not there(name)] == []
    assert InputAsset.objects.filter(id__in=[source.id, reference.id, fresh.id, in_draft.id]).count() == 4
    assert sweep.removed == {
        "zips": 1, "orphans": 1, "uploads": 1, "previews": 0, "events": 0, "deliveries": 0, "delivery_attempts": 0,
    }  # fmt: skip
    assert sweep.bytes_removed == zip_size + len(png_bytes()) + unused.bytes
    assert set(sweep.examples) == {zip_name, orphan, unused.file.name}
    assert sweep.finished_at is not None and sweep.error == ""

    again = retention_sweep()
    assert sum(again.removed.values()) == 0 and again.bytes_removed == 0 and again.error == ""


@pytest.mark.django_db
def test_a_team_folder_is_judged_a_few_files_at_a_time_and_each_named_file_stays(alice, monkeypatch):
    # Batches of 3 (200 in production): the rows are read for the files of each batch only, so
    # a clip and its poster, a job's images and its zip, can be judged in different batches.
    monkeypatch.setattr(retention, "BATCH", 3)
    team = alice.team
    job = finished_job_with_zip(team, finished=timezone.now() - 2 * DAY)
    writing = running_job(team, total_outputs=1)
    clip = stored(f"teams/{team.id}/jobs/{writing.id}/clip-1-c0de.mp4", age=2 * DAY, content=b"\x00\x00\x00 ftypisom")
    poster = stored(poster_name_for(clip), age=2 * DAY)
    GenerationJob.objects.filter(id=writing.id).update(pending_file=clip)
    uploads = [upload(team, age=2 * DAY, colour=(n, 2 * n, 3 * n)) for n in range(4)]
    orphans = [stored(f"teams/{team.id}/jobs/{job.id}/image-{n}-dead.png", age=2 * DAY) for n in range(3, 10)]

    sweep = retention_sweep()

    assert [name for name in orphans if there(name)] == []
    kept = [
        *(output.file.name for output in job.outputs.all()),
        job.archive.name,
        clip,
        poster,
        *(asset.file.name for asset in uploads),
    ]
    assert [name for name in kept if not there(name)] == []
    assert sweep.removed["orphans"] == len(orphans) and sweep.error == ""


@pytest.mark.django_db
def test_a_removed_zip_is_built_again_by_the_download_stored_and_removed_again(alice):
    job = finished_job_with_zip(alice.team, finished=timezone.now() - 10 * DAY)
    images = [default_storage.open(output.file.name).read() for output in job.outputs.order_by("index")]
    stored_zip = alice.client.get(f"/api/v1/jobs/{job.id}/download")
    assert stored_zip.status_code == 200 and zip_entries(stored_zip) == images

    sweep = retention_sweep()
    assert sweep.removed["zips"] == 1 and not there(job.archive.name)

    rebuilt = alice.client.get(f"/api/v1/jobs/{job.id}/download")
    assert rebuilt.status_code == 200
    assert rebuilt["Content-Type"] == "application/zip"
    assert zip_entries(rebuilt) == images
    # The zip built for that download is stored and recorded: the next download is served it.
    rebuilt_name = GenerationJob.objects.get(id=job.id).archive.name
    assert archive_is_current(rebuilt_name) and rebuilt_name != job.archive.name and there(rebuilt_name)
    assert zip_entries(alice.client.get(f"/api/v1/jobs/{job.id}/download")) == images
    assert GenerationJob.objects.get(id=job.id).archive.name == rebuilt_name  # served, not built again

    # Retention counts from the job's finish, not from the rebuild: the next sweep removes it too.
    again = retention_sweep()
    assert again.removed["zips"] == 1 and not there(rebuilt_name)
    assert GenerationJob.objects.get(id=job.id).archive.name == ""


@pytest.mark.django_db
def test_old_events_and_finished_deliveries_go_and_pending_ones_stay(alice):
    job = GenerationJobFactory(team=alice.team, status="succeeded", finished_at=timezone.now(), total_outputs=1)
    endpoint = WebhookEndpoint.objects.create(team=alice.team, url="https://hooks.example.com/in", secret="whsec_x")
    long_ago = timezone.now() - 40 * DAY

    def event(type_: str, *, at: datetime, output_index: int | None = None) -> JobEvent:
        return JobEvent.objects.create(job=job, team=alice.team, type=type_, output_index=output_index, created_at=at)

    def delivery(of: JobEvent, status: str, *, attempts: int) -> WebhookDelivery:
        made = WebhookDelivery.objects.create(
            endpoint=endpoint, event=of, status=status, attempts=attempts, created_at=of.created_at
        )
        for number in range(1, attempts + 1):
            WebhookAttempt.objects.create(delivery=made, number=number, status_code=500 if number < attempts else 200)
        return made

    started = event(JobEvent.Type.STARTED, at=long_ago)
    delivered = delivery(started, WebhookDelivery.Status.DELIVERED, attempts=2)
    output = event(JobEvent.Type.OUTPUT, at=long_ago, output_index=0)
    pending = delivery(output, WebhookDelivery.Status.PENDING, attempts=3)
    succeeded = event(JobEvent.Type.SUCCEEDED, at=timezone.now() - DAY)
    recent = delivery(succeeded, WebhookDelivery.Status.DELIVERED, attempts=1)
    undelivered_old = event(JobEvent.Type.FAILED, at=long_ago)  # no endpoint wanted it

    sweep = retention_sweep()

    assert set(JobEvent.objects.filter(job=job).values_list("id", flat=True)) == {output.id, succeeded.id}
    assert set(WebhookDelivery.objects.values_list("id", flat=True)) == {pending.id, recent.id}
    assert WebhookAttempt.objects.filter(delivery=pending).count() == 3
    assert not WebhookAttempt.objects.filter(delivery_id=delivered.id).exists()
    assert not JobEvent.objects.filter(id=undelivered_old.id).exists()
    assert (sweep.removed["events"], sweep.removed["deliveries"], sweep.removed["delivery_attempts"]) == (2, 1, 2)


@pytest.mark.django_db
def test_a_preview_goes_after_its_grace_unless_a_running_job_shows_it(alice):
    shown = stored(f"previews/{alice.team.id}/shown.png", age=3 * HOUR)
    showing = running_job(alice.team, preview_file=shown, preview_index=0, preview_at=timezone.now() - 3 * HOUR)
    left_behind = stored(f"previews/{alice.team.id}/left-behind.png", age=2 * HOUR)
    finished = GenerationJobFactory(
        team=alice.team, status="failed", finished_at=timezone.now(), preview_file=left_behind, preview_index=1
    )
    # A run that died left its preview behind: no job names it any more.
    dead_run = stored(f"previews/{alice.team.id}/{showing.id}/image-1-dead.png", age=2 * HOUR)
    shown_by_another = stored(f"previews/{alice.team.id}/other/image-2.png", age=2 * HOUR)
    running_job(alice.team, preview_file=shown_by_another, preview_index=1)
    fresh = stored(f"previews/{alice.team.id}/fresh.png", age=timedelta(minutes=10))

    sweep = retention_sweep()

    assert there(shown) and there(shown_by_another) and there(fresh)
    assert not there(left_behind) and not there(dead_run)
    assert GenerationJob.objects.get(id=showing.id).preview_file == shown
    finished.refresh_from_db()
    assert (finished.preview_file, finished.preview_index, finished.preview_at) == ("", None, None)
    assert sweep.removed["previews"] == 2 and sweep.removed["orphans"] == 0


@pytest.mark.django_db
def test_a_sweep_stands_down_while_another_runs_and_takes_over_from_one_that_died(alice, settings):
    orphan = stored(f"teams/{alice.team.id}/jobs/gone/image-1-0000.png", age=3 * DAY)
    running = RetentionSweep.objects.create(started_at=timezone.now() - timedelta(seconds=5))

    stood_down = retention_sweep()
    assert there(orphan)
    assert stood_down.finished_at is not None and f"sweep #{running.id}" in stood_down.error
    assert sum(stood_down.removed.values()) == 0

    # Its process died: past twice the time budget it no longer holds anyone back.
    RetentionSweep.objects.filter(id=running.id).update(
        started_at=timezone.now() - timedelta(seconds=3 * settings.RETENTION_INTERVAL_SECONDS)
    )
    sweep = retention_sweep()
    assert not there(orphan) and sweep.removed["orphans"] == 1 and sweep.error == ""
    assert RetentionSweep.objects.get(id=running.id).error == DIED


def lock_waits() -> int:
    """Connections of the test database waiting on a row lock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return int(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
def test_a_delivery_sent_again_while_the_sweep_removes_it_stays(alice):
    job = GenerationJobFactory(team=alice.team, status="succeeded", finished_at=timezone.now(), total_outputs=1)
    endpoint = WebhookEndpoint.objects.create(team=alice.team, url="https://hooks.example.com/in", secret="whsec_x")
    long_ago = timezone.now() - 40 * DAY
    event = JobEvent.objects.create(job=job, team=alice.team, type=JobEvent.Type.SUCCEEDED, created_at=long_ago)
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint, event=event, status=WebhookDelivery.Status.FAILED, attempts=7, created_at=long_ago
    )
    resent, commit = threading.Event(), threading.Event()
    sweeps: list[RetentionSweep] = []

    def send_again() -> None:
        # "Send again" (the service the API and the pages call), its transaction still open
        # while the sweep reaches the delivery.
        try:
            with transaction.atomic():
                delivery_resend(delivery_id=delivery.id)
                resent.set()
                commit.wait(timeout=30)
        finally:
            connection.close()

    def sweep() -> None:
        try:
            sweeps.append(retention_sweep())
        finally:
            connection.close()

    resender = threading.Thread(target=send_again)
    resender.start()
    assert resent.wait(timeout=30)
    sweeper = threading.Thread(target=sweep)
    sweeper.start()
    wait_until(lock_waits, timeout=30, message="the sweep waiting on the delivery being sent again")
    commit.set()
    resender.join(timeout=30)
    sweeper.join(timeout=60)

    assert len(sweeps) == 1 and sweeps[0].removed["deliveries"] == 0
    assert WebhookDelivery.objects.get(id=delivery.id).status == WebhookDelivery.Status.PENDING
    assert JobEvent.objects.filter(id=event.id).exists()


def in_thread(work) -> threading.Thread:  # type: ignore[no-untyped-def]
    """`work` on a thread of its own, with its own database connection (closed at the end)."""

    def run() -> None:
        try:
            work()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "inputs, field",
    [
        (lambda asset_id: {"kind": "edit", "inputs": {"source_asset_id": asset_id}}, "inputs.source_asset_id"),
        (
            lambda asset_id: {"inputs": {"references": [{"asset_id": asset_id, "weight": 0.5}]}},
            "inputs.references.0.asset_id",
        ),
    ],
)
def test_a_job_submitted_with_an_upload_the_sweep_removes_meanwhile_is_refused_naming_the_field(alice, inputs, field):
    old = upload(alice.team, age=40 * DAY, colour=(200, 40, 90))
    account = CreditAccount.objects.get(team=alice.team)
    held, release = threading.Event(), threading.Event()
    answers: list = []

    def another_submission() -> None:
        # Holds the team's credit account as every submit of the team does while it stores its
        # job: the submission below checks its inputs (the upload is there), then waits here.
        with transaction.atomic():
            credits_account_lock(team_id=alice.team.id)
            held.set()
            release.wait(timeout=30)

    def submit() -> None:
        body = {"prompt": "roses on the nails", **inputs(str(old.id))}
        answers.append(alice.client.post("/api/v1/jobs", body, format="json"))

    holder = in_thread(another_submission)
    assert held.wait(timeout=30)
    submitter = in_thread(submit)
    wait_until(lock_waits, timeout=30, message="the submission waiting to store its job")

    # Between the submission's check of its inputs and its job's row: the sweep removes the upload.
    sweep = retention_sweep()
    assert sweep.removed["uploads"] == 1 and not there(old.file.name)
    release.set()
    holder.join(timeout=30)
    submitter.join(timeout=30)

    [answer] = answers
    assert answer.status_code == 400, answer.content
    error = answer.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and error["details"][field] == ["No uploaded image with this id."]
    assert not GenerationJob.objects.filter(team=alice.team).exists()
    assert CreditAccount.objects.values_list("available", "held").get(id=account.id) == (
        account.available, account.held,
    )  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_an_old_upload_a_job_is_being_submitted_with_stays_and_the_job_keeps_it(alice):
    old = upload(alice.team, age=40 * DAY, colour=(20, 140, 90))
    checked, commit = threading.Event(), threading.Event()
    jobs: list[GenerationJob] = []

    def submit() -> None:
        with transaction.atomic():
            # The job's foreign keys checked as its rows are written (they are otherwise checked
            # at the commit): the upload is held from here until the commit, as at a commit.
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            spec = JobSpec(prompt="roses on the nails", kind="edit", source_asset_id=old.id)
            jobs.append(job_submit(team=alice.team, user=alice.user, spec=spec).job)
            checked.set()
            commit.wait(timeout=30)

    submitter = in_thread(submit)
    assert checked.wait(timeout=30)
    sweep = retention_sweep()
    commit.set()
    submitter.join(timeout=30)

    assert sweep.removed["uploads"] == 0 and there(old.file.name)
    [job] = jobs
    assert GenerationJob.objects.get(id=job.id).source_asset_id == old.id
    assert retention_sweep().removed["uploads"] == 0  # used by a job now: kept for good


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_remove_each_file_once(alice):
    orphans = [stored(f"teams/{alice.team.id}/jobs/gone/image-{n}-0000.png", age=3 * DAY) for n in range(1, 31)]
    sweeps: list[RetentionSweep] = []

    def sweep() -> None:
        try:
            sweeps.append(retention_sweep())
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(sweeps) == 2
    assert [name for name in orphans if there(name)] == []
    assert sum(done.removed["orphans"] for done in sweeps) == len(orphans)
    assert all(done.error == "" or done.error.startswith("Stood down") for done in sweeps)


@pytest.mark.django_db
def test_the_admin_shows_what_the_last_sweep_removed(alice):
    finished_job_with_zip(alice.team, finished=timezone.now() - 10 * DAY)
    orphan = stored(f"teams/{alice.team.id}/jobs/gone/image-1-0000.png", age=3 * DAY)
    sweep = retention_sweep()
    operator = Client()
    operator.force_login(User.objects.create_superuser(email="ops@example.com", password="operator-password"))

    listing = operator.get("/admin/generation/retentionsweep/")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert "the last, at" in page and "removed 1 zip, 1 orphan file" in page
    detail = operator.get(f"/admin/generation/retentionsweep/{sweep.id}/change/")
    assert detail.status_code == 200 and orphan in detail.content.decode()
    assert operator.get("/admin/generation/retentionsweep/add/").status_code == 403


@pytest.mark.django_db
def test_operators_can_sweep_from_the_command_line(alice, capsys):
    orphan = stored(f"teams/{alice.team.id}/jobs/gone/image-1-0000.png", age=3 * DAY)
    call_command("retention_sweep")
    assert "removed 1 orphan file" in capsys.readouterr().out
    assert not there(orphan)


@pytest.mark.django_db(transaction=True)
def test_beat_schedules_the_sweep_and_the_webhooks_process_runs_it(alice, media: Path, log_dir: Path):
    orphan = stored(f"teams/{alice.team.id}/jobs/gone/image-1-0000.png", age=3 * DAY)
    env = child_environment(RETENTION_INTERVAL_SECONDS="1", MEDIA_ROOT=str(media))
    processes = [start_webhooks(env, log_dir, concurrency=1), start_beat(env, log_dir)]
    try:
        done = wait_until(
            lambda: RetentionSweep.objects.filter(removed__orphans=1).first(), timeout=30, message="a sweep"
        )
    finally:
        for process in processes:
            process.stop()
    assert not there(orphan)
    assert done.examples == [orphan]  # type: ignore[attr-defined]
