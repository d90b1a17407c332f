"""Retries of several jobs of one chain at the same moment make one new job and hold credits once."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass

import pytest
from django.db import connection, transaction
from rest_framework.test import APIClient

from credits.audit import credits_audit
from credits.models import CreditAccount, LedgerEntry
from generation.models import ACTIVE_STATUSES, GenerationJob
from generation.services.retry import job_retry
from generation.services.submit import JobSpec, job_submit
from tests.helpers import IMAGES_IN_A_CHAIN as IMAGES
from tests.helpers import MADE_BY_FIRST_RETRY, MADE_BY_ORIGINAL, failed_chain, job_fail
from tests.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True)]

JOBS = "/api/v1/jobs"
RACES = 20
MISSING = IMAGES - len(MADE_BY_ORIGINAL) - len(MADE_BY_FIRST_RETRY)
OUTCOMES = {201: "created", 200: "returned"}


@dataclass
class Race:
    original: GenerationJob
    first_retry: GenerationJob
    status_codes: list[int]
    answered_ids: set[str]


def post_at_once(person, paths: list[str]) -> list:
    """POST every path from its own thread (own client, own connection), released together."""
    barrier = threading.Barrier(len(paths))
    responses: list = [None] * len(paths)

    def post(slot: int, path: str) -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {person.api_key}")
        client.raise_request_exception = False  # an unhandled error is the 500 a client would get
        try:
            barrier.wait(timeout=10)
            responses[slot] = client.post(path)
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(slot, path)) for slot, path in enumerate(paths)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive(), "a retry request did not answer within 30 s"
    return responses


def test_retrying_a_failed_job_and_its_failed_retry_at_once_starts_one_retry_paid_once(alice):
    races: list[Race] = []
    for number in range(RACES):
        original, first_retry = failed_chain(alice, f"race {number}")
        responses = post_at_once(alice, [f"{JOBS}/{original.id}/retry", f"{JOBS}/{first_retry.id}/retry"])
        races.append(
            Race(
                original=original,
                first_retry=first_retry,
                status_codes=sorted(response.status_code for response in responses),
                answered_ids={response.json().get("id") for response in responses},
            )
        )
    outcomes = Counter(OUTCOMES.get(code, "errors") for race in races for code in race.status_codes)
    print(
        f"[figure] retry race: {RACES} races, two requests each: created {outcomes['created']},"
        f" returned {outcomes['returned']}, errors {outcomes['errors']}"
    )

    for race in races:
        assert race.status_codes == [200, 201]  # one made it, the other was handed the same job
        new_jobs = list(GenerationJob.objects.filter(chain_root=race.original).exclude(id=race.first_retry.id))
        assert len(new_jobs) == 1
        retry = new_jobs[0]
        assert retry.status in ACTIVE_STATUSES
        assert race.answered_ids == {str(retry.id)}
        assert retry.retry_of_id == race.first_retry.id  # the end of the chain, which carries all four images
        holds = LedgerEntry.objects.filter(job=retry, kind=LedgerEntry.Kind.HOLD)
        assert [hold.held_delta for hold in holds] == [MISSING * retry.credits_per_output]
        assert sorted(retry.outputs.values_list("index", flat=True)) == MADE_BY_ORIGINAL + MADE_BY_FIRST_RETRY
    report = credits_audit()
    assert report.clean, report.account_problems + report.job_problems


def test_retrying_three_jobs_of_one_chain_at_once_while_one_retry_is_active_starts_nothing(alice):
    original, first_retry = failed_chain(alice, "active")
    active_retry, _ = job_retry(job=first_retry, user=alice.user)
    responses = post_at_once(alice, [f"{JOBS}/{job.id}/retry" for job in (original, first_retry, original)])
    assert [response.status_code for response in responses] == [200, 200, 200]
    assert {response.json()["id"] for response in responses} == {str(active_retry.id)}
    assert GenerationJob.objects.filter(chain_root=original).count() == 2


def test_a_retry_that_trips_the_one_active_retry_per_chain_constraint_answers_with_the_active_retry(alice):
    original, first_retry = failed_chain(alice, "lost link")
    active_retry, _ = job_retry(job=first_retry, user=alice.user)
    # Its link to the job it retried is gone (as when that job is deleted): the walk along the
    # chain misses it, and only the database's constraint stands between the chain and a second one.
    GenerationJob.objects.filter(id=active_retry.id).update(retry_of=None)
    response = alice.client.post(f"{JOBS}/{original.id}/retry")
    assert response.status_code == 200
    assert response.json()["id"] == str(active_retry.id)
    assert GenerationJob.objects.filter(chain_root=original).count() == 2
    assert LedgerEntry.objects.filter(account__team=alice.team, kind=LedgerEntry.Kind.HOLD).count() == 3


def test_a_retry_while_another_job_for_its_subject_is_active_is_409_and_starts_nothing(alice):
    spec = JobSpec(prompt="hero shot", count=2, subject_key="hero")
    failed = job_submit(team=alice.team, user=alice.user, spec=spec).job
    job_fail(job=failed)
    other = job_submit(team=alice.team, user=alice.user, spec=JobSpec(prompt="other", subject_key="hero")).job
    response = alice.client.post(f"{JOBS}/{failed.id}/retry")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "INVALID_JOB_STATUS"
    assert list(GenerationJob.objects.filter(subject_key="hero", status__in=ACTIVE_STATUSES)) == [other]
    assert not GenerationJob.objects.filter(chain_root=failed).exists()


def test_a_retry_that_postgresql_picks_as_a_deadlock_victim_runs_again_and_starts_the_retry(alice, caplog):
    original, first_retry = failed_chain(alice, "deadlock")
    backend: dict[str, int] = {}
    outcome: dict[str, object] = {}

    def retry() -> None:
        try:
            with connection.cursor() as cursor:
                # This session looks for the deadlock first, so it is the one PostgreSQL rolls back.
                cursor.execute("SET deadlock_timeout = '100ms'")
                cursor.execute("SELECT pg_backend_pid()")
                backend["pid"] = cursor.fetchone()[0]
            outcome["result"] = job_retry(job=first_retry, user=alice.user)
        except Exception as error:  # noqa: BLE001 - the assertion below names it
            outcome["error"] = error
        finally:
            connection.close()

    caplog.set_level(logging.WARNING, logger="generation.services.retry")
    thread = threading.Thread(target=retry)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL deadlock_timeout = '10s'")
        CreditAccount.objects.select_for_update().get(team=alice.team)
        thread.start()

        def retry_waits_for_us() -> bool:
            if "pid" not in backend:
                return False
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid() = ANY(pg_blocking_pids(%s))", [backend["pid"]])
                return cursor.fetchone()[0]

        wait_until(retry_waits_for_us, timeout=10, message="the retry to wait for the account")
        # The other order (account, then the chain's root) closes the cycle.
        GenerationJob.objects.select_for_update().get(id=original.id)
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    new_retry, created = outcome["result"]
    assert created and new_retry.retry_of_id == first_retry.id
    assert "lock conflict" in caplog.text  # the first attempt was the deadlock's victim
    assert LedgerEntry.objects.filter(job=new_retry, kind=LedgerEntry.Kind.HOLD).count() == 1
    assert GenerationJob.objects.filter(chain_root=original).count() == 2
