"""The fair scheduler on a real worker of many threads: teams take turns, a team's cap holds,
and the broker carries wake-ups, not one message per wait (generation/services/scheduler.py)."""

from __future__ import annotations

import contextlib
from datetime import datetime

import pytest
import redis
from django.conf import settings

from accounts.models import Team
from generation.errors import InvalidJobStatus
from generation.models import GenerationJob, WorkerHeartbeat
from generation.services.lifecycle import job_cancel
from generation.services.rescue import RESCUER_ROW
from generation.services.submit import JobSpec, job_submit
from tests.conftest import Person, wait_for_finish
from tests.processes import start_worker, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

THREADS = 8


@pytest.fixture(scope="module")
def stack(make_stack):
    return make_stack(LOCAL_PROVIDER_LATENCY_MS="500")


def submit(person: Person, prompt: str) -> GenerationJob:
    return job_submit(team=person.team, user=person.user, spec=JobSpec(prompt=prompt, count=1)).job


def most_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    """The largest number of the intervals that overlap at one moment."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


def test_two_teams_take_turns_and_each_teams_cap_holds_on_a_worker_of_many_threads(stack, alice, charlie):
    Team.objects.filter(id__in=[alice.team.id, charlie.team.id]).update(quota_running_jobs=2)
    stack.worker.stop()  # queue everything first, so the order is the scheduler's alone
    flood = [submit(alice, f"alice {n}") for n in range(6)]
    others = [submit(charlie, f"charlie {n}") for n in range(3)]
    stack.worker = start_worker(stack.env, stack.log_dir, concurrency=THREADS)

    jobs = [wait_for_finish(job.id, timeout=60) for job in flood + others]

    assert {job.status for job in jobs} == {"succeeded"}
    started = sorted(jobs, key=lambda job: job.started_at)
    teams = ["alice" if job.team_id == alice.team.id else "charlie" for job in started]
    # Alice's jobs are older, so her team goes first; then the teams alternate while both can run.
    assert teams[:4] == ["alice", "charlie", "alice", "charlie"]
    # Charlie's three jobs do not wait behind Alice's flood: all start before Alice's fifth.
    alice_starts = [job.started_at for job in jobs[:6]]
    assert max(job.started_at for job in jobs[6:]) < alice_starts[4]
    # Within a team jobs keep their order.
    assert alice_starts == sorted(alice_starts)
    # Eight threads, but never more than two of a team's jobs at once (and the cap is used).
    for team_jobs in (jobs[:6], jobs[6:]):
        assert most_at_once([(job.started_at, job.finished_at) for job in team_jobs]) == 2


def test_the_broker_holds_no_more_messages_than_queued_jobs_while_200_jobs_wait(stack, alice):
    Team.objects.filter(id=alice.team.id).update(quota_running_jobs=2)
    broker = redis.Redis.from_url(stack.env["CELERY_BROKER_URL"])

    def messages() -> int:
        """Messages of the jobs queue: waiting in the list, or delivered and not yet acknowledged."""
        waiting = sum(broker.llen(key) for key in broker.scan_iter(match="jobs*") if broker.type(key) == b"list")
        return waiting + broker.hlen("unacked")

    jobs = [submit(alice, f"waiting {n}") for n in range(200)]
    rescuer_passes: list[datetime] = []
    samples: list[int] = []

    def rescuer_ran_passes_after_the_window() -> bool:
        """Sample the broker until the rescuer has made five passes after the jobs waited longer
        than the re-dispatch window (each pass would once have published them all again)."""
        samples.append(messages())
        beat_at = WorkerHeartbeat.objects.get(name=RESCUER_ROW).beat_at
        waited = (beat_at - jobs[-1].created_at).total_seconds()
        if waited > settings.JOB_REDISPATCH_AFTER_SECONDS and beat_at not in rescuer_passes:
            rescuer_passes.append(beat_at)
        return len(rescuer_passes) >= 5

    wait_until(rescuer_ran_passes_after_the_window, timeout=60, interval=0.1, message="five rescuer passes")

    still_queued = GenerationJob.objects.filter(team=alice.team, status="queued").count()
    assert still_queued >= 150  # they really waited, two at a time
    assert max(samples) <= len(jobs) + THREADS
    assert samples[-1] <= THREADS  # the wake-ups were consumed; no re-published backlog
    print(f"[figure] broker messages while 200 jobs waited: at most {max(samples)}, {samples[-1]} at the end")
    for job in GenerationJob.objects.filter(team=alice.team, status__in=["queued", "running"]):
        with contextlib.suppress(InvalidJobStatus):  # a running one may finish meanwhile
            job_cancel(job=job)

    # The stack goes quiet before the test's tables are emptied: a worker still taking 200
    # wake-ups while they are truncated can deadlock with the truncation.
    def settled() -> bool:
        active = GenerationJob.objects.filter(team=alice.team, status__in=["queued", "running"]).exists()
        return not active and messages() == 0

    wait_until(settled, timeout=60, interval=0.2, message="the canceled jobs to end and their wake-ups to be taken")
