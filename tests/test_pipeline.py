"""The job pipeline and the rescuer, run in this process against PostgreSQL (no broker needed)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from generation.models import GeneratedOutput, GenerationJob, Look
from generation.providers.base import ProviderOutput
from generation.services import pipeline
from generation.services.pipeline import LeaseLost, RunOutcome, job_claim, job_run
from generation.services.rescue import jobs_rescue
from generation.services.submit import JobSpec, job_submit
from tests.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast_provider(settings):
    settings.LOCAL_PROVIDER_LATENCY_MS = 0
    settings.LOCAL_PROVIDER_TRANSIENT_FAILURE_RATE = 0.0


def new_job(person, count: int = 4, prompt: str = "teal marble nails") -> GenerationJob:
    return job_submit(team=person.team, user=person.user, spec=JobSpec(prompt=prompt, count=count)).job


def test_run_makes_every_image_and_succeeds(alice):
    job = new_job(alice, count=3)
    assert job_run(job_id=job.id) is RunOutcome.SUCCEEDED
    job.refresh_from_db()
    assert (job.status, job.completed_outputs, job.lease_owner) == ("succeeded", 3, "")
    assert job.archive.name.endswith(".zip")
    assert Look.objects.filter(job=job).count() == 3


def test_rerun_resumes_at_the_first_missing_image(alice):
    job = new_job(alice, count=4)
    # A first run delivered images 1 and 2, then its worker vanished (its lease expired).
    assert job_claim(job_id=job.id, token="first-worker")
    for index in (0, 1):
        pipeline._record_output(job, index, ProviderOutput(b"\x89PNG-old", "image/png", 1, 1), "first-worker")
    GenerationJob.objects.filter(id=job.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    kept = {o.index: o.id for o in GeneratedOutput.objects.filter(job=job)}

    assert job_run(job_id=job.id) is RunOutcome.SUCCEEDED
    outputs = {o.index: o for o in GeneratedOutput.objects.filter(job=job)}
    assert sorted(outputs) == [0, 1, 2, 3]
    assert {index: outputs[index].id for index in (0, 1)} == kept  # not made again
    assert outputs[2].bytes > 100  # a real image from the provider
    job.refresh_from_db()
    assert (job.completed_outputs, job.attempts) == (4, 2)


def test_a_worker_that_lost_its_lease_cannot_record_or_finish(alice):
    job = new_job(alice, count=2)
    assert job_claim(job_id=job.id, token="stalled")
    GenerationJob.objects.filter(id=job.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert job_claim(job_id=job.id, token="rescuer-worker")  # another worker takes over
    with pytest.raises(LeaseLost):
        pipeline._record_output(job, 0, ProviderOutput(b"late", "image/png", 1, 1), "stalled")
    assert not GeneratedOutput.objects.filter(job=job).exists()
    assert pipeline._finish(job.id, Q(lease_owner="stalled"), RunOutcome.SUCCEEDED) is RunOutcome.LEASE_LOST
    job.refresh_from_db()
    assert (job.status, job.lease_owner, job.completed_outputs) == ("running", "rescuer-worker", 0)


def test_a_live_lease_cannot_be_claimed_twice(alice):
    job = new_job(alice)
    assert job_claim(job_id=job.id, token="one")
    assert not job_claim(job_id=job.id, token="two")
    assert job_run(job_id=job.id) is RunOutcome.NOT_CLAIMED


def test_a_finished_or_canceled_job_is_not_run_again(alice):
    job = new_job(alice, count=1)
    assert job_run(job_id=job.id) is RunOutcome.SUCCEEDED
    assert job_run(job_id=job.id) is RunOutcome.NOT_CLAIMED
    assert GeneratedOutput.objects.filter(job=job).count() == 1


def test_permanent_provider_error_fails_the_job_with_its_code_and_keeps_nothing_twice(alice):
    job = new_job(alice, count=2, prompt="something forbidden")
    assert job_run(job_id=job.id) is RunOutcome.FAILED
    job.refresh_from_db()
    assert job.error_code == "CONTENT_POLICY"
    assert "content policy" in job.error_message
    assert job.finished_at is not None


def test_transient_errors_past_the_bound_fail_the_job_with_a_clear_message(alice, settings):
    settings.LOCAL_PROVIDER_TRANSIENT_FAILURE_RATE = 1.0
    settings.JOB_MAX_IMAGE_RETRIES = 2
    settings.JOB_RETRY_BASE_SECONDS = 0.01
    job = new_job(alice, count=2)
    assert job_run(job_id=job.id) is RunOutcome.FAILED
    job.refresh_from_db()
    assert job.error_code == "PROVIDER_UNAVAILABLE"
    assert "after 3 tries" in job.error_message


def test_a_cancel_during_a_retry_wait_stops_the_job_before_the_next_try(alice, settings):
    settings.LOCAL_PROVIDER_TRANSIENT_FAILURE_RATE = 1.0
    settings.JOB_MAX_IMAGE_RETRIES = 50
    settings.JOB_RETRY_BASE_SECONDS = 0.05
    settings.JOB_RETRY_MAX_SECONDS = 0.05
    job = new_job(alice, count=2)
    outcome: list[RunOutcome] = []

    def run() -> None:
        try:
            outcome.append(job_run(job_id=job.id))
        finally:
            connection.close()

    runner = threading.Thread(target=run)
    runner.start()
    # The provider is down; the person cancels while the job waits to retry image 1.
    wait_until(lambda: GenerationJob.objects.filter(id=job.id, status="running").exists(), timeout=10)
    GenerationJob.objects.filter(id=job.id).update(cancel_requested=True)
    runner.join(timeout=10)
    assert outcome == [RunOutcome.CANCELED]  # long before its 50 retries would have run out
    job.refresh_from_db()
    assert job.status == "canceled" and job.completed_outputs == 0


def test_job_time_limit_fails_the_job_between_images(alice, settings):
    settings.JOB_TIME_LIMIT_SECONDS = 0.0
    job = new_job(alice, count=2)
    assert job_run(job_id=job.id) is RunOutcome.FAILED
    job.refresh_from_db()
    assert job.error_code == "JOB_TIMEOUT"


def test_backoff_honours_retry_after_and_grows_with_jitter_within_bounds(settings):
    settings.JOB_RETRY_BASE_SECONDS = 1.0
    settings.JOB_RETRY_MAX_SECONDS = 30.0
    assert pipeline._backoff_seconds(0, retry_after=7.0) == 7.0
    assert pipeline._backoff_seconds(0, retry_after=300.0) == 30.0
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (3, 8.0), (10, 30.0)]:
        delays = {pipeline._backoff_seconds(attempt, None) for _ in range(20)}
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(delays) > 1  # jittered


def _expire(job: GenerationJob, attempts: int, **extra: object) -> None:
    GenerationJob.objects.filter(id=job.id).update(
        status="running", lease_owner="dead-worker", lease_expires_at=timezone.now() - timedelta(seconds=5),
        attempts=attempts, started_at=timezone.now(), **extra,
    )  # fmt: skip


def test_rescuer_requeues_a_job_whose_worker_died(alice):
    job = new_job(alice)
    _expire(job, attempts=1)
    report = jobs_rescue()
    job.refresh_from_db()
    assert report.requeued == 1
    assert (job.status, job.lease_owner, job.attempts) == ("queued", "", 1)


def test_rescuer_fails_a_job_out_of_attempts_and_keeps_its_images(alice, settings):
    job = new_job(alice, count=3)
    assert job_claim(job_id=job.id, token="dead-worker")
    pipeline._record_output(job, 0, ProviderOutput(b"\x89PNG", "image/png", 1, 1), "dead-worker")
    _expire(job, attempts=settings.JOB_MAX_ATTEMPTS)
    assert jobs_rescue().failed == 1
    job.refresh_from_db()
    assert job.status == "failed" and job.error_code == "WORKER_LOST"
    assert Look.objects.filter(job=job).count() == 1


def test_rescuer_finishes_a_dead_job_that_was_asked_to_cancel_as_canceled(alice):
    job = new_job(alice)
    _expire(job, attempts=1, cancel_requested=True)
    assert jobs_rescue().canceled == 1
    job.refresh_from_db()
    assert job.status == "canceled"


def test_rescuer_republishes_a_queued_job_nobody_claimed(alice, settings):
    job = new_job(alice)
    long_ago = timezone.now() - timedelta(seconds=settings.JOB_REDISPATCH_AFTER_SECONDS + 5)
    GenerationJob.objects.filter(id=job.id).update(dispatched_at=long_ago)
    assert jobs_rescue().redispatched == 1
    job.refresh_from_db()
    assert job.dispatched_at > long_ago
    assert jobs_rescue().redispatched == 0  # not again until the window passes once more
