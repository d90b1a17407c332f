"""Jobs on a real Celery worker process (thread pool) with beat, against PostgreSQL and Redis."""

from __future__ import annotations

import io
import zipfile
from datetime import timedelta

import pytest
from celery.app.defaults import NAMESPACES, flatten
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from PIL import Image

from config.celery import app as celery_app
from credits.services import JobCredits, job_credits
from generation.models import GeneratedOutput, GenerationJob, Look, WorkerHeartbeat
from generation.services.lifecycle import job_cancel
from generation.services.rescue import RESCUER_ROW
from generation.services.submit import JobSpec, job_submit
from tests.conftest import wait_for_finish, wait_for_job
from tests.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


@pytest.fixture(scope="module")
def stack(make_stack):
    return make_stack(LOCAL_PROVIDER_LATENCY_MS="400")


def test_four_image_job_shows_each_image_land_and_ends_with_pngs_looks_and_zip(stack, alice):
    response = alice.client.post("/api/v1/jobs", {"prompt": "ocean blue chrome tips", "count": 4}, format="json")
    assert response.status_code == 202
    job_id = response.json()["id"]

    seen_progress = []
    while True:
        body = alice.client.get(f"/api/v1/jobs/{job_id}").json()
        if not seen_progress or seen_progress[-1] != body["progress"]["completed"]:
            seen_progress.append(body["progress"]["completed"])
            assert len(body["outputs"]) == body["progress"]["completed"]
        if body["status"] in ("succeeded", "failed", "canceled"):
            break
        wait_for_job(job_id, lambda job, last=seen_progress[-1]: job.completed_outputs != last or job.is_finished)

    assert body["status"] == "succeeded"
    assert seen_progress == [0, 1, 2, 3, 4]
    assert [output["index"] for output in body["outputs"]] == [1, 2, 3, 4]
    for output in body["outputs"]:
        image_response = alice.client.get(output["url"])
        image = Image.open(io.BytesIO(b"".join(image_response.streaming_content)))
        assert image.format == "PNG"
        assert image.size == (output["width"], output["height"])
    assert Look.objects.filter(team=alice.team, job_id=job_id).count() == 4

    download = alice.client.get(f"/api/v1/jobs/{job_id}/download")
    assert download["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    assert archive.namelist() == [f"ocean-blue-chrome-tips-{n}.png" for n in (1, 2, 3, 4)]  # named after the prompt
    assert all(archive.read(name).startswith(b"\x89PNG") for name in archive.namelist())


def test_two_jobs_of_one_user_run_at_the_same_time_on_one_worker(stack, alice):
    ids = [
        alice.client.post("/api/v1/jobs", {"prompt": f"design {n}", "count": 3}, format="json").json()["id"]
        for n in range(2)
    ]
    wait_for_job(ids[0], lambda _: GenerationJob.objects.filter(id__in=ids, status="running").count() == 2)
    jobs = [wait_for_finish(job_id) for job_id in ids]
    assert [job.status for job in jobs] == ["succeeded", "succeeded"]
    # Each started before the other finished: they overlapped.
    assert jobs[0].started_at < jobs[1].finished_at and jobs[1].started_at < jobs[0].finished_at


def test_cancel_of_a_queued_job_means_it_never_runs(stack, alice):
    with transaction.atomic():
        # Canceled before the commit that publishes it: the worker gets the message, not the job.
        doomed = job_submit(team=alice.team, user=alice.user, spec=JobSpec(prompt="never", count=2)).job
        job_cancel(job=doomed)
    later = job_submit(team=alice.team, user=alice.user, spec=JobSpec(prompt="after", count=1)).job
    assert wait_for_finish(later.id).status == "succeeded"
    doomed.refresh_from_db()
    assert doomed.status == "canceled"
    assert doomed.started_at is None and doomed.attempts == 0
    assert not GeneratedOutput.objects.filter(job=doomed).exists()


def test_cancel_of_a_running_job_stops_before_its_next_image_and_keeps_what_it_made(stack, alice):
    job_id = alice.client.post("/api/v1/jobs", {"prompt": "stop me", "count": 6}, format="json").json()["id"]
    wait_for_job(job_id, lambda job: job.completed_outputs >= 1)
    response = alice.client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert response.status_code == 200
    completed_at_cancel = response.json()["progress"]["completed"]
    job = wait_for_finish(job_id)
    assert job.status == "canceled"
    # At most the image already in flight when the cancel arrived is added.
    assert completed_at_cancel <= job.completed_outputs <= completed_at_cancel + 1 < 6
    indexes = sorted(GeneratedOutput.objects.filter(job_id=job_id).values_list("index", flat=True))
    assert indexes == list(range(job.completed_outputs))
    assert Look.objects.filter(job_id=job_id).count() == job.completed_outputs
    # Only the delivered images are paid; the rest of the hold goes back.
    assert job_credits(job_id) == JobCredits(held=6, captured=job.completed_outputs, released=6 - job.completed_outputs)


def test_worker_runs_with_the_configured_pool_prefetch_and_acks(stack):
    inspector = celery_app.control.inspect(timeout=5)
    stats = inspector.stats()
    assert stats, "the worker did not answer"
    workers = {name for name in stats if name.startswith("worker-")}
    assert len(workers) == 1, stats.keys()
    (worker_name,) = workers
    worker_stats = stats[worker_name]
    assert worker_stats["pool"]["implementation"] == "celery.concurrency.thread:TaskPool"
    assert worker_stats["pool"]["max-concurrency"] == 4  # the test worker's --concurrency
    assert worker_stats["prefetch_count"] == 4  # concurrency x prefetch multiplier 1
    # The rescuer has a process of its own, on its own queue, so jobs can never delay it.
    (rescuer_name,) = (name for name in stats if name.startswith("rescuer-"))
    assert stats[rescuer_name]["pool"]["implementation"] == "celery.concurrency.solo:TaskPool"
    queues = {name: {queue["name"] for queue in active} for name, active in inspector.active_queues().items()}
    assert (queues[worker_name], queues[rescuer_name]) == ({"jobs"}, {"rescue"})
    # Job workers beat for their whole life, idle or not, so a live worker never looks dead.
    wait_until(
        lambda: (
            WorkerHeartbeat.objects.exclude(name=RESCUER_ROW)
            .filter(beat_at__gte=timezone.now() - timedelta(seconds=5))
            .count()
            >= 2
        ),  # the worker and the quarantine worker
        timeout=15,
        message="the idle workers' heartbeats",
    )
    # The worker loaded the Django settings, and Celery resolves them to the names it uses.
    worker_conf = inspector.conf(with_defaults=False)[worker_name]
    assert worker_conf["CELERY_TASK_ACKS_LATE"] is True
    assert worker_conf["CELERY_TASK_REJECT_ON_WORKER_LOST"] is True
    assert worker_conf["CELERY_WORKER_PREFETCH_MULTIPLIER"] == 1
    conf = celery_app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert (conf.task_time_limit, conf.task_soft_time_limit) == (3600, 3300)
    assert conf.task_ignore_result is True


def test_every_celery_setting_is_one_celery_knows():
    """A misspelled CELERY_* setting is silently ignored by Celery; here it fails a test."""
    known = {name for name, _ in flatten(NAMESPACES)}
    ours = {name.removeprefix("CELERY_").lower() for name in dir(settings) if name.startswith("CELERY_")}
    assert ours, "no Celery settings found"
    assert ours - known == set()
