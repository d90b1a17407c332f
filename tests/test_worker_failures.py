"""Provider trouble on a real worker: flaky calls, a refusal part-way, and a retry of what is missing."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from generation.models import GeneratedOutput, Look
from tests.conftest import wait_for_finish

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


@pytest.fixture(scope="module")
def stack(make_stack):
    return make_stack(LOCAL_PROVIDER_LATENCY_MS="100", LOCAL_PROVIDER_TRANSIENT_FAILURE_RATE="0.3")


def test_with_30_percent_transient_failures_every_job_finishes_with_all_images(stack, alice):
    ids = [
        alice.client.post("/api/v1/jobs", {"prompt": f"flaky {n}", "count": 4}, format="json").json()["id"]
        for n in range(6)
    ]
    jobs = [wait_for_finish(job_id, timeout=90) for job_id in ids]
    assert [job.status for job in jobs] == ["succeeded"] * 6
    for job in jobs:
        indexes = list(GeneratedOutput.objects.filter(job=job).order_by("index").values_list("index", flat=True))
        assert indexes == [0, 1, 2, 3]
    assert "simulating an outage" in stack.worker.log()  # the failures really happened, and were retried


def test_permanent_failure_ends_the_job_with_its_code_and_retry_makes_only_the_missing_images(stack, alice):
    stack.worker.stop()
    stack.env["LOCAL_PROVIDER_REFUSE_FROM_IMAGE"] = "3"  # the provider refuses images 3 and 4
    stack.env["LOCAL_PROVIDER_TRANSIENT_FAILURE_RATE"] = "0"
    stack.restart_worker()
    job_id = alice.client.post("/api/v1/jobs", {"prompt": "partly refused", "count": 4}, format="json").json()["id"]
    failed = wait_for_finish(job_id)
    body = alice.client.get(f"/api/v1/jobs/{job_id}").json()
    assert body["status"] == "failed"
    assert body["error"] == {"code": "CONTENT_POLICY", "message": "Image 3 was refused by the content policy."}
    assert [output["index"] for output in body["outputs"]] == [1, 2]
    assert Look.objects.filter(job=failed).count() == 2  # delivered images are kept in the collection
    # Two images delivered and paid; the two refused are given back.
    assert body["credits"] == {"per_output": 1, "held": 4, "captured": 2, "released": 2}

    stack.worker.stop()
    stack.env["LOCAL_PROVIDER_REFUSE_FROM_IMAGE"] = "0"  # the provider recovers
    stack.restart_worker()
    response = alice.client.post(f"/api/v1/jobs/{job_id}/retry")
    assert response.status_code == 201
    retry_body = response.json()
    assert retry_body["retry_of"] == job_id
    assert retry_body["progress"] == {"completed": 2, "total": 4, "current_output_percent": None}
    assert retry_body["credits"]["held"] == 2  # only the two missing images are held
    retry = wait_for_finish(retry_body["id"])
    assert retry.status == "succeeded"
    retry_credits = alice.client.get(f"/api/v1/jobs/{retry.id}").json()["credits"]
    assert retry_credits == {"per_output": 1, "held": 2, "captured": 2, "released": 0}
    call_command("credits_audit")

    outputs = {o.index: o for o in GeneratedOutput.objects.filter(job=retry)}
    assert sorted(outputs) == [0, 1, 2, 3]
    originals = {o.index: o for o in GeneratedOutput.objects.filter(job_id=job_id)}
    # Images 1-2 are the old job's files, carried over; only images 3-4 were made by the retry.
    assert [outputs[i].carried_from_id for i in (0, 1)] == [originals[0].id, originals[1].id]
    assert [outputs[i].file.name for i in (0, 1)] == [originals[0].file.name, originals[1].file.name]
    assert [outputs[i].carried_from_id for i in (2, 3)] == [None, None]
    # The collection holds each image once: two from the failed job, two from the retry.
    assert Look.objects.filter(team=alice.team).count() == 4
    # A second retry of the same job returns the retry already made instead of paying twice.
    again = alice.client.post(f"/api/v1/jobs/{job_id}/retry")
    assert again.status_code == 200
    assert again.json()["id"] == retry_body["id"]
