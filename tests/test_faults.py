"""Who caused a fault decides what it costs: pauses, suspects, poison, handover, orphans.

Run in this process against PostgreSQL and real storage (the run's media folder); the chaos
suite (tests/chaos/) does the same to the real worker, web and broker processes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from credits.services import JobCredits, job_credits
from generation.models import GeneratedOutput, GenerationJob
from generation.services.bounded import StepInterrupted, StepTimeout, call_bounded
from generation.services.lifeline import Lifeline
from generation.services.pipeline import RunOutcome, job_run
from generation.services.recovery import Interruption
from generation.services.submit import JobSpec, job_submit
from tests.helpers import rescue_pass
from tests.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast_provider(settings):
    settings.LOCAL_PROVIDER_LATENCY_MS = 0
    settings.LOCAL_PROVIDER_TRANSIENT_FAILURE_RATE = 0.0


@pytest.fixture(autouse=True)
def fresh_lifeline() -> Iterator[None]:
    """Each test starts with this process's lifeline new: no drain, no shutdown left over."""
    Lifeline._instance = None
    yield
    Lifeline._instance = None


def new_job(person, count: int = 3, prompt: str = "amber tiles") -> GenerationJob:
    return job_submit(team=person.team, user=person.user, spec=JobSpec(prompt=prompt, count=count)).job


def run_in_thread(job: GenerationJob, alone: bool = False) -> tuple[threading.Thread, list[RunOutcome]]:
    outcome: list[RunOutcome] = []

    def run() -> None:
        try:
            outcome.append(job_run(job_id=job.id, alone=alone))
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


class UnwritableStorage:
    """The media folder's `teams/` replaced by a plain file: every write under it fails for real."""

    def __init__(self) -> None:
        media = Path(django_settings.MEDIA_ROOT)
        self.teams, self.aside = media / "teams", media / "teams-aside"

    def __enter__(self) -> UnwritableStorage:
        self.teams.mkdir(parents=True, exist_ok=True)
        self.teams.rename(self.aside)
        self.teams.write_text("not a folder")
        return self

    def __exit__(self, *exc: object) -> None:
        self.teams.unlink()
        self.aside.rename(self.teams)


def test_a_storage_failure_pauses_the_job_with_backoff_and_costs_it_nothing(alice):
    job = new_job(alice)
    with UnwritableStorage():
        assert job_run(job_id=job.id) is RunOutcome.PAUSED
    job.refresh_from_db()
    assert (job.status, job.pauses, job.suspect_crashes, job.crashes_alone) == ("queued", 1, 0, 0)
    assert job.run_after is not None and job.run_after > timezone.now() - timedelta(seconds=1)
    assert job.outage_since is not None
    # Once storage is back and the backoff has passed, it resumes and every counter is reset.
    GenerationJob.objects.filter(id=job.id).update(run_after=None)
    assert job_run(job_id=job.id) is RunOutcome.SUCCEEDED
    job.refresh_from_db()
    assert (job.completed_outputs, job.pauses, job.outage_since) == (3, 0, None)


def test_a_job_held_up_past_the_outage_budget_fails_with_its_images_kept(alice, settings):
    settings.JOB_OUTAGE_BUDGET_SECONDS = 60
    job = new_job(alice)
    GenerationJob.objects.filter(id=job.id).update(outage_since=timezone.now() - timedelta(seconds=61), pauses=9)
    with UnwritableStorage():
        assert job_run(job_id=job.id) is RunOutcome.PAUSED
    job.refresh_from_db()
    assert (job.status, job.error_code) == ("failed", "INFRASTRUCTURE_OUTAGE")
    assert "storage was unavailable" in job.error_message
    assert job_credits(job.id) == JobCredits(held=3, captured=0, released=3)


def test_a_file_written_but_never_recorded_is_deleted_by_the_next_run(alice):
    job = new_job(alice, count=1)
    orphan = f"teams/{job.team_id}/jobs/{job.id}/image-1-deadbeef.png"
    path = Path(django_settings.MEDIA_ROOT) / orphan
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"half an image")  # a worker died between writing it and recording it
    GenerationJob.objects.filter(id=job.id).update(pending_file=orphan)
    assert job_run(job_id=job.id) is RunOutcome.SUCCEEDED
    assert not path.exists()
    job.refresh_from_db()
    assert job.pending_file == ""
    assert [p.name for p in path.parent.iterdir()] == [Path(GeneratedOutput.objects.get(job=job).file.name).name]


def test_an_unexpected_error_counts_against_the_job_and_three_fail_it(alice, settings):
    settings.JOB_POISON_CRASHES = 3
    job = new_job(alice)
    GenerationJob.objects.filter(id=job.id).update(params={"seed": "not a number"})  # breaks its run
    for expected in (1, 2):
        assert job_run(job_id=job.id) is RunOutcome.PAUSED
        job.refresh_from_db()
        # Its own error counts against it; it killed nothing, so it is no suspect.
        assert (job.status, job.crashes_alone, job.suspect_crashes) == ("queued", expected, 0)
        GenerationJob.objects.filter(id=job.id).update(run_after=None)
    assert job_run(job_id=job.id) is RunOutcome.PAUSED
    job.refresh_from_db()
    assert (job.status, job.error_code) == ("failed", "JOB_ERROR")
    assert job_credits(job.id) == JobCredits(held=3, captured=0, released=3)


def _died_alone(job: GenerationJob, last_death_seen: int) -> None:
    GenerationJob.objects.filter(id=job.id).update(
        status="running",
        lease_owner="gone",
        lease_worker="dead-worker",
        lease_expires_at=timezone.now() - timedelta(seconds=30),
        ran_alone=True,
        suspect_crashes=1,
        last_death_seen=last_death_seen,
    )


def test_a_death_while_alone_counts_only_if_no_other_worker_died_since_the_jobs_last_one(alice):
    job = new_job(alice)
    rescue_pass()  # creates the rescuer's row: no deaths seen yet
    _died_alone(job, last_death_seen=0)
    rescue_pass()  # death number 1 follows the job's last (0): it counts
    job.refresh_from_db()
    assert (job.crashes_alone, job.last_death_seen) == (1, 1)
    other = new_job(alice, prompt="someone else")
    GenerationJob.objects.filter(id=other.id).update(
        status="running", lease_owner="x", lease_worker="another-dead-worker",
        lease_expires_at=timezone.now() - timedelta(seconds=30),
    )  # fmt: skip
    rescue_pass()  # another worker died meanwhile (death number 2)
    _died_alone(job, last_death_seen=1)
    GenerationJob.objects.filter(id=job.id).update(crashes_alone=1)
    rescue_pass()  # death number 3: not right after the job's last, so it proves nothing
    job.refresh_from_db()
    assert (job.crashes_alone, job.last_death_seen, job.status) == (1, 3, "queued")


def test_a_suspect_runs_only_in_quarantine_alone_until_its_first_image(alice):
    suspect = new_job(alice, count=3, prompt="suspect")
    GenerationJob.objects.filter(id=suspect.id).update(suspect_crashes=1)
    # An ordinary worker does not take it: it waits for the quarantine worker.
    assert job_run(job_id=suspect.id) is RunOutcome.NOT_CLAIMED
    # The quarantine worker runs it alone until it delivers an image...
    assert job_run(job_id=suspect.id, alone=True) is RunOutcome.CLEARED
    suspect.refresh_from_db()
    assert (suspect.status, suspect.completed_outputs, suspect.suspect_crashes) == ("queued", 1, 0)
    assert suspect.attempts == 1
    # ...then the ordinary workers make the rest, and the quarantine worker takes it no more.
    assert job_run(job_id=suspect.id, alone=True) is RunOutcome.NOT_CLAIMED
    assert job_run(job_id=suspect.id) is RunOutcome.SUCCEEDED


def test_the_quarantine_worker_runs_one_suspect_at_a_time(alice, settings):
    settings.LOCAL_PROVIDER_LATENCY_MS = 1500
    first, second = new_job(alice, count=1, prompt="first"), new_job(alice, count=1, prompt="second")
    GenerationJob.objects.filter(id__in=[first.id, second.id]).update(suspect_crashes=1)
    thread, outcome = run_in_thread(first, alone=True)
    wait_until(lambda: GenerationJob.objects.filter(id=first.id, status="running").exists(), timeout=10)
    assert GenerationJob.objects.get(id=first.id).ran_alone
    assert job_run(job_id=second.id, alone=True) is RunOutcome.NOT_CLAIMED  # it waits for the first to end
    thread.join(timeout=20)
    assert outcome == [RunOutcome.SUCCEEDED]


def test_sigterm_hands_a_running_job_back_at_once_without_counting_the_run(alice, settings):
    settings.LOCAL_PROVIDER_LATENCY_MS = 5000
    job = new_job(alice, count=2)
    thread, outcome = run_in_thread(job)
    wait_until(lambda: GenerationJob.objects.filter(id=job.id, status="running").exists(), timeout=10)
    Lifeline.current().begin_shutdown()  # what the worker's SIGTERM handler does
    thread.join(timeout=5)
    assert outcome == [RunOutcome.HANDED_OVER]  # long before its 5 s image
    job.refresh_from_db()
    assert (job.status, job.lease_owner, job.attempts, job.suspect_crashes) == ("queued", "", 0, 0)
    assert job_run(job_id=job.id) is RunOutcome.NOT_CLAIMED  # a stopping worker takes nothing new


def test_a_bounded_call_returns_raises_times_out_or_is_interrupted():
    assert call_bounded(lambda: 42, timeout=1, what="quick") == 42
    with pytest.raises(ZeroDivisionError):
        call_bounded(lambda: 1 / 0, timeout=1, what="broken")
    gate = threading.Event()
    with pytest.raises(StepTimeout):
        call_bounded(lambda: gate.wait(10), timeout=0.2, what="hung")
    interrupt = threading.Event()
    interrupt.set()
    with pytest.raises(StepInterrupted):
        call_bounded(lambda: gate.wait(10), timeout=5, what="canceled", interrupt=interrupt)
    gate.set()


def test_a_provider_call_that_ignores_its_timeout_is_abandoned_and_retried_uncharged(alice, settings):
    settings.LOCAL_PROVIDER_HANG_WORD = "wedged"
    settings.LOCAL_PROVIDER_HANG_SECONDS = 30
    settings.PROVIDER_TIMEOUT_SECONDS = 1
    job = new_job(alice, count=1, prompt="a wedged call")
    assert job_run(job_id=job.id) is RunOutcome.SUCCEEDED  # about 3 s, not 30
    job.refresh_from_db()
    assert job.completed_outputs == 1
    assert job_credits(job.id) == JobCredits(held=1, captured=1, released=0)


def test_a_cancel_during_a_hung_provider_call_ends_the_job_within_a_second(alice, settings):
    settings.LOCAL_PROVIDER_HANG_WORD = "wedged"
    settings.LOCAL_PROVIDER_HANG_SECONDS = 30
    job = new_job(alice, count=2, prompt="another wedged call")
    thread, outcome = run_in_thread(job)
    wait_until(lambda: GenerationJob.objects.filter(id=job.id, status="running").exists(), timeout=10)
    GenerationJob.objects.filter(id=job.id).update(cancel_requested=True)
    thread.join(timeout=settings.JOB_CANCEL_POLL_SECONDS + 2)
    assert outcome == [RunOutcome.CANCELED]
    assert job_credits(job.id) == JobCredits(held=2, captured=0, released=2)


def test_a_job_its_thread_could_not_queue_again_is_settled_by_the_lifeline(alice):
    job = new_job(alice)
    lifeline = Lifeline.current()
    held = lifeline.claim(job_id=job.id)
    assert held is not None
    # The database went away just as the run stopped: the thread parks the job and returns.
    lifeline.park(held, Interruption.OUTAGE, "database")
    lifeline.release(held)
    assert not lifeline.idle  # still held: its lease is kept, its worker keeps beating
    wait_until(
        lambda: GenerationJob.objects.filter(id=job.id, status="queued", pauses=1).exists(),
        timeout=10,
        message="the lifeline to queue the parked job again",
    )
    wait_until(lambda: lifeline.idle, timeout=10, message="the lifeline to let go of it")
