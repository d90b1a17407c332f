"""The job pipeline and the rescuer, run in this process against PostgreSQL (no broker needed)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import redis
from django.db import connection
from django.utils import timezone

from credits.services import JobCredits, job_credits
from generation.models import GeneratedOutput, GenerationJob, Look, WorkerHeartbeat
from generation.providers.base import ProviderOutput
from generation.services import pipeline
from generation.services.faults import Backoff
from generation.services.lifeline import HeldJob, Lifeline
from generation.services.pipeline import RunOutcome, job_run
from generation.services.rescue import jobs_rescue
from generation.services.submit import JobSpec, job_submit
from tests.helpers import rescue_pass, rescuer_just_back
from tests.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast_provider(settings):
    settings.LOCAL_PROVIDER_LATENCY_MS = 0
    settings.LOCAL_PROVIDER_TRANSIENT_FAILURE_RATE = 0.0


def new_job(person, count: int = 4, prompt: str = "teal marble nails") -> GenerationJob:
    return job_submit(team=person.team, user=person.user, spec=JobSpec(prompt=prompt, count=count)).job


def claim(job: GenerationJob) -> HeldJob:
    """Claim the job for this process as a worker thread would, without running it."""
    held = Lifeline.current().claim(job_id=job.id)
    assert held is not None
    return held


def record(job: GenerationJob, index: int, held: HeldJob) -> bool:
    return pipeline._record_output(job, index, ProviderOutput(b"\x89PNG-test", "image/png", 1, 1), held)


def let_go(job: GenerationJob, held: HeldJob) -> None:
    """The claiming worker vanishes: its thread is gone and its lease has run out."""
    held.step_deadline = 0.0  # not renewed any more
    Lifeline.current().release(held)
    wait_until(lambda: Lifeline.current().idle, timeout=10, message="the lifeline to stop")
    GenerationJob.objects.filter(id=job.id).update(lease_expires_at=timezone.now() - timedelta(seconds=10))


def test_run_makes_every_image_and_succeeds(alice):
    job = new_job(alice, count=3)
    assert job_run(job_id=job.id) is RunOutcome.SUCCEEDED
    job.refresh_from_db()
    assert (job.status, job.completed_outputs, job.lease_owner) == ("succeeded", 3, "")
    assert job.archive.name.endswith(".zip")
    assert Look.objects.filter(job=job).count() == 3


def test_rerun_resumes_at_the_first_missing_image(alice):
    job = new_job(alice, count=4)
    # A first run delivered images 1 and 2, then its worker vanished; the rescuer queued it again.
    held = claim(job)
    for index in (0, 1):
        assert record(job, index, held)
    let_go(job, held)
    rescue_pass()
    GenerationJob.objects.filter(id=job.id).update(run_after=None)  # its backoff has passed
    kept = {o.index: o.id for o in GeneratedOutput.objects.filter(job=job)}

    assert job_run(job_id=job.id) is RunOutcome.SUCCEEDED
    outputs = {o.index: o for o in GeneratedOutput.objects.filter(job=job)}
    assert sorted(outputs) == [0, 1, 2, 3]
    assert {index: outputs[index].id for index in (0, 1)} == kept  # not made again
    assert outputs[2].bytes > 100  # a real image from the provider
    job.refresh_from_db()
    assert (job.completed_outputs, job.attempts) == (4, 2)


def test_a_worker_that_lost_its_lease_cannot_record_or_finish(alice, settings):
    job = new_job(alice, count=2)
    stalled = claim(job)
    let_go(job, stalled)
    rescue_pass()
    GenerationJob.objects.filter(id=job.id).update(run_after=None)  # its backoff has passed
    taker = claim(job)  # another worker takes over
    assert not record(job, 0, stalled)
    assert not GeneratedOutput.objects.filter(job=job).exists()
    assert pipeline._finish(stalled, RunOutcome.SUCCEEDED) is RunOutcome.LEASE_LOST
    job.refresh_from_db()
    assert (job.status, job.lease_owner, job.completed_outputs) == ("running", taker.token, 0)
    Lifeline.current().release(taker)


def test_a_running_job_cannot_be_claimed_twice(alice):
    job = new_job(alice)
    held = claim(job)
    assert Lifeline.current().claim(job_id=job.id) is None
    assert job_run(job_id=job.id) is RunOutcome.NOT_CLAIMED
    Lifeline.current().release(held)


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
    assert Backoff.for_provider_retries().delay(0, retry_after=7.0) == 7.0
    # A provider's Retry-After wins over the backoff's own ceiling, up to two minutes.
    assert Backoff.for_provider_retries().delay(0, retry_after=45.0) == 45.0
    assert Backoff.for_provider_retries().delay(0, retry_after=300.0) == 120.0
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (3, 8.0), (10, 30.0)]:
        delays = {Backoff.for_provider_retries().delay(attempt) for _ in range(20)}
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(delays) > 1  # jittered


def _expire(job: GenerationJob, attempts: int = 1, **extra: object) -> None:
    """A running job whose worker ("dead-worker", no heartbeat) died more than a lease ago."""
    fields: dict[str, object] = {
        "status": "running", "lease_owner": "dead-token", "lease_worker": "dead-worker",
        "lease_expires_at": timezone.now() - timedelta(seconds=10), "attempts": attempts,
        "started_at": timezone.now(),
    }  # fmt: skip
    GenerationJob.objects.filter(id=job.id).update(**{**fields, **extra})


def test_rescuer_requeues_a_job_whose_worker_died_after_delivering_at_once(alice):
    job = new_job(alice)
    _expire(job, completed_outputs=1, claim_completed=0)
    report = rescue_pass()
    job.refresh_from_db()
    assert report.requeued == 1
    assert (job.status, job.lease_owner, job.attempts, job.suspect_crashes, job.run_after) == ("queued", "", 1, 0, None)


def test_a_job_whose_worker_died_before_it_delivered_becomes_a_suspect_not_a_failure(alice):
    job = new_job(alice)
    _expire(job)
    assert rescue_pass().requeued == 1
    job.refresh_from_db()
    assert (job.status, job.suspect_crashes, job.crashes_alone) == ("queued", 1, 0)
    assert job.run_after is not None  # paused with backoff


def test_rescuer_fails_a_job_that_killed_its_worker_while_alone_as_poison_and_keeps_its_images(alice, settings):
    job = new_job(alice, count=3)
    held = claim(job)
    assert record(job, 0, held)
    Lifeline.current().release(held)
    _expire(job, ran_alone=True, suspect_crashes=3, crashes_alone=settings.JOB_POISON_CRASHES - 1, claim_completed=1)
    assert rescue_pass().failed == 1
    job.refresh_from_db()
    assert job.status == "failed" and job.error_code == "POISON_JOB"
    assert "even when it ran on its own" in job.error_message
    assert Look.objects.filter(job=job).count() == 1
    assert job_credits(job.id) == JobCredits(held=3, captured=1, released=2)


def test_a_stale_lease_of_a_worker_that_still_beats_is_a_hung_step_and_only_pauses(alice):
    job = new_job(alice)
    _expire(job, lease_worker="live-worker")
    WorkerHeartbeat.objects.create(name="live-worker", beat_at=timezone.now())
    assert rescue_pass().requeued == 1
    job.refresh_from_db()
    assert (job.status, job.suspect_crashes, job.pauses) == ("queued", 0, 1)
    assert job.outage_since is not None


def test_rescuer_waits_with_dead_workers_until_the_database_has_been_up_for_a_lease(alice):
    job = new_job(alice)
    _expire(job)
    rescuer_just_back()
    report = jobs_rescue()
    assert (report.waiting, report.requeued) == (1, 0)
    job.refresh_from_db()
    assert job.status == "running"


def test_two_rescuers_at_once_make_one_pass(alice):
    rescue_pass()
    assert not jobs_rescue().ran  # the second one within an interval does nothing


def test_rescuer_finishes_a_dead_job_that_was_asked_to_cancel_as_canceled(alice):
    job = new_job(alice)
    _expire(job, cancel_requested=True)
    assert rescue_pass().canceled == 1
    job.refresh_from_db()
    assert job.status == "canceled"


def test_rescuer_wakes_a_free_worker_for_a_queued_job_that_lost_its_wake_up(alice, settings):
    job = new_job(alice)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.flushdb()  # no wake-up of this job (nor any other) is left in the broker
    long_ago = timezone.now() - timedelta(seconds=settings.JOB_REDISPATCH_AFTER_SECONDS + 5)
    GenerationJob.objects.filter(id=job.id).update(dispatched_at=long_ago)
    assert rescue_pass().redispatched == 0  # no live worker with a free slot: nobody to wake
    WorkerHeartbeat.objects.create(name="worker-a", pool="jobs", slots=4, running_jobs=3)
    assert rescue_pass().redispatched == 1  # one free slot, one job waiting: one wake-up
    # The wake-up is still in the broker (that worker's consumer stalled): no second one.
    assert rescue_pass().redispatched == 0
    broker.flushdb()
    WorkerHeartbeat.objects.filter(name="worker-a").update(running_jobs=4)
    assert rescue_pass().redispatched == 0  # every slot busy: the job merely waits its turn
