"""Workers that die: SIGKILL at random moments, a worker gone for good, SIGTERM on a deploy, a poison job."""

from __future__ import annotations

import random
import signal
import time

import pytest

from credits.services import JobCredits, job_credits
from generation.models import GenerationJob
from tests.chaos.conftest import api, assert_books_clean, report, submit_jobs, wait_all_finished
from tests.processes import start_beat, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.chaos]


def test_20_sigkills_at_random_moments_lose_no_job_and_charge_nothing_twice(make_chaos_stack, team_of):
    stack = make_chaos_stack(LOCAL_PROVIDER_LATENCY_MS="1000")
    person = team_of("kills")
    job_ids = submit_jobs(stack, person, count=10, images=8)
    rng = random.Random(7)
    kills_after_reclaim = 0
    started = time.monotonic()
    for kill in range(20):
        # Some kills come within a second or two of the jobs being claimed again.
        claims_before = sum(GenerationJob.objects.filter(id__in=job_ids).values_list("attempts", flat=True))
        if kill % 2:
            try:
                wait_until(
                    lambda b=claims_before: (
                        sum(GenerationJob.objects.filter(id__in=job_ids).values_list("attempts", flat=True)) > b
                    ),
                    timeout=15,
                    interval=0.1,
                )
                kills_after_reclaim += 1
            except AssertionError:
                pass  # everything may be finished already
        time.sleep(rng.uniform(0.2, 2.5))
        stack.workers[0].kill()
        stack.replace_worker(0)
    last_restart = time.monotonic()
    jobs = wait_all_finished(job_ids, timeout=120)
    done_after_last_restart = time.monotonic() - last_restart
    books = assert_books_clean(job_ids)
    statuses = [job.status for job in jobs.values()]
    report(
        "20 SIGKILLs of the worker during 10 jobs x 8 images (1 s per image)",
        kills=20,
        kills_within_seconds_of_a_reclaim=kills_after_reclaim,
        statuses={status: statuses.count(status) for status in set(statuses)},
        runs_per_job=sorted(job.attempts for job in jobs.values()),
        images=books["outputs"],
        doubled_indexes=books["doubled_indexes"],
        credits_audit="clean",
        kill_phase_seconds=f"{last_restart - started:.1f}",
        all_done_after_last_restart_seconds=f"{done_after_last_restart:.1f}",
    )
    assert statuses == ["succeeded"] * 10
    assert books["outputs"] == 80
    assert done_after_last_restart < 60
    for job_id in job_ids:
        assert job_credits(job_id) == JobCredits(held=8, captured=8, released=0)


def test_a_worker_killed_for_good_during_a_backlog_is_rescued_on_time_by_the_other(make_chaos_stack, team_of):
    stack = make_chaos_stack(workers=2, concurrency=4, LOCAL_PROVIDER_LATENCY_MS="500")
    stack.extra.append(start_beat(stack.env, stack.log_dir))  # a second beat, started by mistake
    person = team_of("backlog")
    job_ids = submit_jobs(stack, person, count=30, images=3)
    wait_until(lambda: GenerationJob.objects.filter(id__in=job_ids, status="running").count() >= 6, timeout=30)
    victims = list(
        GenerationJob.objects.filter(
            id__in=job_ids, status="running", lease_worker__contains=f":{stack.workers[0].pid}:"
        ).values_list("id", flat=True)
    )
    stack.workers[0].kill()
    killed_at = time.monotonic()
    requeued_after: dict[str, float] = {}

    def all_victims_moved_on() -> bool:
        for job in GenerationJob.objects.filter(id__in=victims):
            if str(job.id) not in requeued_after and not job.lease_worker.count(f":{stack.workers[0].pid}:"):
                requeued_after[str(job.id)] = time.monotonic() - killed_at
        return len(requeued_after) == len(victims)

    wait_until(all_victims_moved_on, timeout=30, interval=0.1, message="the dead worker's jobs to be rescued")
    jobs = wait_all_finished(job_ids, timeout=120)
    books = assert_books_clean(job_ids)
    rescuer_log = stack.rescuer.log()
    passes_run, passes_skipped = rescuer_log.count("'ran': True"), rescuer_log.count("'ran': False")
    report(
        "two workers (4 threads each), one SIGKILLed for good during a backlog of 30 jobs x 3 images; two beats",
        rescue_passes=f"{passes_run} run, {passes_skipped} skipped (the second beat's, within the interval)",
        jobs_on_the_dead_worker=len(victims),
        rescued_after_seconds=f"max {max(requeued_after.values()):.1f}, min {min(requeued_after.values()):.1f} "
        f"(lease 3 s + settle 2 s + rescue interval 1 s)",
        statuses=sorted({job.status for job in jobs.values()}),
        images=books["outputs"],
    )
    assert victims
    assert all(job.status == "succeeded" for job in jobs.values())
    assert books["outputs"] == 90
    assert max(requeued_after.values()) < 12


def test_sigterm_hands_running_jobs_over_at_once_without_losing_an_attempt(make_chaos_stack, team_of):
    stack = make_chaos_stack(LOCAL_PROVIDER_LATENCY_MS="3000")
    person = team_of("deploy")
    job_ids = submit_jobs(stack, person, count=4, images=3)
    wait_until(lambda: GenerationJob.objects.filter(id__in=job_ids, status="running").count() == 4, timeout=30)
    old_pid = stack.workers[0].pid
    stack.add_worker()  # the new release's worker is up
    stack.workers[0].signal(signal.SIGTERM)
    term_at = time.monotonic()
    # A 5 s grace period, then the platform kills what is left.
    try:
        wait_until(lambda: not stack.workers[0].running, timeout=5, interval=0.1)
        exited_after = f"{time.monotonic() - term_at:.1f}"
    except AssertionError:
        stack.workers[0].kill()
        exited_after = "did not exit within 5 s: SIGKILLed"

    def continued_elsewhere() -> bool:
        return all(
            job.status == "succeeded" or (job.status == "running" and f":{old_pid}:" not in job.lease_worker)
            for job in GenerationJob.objects.filter(id__in=job_ids)
        )

    wait_until(continued_elsewhere, timeout=15, interval=0.1, message="the jobs to continue on the new worker")
    continued_after = time.monotonic() - term_at
    jobs = wait_all_finished(job_ids, timeout=60)
    books = assert_books_clean(job_ids)
    report(
        "SIGTERM with a 5 s grace period during 3 s images (4 jobs x 3 images)",
        old_worker_exited_after_seconds=exited_after,
        all_jobs_running_on_the_new_worker_after_seconds=f"{continued_after:.1f}",
        runs_counted=[job.attempts for job in jobs.values()],
        suspect_crashes=[job.suspect_crashes for job in jobs.values()],
        images=books["outputs"],
    )
    assert all(job.status == "succeeded" for job in jobs.values())
    assert continued_after < 6
    # The handed-over run did not count: one run each, on the new worker; nothing suspected.
    assert all(job.attempts == 1 and job.crashes_alone == 0 for job in jobs.values())


def test_a_job_that_kills_its_worker_every_time_is_failed_as_poison_and_spares_the_others(make_chaos_stack, team_of):
    stack = make_chaos_stack(LOCAL_PROVIDER_LATENCY_MS="1000", LOCAL_PROVIDER_CRASH_WORD="segfault")
    victim, bystander = team_of("victim"), team_of("bystander")
    poison = api(stack, victim, "POST", "/jobs", json={"prompt": "a segfault pattern", "count": 2}).json()["id"]
    others = submit_jobs(stack, bystander, count=10, images=4)
    deaths = 0
    started = time.monotonic()
    while not GenerationJob.objects.get(id=poison).is_finished and time.monotonic() - started < 120:
        deaths += stack.restart_dead_workers()  # as a process supervisor would
        time.sleep(0.2)
    poisoned = GenerationJob.objects.get(id=poison)
    jobs = wait_all_finished(others, timeout=90)
    books = assert_books_clean([*others, poison])
    report(
        "a job that kills its worker on every run, beside another team's 10 jobs x 4 images on the same worker",
        poison_status=f"{poisoned.status} {poisoned.error_code}",
        poison_runs=poisoned.attempts,
        worker_deaths=deaths,
        poison_credits=job_credits(poison),
        bystanders=sorted({job.status for job in jobs.values()}),
        bystander_images=books["outputs"],
        seconds_to_convict=f"{time.monotonic() - started:.1f}",
    )
    assert (poisoned.status, poisoned.error_code) == ("failed", "POISON_JOB")
    # Its first run (in company) + JOB_POISON_CRASHES runs alone in the quarantine worker.
    assert poisoned.attempts <= 1 + 3
    assert job_credits(poison) == JobCredits(held=2, captured=0, released=2)
    assert all(job.status == "succeeded" for job in jobs.values())
