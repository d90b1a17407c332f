"""A worker killed with SIGKILL mid-job: the job resumes on a new worker and ends with exactly its images."""

from __future__ import annotations

import time

import pytest
from django.core.management import call_command

from credits.models import LedgerEntry
from credits.services import JobCredits, job_credits
from generation.models import GeneratedOutput, Look
from tests.conftest import wait_for_finish, wait_for_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


@pytest.fixture(scope="module")
def stack(make_stack):
    return make_stack(LOCAL_PROVIDER_LATENCY_MS="500")


def test_sigkilled_worker_job_resumes_at_first_missing_image_with_no_index_twice(stack, alice, capsys):
    job_id = alice.client.post("/api/v1/jobs", {"prompt": "crash test dummy", "count": 6}, format="json").json()["id"]
    wait_for_job(job_id, lambda job: job.completed_outputs >= 2)

    stack.worker.kill()
    killed_at = time.monotonic()
    made_before_kill = GeneratedOutput.objects.filter(job_id=job_id).count()
    stack.restart_worker()

    job = wait_for_finish(job_id, timeout=60)
    recovery_seconds = time.monotonic() - killed_at
    with capsys.disabled():
        print(
            f"\n[figure] SIGKILL to job finished: {recovery_seconds:.1f}s "
            f"({made_before_kill} of 6 made before the kill)"
        )

    assert job.status == "succeeded"
    assert job.attempts == 2
    indexes = list(GeneratedOutput.objects.filter(job_id=job_id).order_by("index").values_list("index", flat=True))
    assert indexes == [0, 1, 2, 3, 4, 5]
    assert job.completed_outputs == 6
    assert Look.objects.filter(job_id=job_id).count() == 6
    # The images made before the kill were kept, not made again.
    assert made_before_kill >= 2
    # ...and no image was charged twice: one capture per index, and the hold is settled.
    captures = list(LedgerEntry.objects.filter(job_id=job_id, kind="capture").values_list("output_index", flat=True))
    assert sorted(captures) == [0, 1, 2, 3, 4, 5]
    assert job_credits(job_id) == JobCredits(held=6, captured=6, released=0)
    call_command("credits_audit")
