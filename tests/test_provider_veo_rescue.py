"""A worker SIGKILLed while a Veo operation runs: the rescued job polls the same operation to its
end instead of paying for a second one."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from credits.models import LedgerEntry
from credits.services import JobCredits, job_credits
from generation.models import GeneratedOutput
from tests.conftest import wait_for_finish, wait_for_job
from tests.fakes.google_server import FakeGoogle, tiny_mp4
from tests.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

VERTEX_KEY = "test-vertex-key"


@pytest.fixture(scope="module")
def google():
    fake = FakeGoogle(polls_before_done=0).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def stack(make_stack, google):
    return make_stack(
        VERTEX_API_KEY=VERTEX_KEY,
        GOOGLE_VERTEX_BASE_URL=google.url,
        PROVIDER_POLL_SECONDS="0.2",
        PROVIDER_TIMEOUT_SECONDS="3",
    )


def test_worker_killed_during_a_veo_operation_resumes_polling_it_and_starts_no_second_one(
    stack, google, alice, settings
):
    settings.VERTEX_API_KEY = VERTEX_KEY
    google.hold_operations()  # the clip is not ready until the test says so
    response = alice.client.post(
        "/api/v1/jobs",
        {
            "prompt": "a paper boat on a stream",
            "kind": "video",
            "provider": "vertex",
            "model": "veo-3.0-generate-001",
            "params": {"aspect_ratio": "16:9", "duration_seconds": 4},
        },
        format="json",
    )
    assert response.status_code == 202, response.json()
    job_id = response.json()["id"]

    # The operation's name is on the job, and the worker is waiting on it, when it dies.
    running = wait_for_job(job_id, lambda job: bool(job.provider_operation.get("name")))
    [name] = google.operations
    assert running.provider_operation["name"] == name
    assert running.provider_operation["index"] == 0
    wait_until(lambda: google.received(":fetchPredictOperation"), timeout=10, message="a first poll")
    stack.worker.kill()
    polls_before_kill = len(google.received(":fetchPredictOperation"))

    stack.restart_worker()
    # The rescuer gives the job back to the queue once its lease expires; the new worker resumes
    # polling the operation it finds on the job. Only then is the clip ready.
    wait_until(
        lambda: len(google.received(":fetchPredictOperation")) > polls_before_kill,
        timeout=30,
        message="the new worker to poll the operation",
    )
    google.release_operations()
    job = wait_for_finish(job_id)

    assert job.status == "succeeded", job.error_message
    assert job.attempts == 2
    assert google.operations_started == 1
    assert {poll.json()["operationName"] for poll in google.received(":fetchPredictOperation")} == {name}
    [output] = GeneratedOutput.objects.filter(job_id=job_id)
    assert output.mime == "video/mp4"
    assert output.file.read() == tiny_mp4(64, 36)
    assert output.provider_report["operation"] == name
    assert job.provider_operation == {}  # forgotten once its clip was recorded
    captures = list(LedgerEntry.objects.filter(job_id=job_id, kind="capture").values_list("output_index", flat=True))
    assert captures == [0]
    assert job_credits(job_id) == JobCredits(held=32, captured=32, released=0)
    call_command("credits_audit")
