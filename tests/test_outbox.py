"""The outbox (`JobEvent`): every change someone may watch is written in the transaction of the
change, once, and fans out to the team's webhook endpoints in that transaction too."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.db.models import Q

from generation.models import GenerationJob, JobEvent
from generation.services.events import event_data, job_event_record
from generation.services.lifecycle import job_cancel, job_finish
from generation.services.pipeline import RunOutcome, job_run
from generation.services.retry import job_retry
from generation.services.submit import JobSpec, job_submit
from tests.test_pipeline import claim, let_go, record
from webhooks.models import WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast_provider(settings):
    settings.LOCAL_PROVIDER_LATENCY_MS = 0
    settings.LOCAL_PROVIDER_TRANSIENT_FAILURE_RATE = 0.0


def new_job(person, count: int = 3) -> GenerationJob:
    return job_submit(team=person.team, user=person.user, spec=JobSpec(prompt="a paper boat", count=count)).job


def events_of(job: GenerationJob) -> list[tuple[str, int | None, dict]]:
    return [(event.type, event.output_index, event.data) for event in JobEvent.objects.filter(job=job).order_by("id")]


def test_a_job_announces_its_start_each_output_and_its_end_in_order(alice):
    job = new_job(alice, count=3)
    assert job_run(job_id=job.id) is RunOutcome.SUCCEEDED

    events = events_of(job)
    assert [(kind, index) for kind, index, _ in events] == [
        ("job.started", None),
        ("job.output", 0),
        ("job.output", 1),
        ("job.output", 2),
        ("job.succeeded", None),
    ]
    assert [data["progress"] for _, _, data in events] == [
        {"completed": 0, "total": 3},
        {"completed": 1, "total": 3},
        {"completed": 2, "total": 3},
        {"completed": 3, "total": 3},
        {"completed": 3, "total": 3},
    ]
    assert events[-1][2] == {"status": "succeeded", "progress": {"completed": 3, "total": 3}, "error": None}


def test_a_queued_job_canceled_announces_only_its_end(alice):
    job = new_job(alice)
    job_cancel(job=job)
    assert events_of(job) == [
        ("job.canceled", None, {"status": "canceled", "progress": {"completed": 0, "total": 3}, "error": None})
    ]


def test_a_rescued_rerun_is_not_a_second_start(alice):
    job = new_job(alice, count=2)
    held = claim(job)
    assert record(job, 0, held)
    let_go(job, held)
    GenerationJob.objects.filter(id=job.id).update(status=GenerationJob.Status.QUEUED, **{"lease_owner": ""})

    assert job_run(job_id=job.id) is RunOutcome.SUCCEEDED
    kinds = [kind for kind, _, _ in events_of(job)]
    assert kinds == ["job.started", "job.output", "job.output", "job.succeeded"]


def test_an_output_whose_record_loses_the_lease_is_not_announced(alice):
    job = new_job(alice, count=2)
    held = claim(job)
    GenerationJob.objects.filter(id=job.id).update(lease_owner="someone-else")

    try:
        assert not record(job, 0, held)
    finally:
        let_go(job, held)  # this process's lifeline holds no job after the test
    assert [kind for kind, _, _ in events_of(job)] == ["job.started"]


def test_a_finish_whose_fence_fails_announces_nothing(alice):
    job = new_job(alice)
    assert not job_finish(job_id=job.id, fence=Q(lease_owner="nobody"), status=GenerationJob.Status.FAILED)
    assert events_of(job) == []


def test_a_failed_job_announces_its_error_and_its_retry_has_events_of_its_own(alice):
    job = new_job(alice, count=2)
    job_finish(
        job_id=job.id,
        fence=Q(status=GenerationJob.Status.QUEUED),
        status=GenerationJob.Status.FAILED,
        error_code="CONTENT_POLICY",
        error_message="The provider refused the prompt.",
    )
    assert events_of(job)[-1][2]["error"] == {"code": "CONTENT_POLICY", "message": "The provider refused the prompt."}

    retry, _ = job_retry(job=GenerationJob.objects.get(id=job.id), user=alice.user)
    assert job_run(job_id=retry.id) is RunOutcome.SUCCEEDED
    assert [kind for kind, _, _ in events_of(retry)][0] == "job.started"
    assert [kind for kind, _, _ in events_of(job)] == ["job.failed"]


def test_each_event_gets_one_delivery_per_endpoint_of_the_team_that_wants_it(alice, charlie):
    everything = WebhookEndpoint.objects.create(team=alice.team, url="http://127.0.0.1:9/all", secret="whsec_x")
    ends_only = WebhookEndpoint.objects.create(
        team=alice.team, url="http://127.0.0.1:9/ends", secret="whsec_y", events=["job.succeeded", "job.failed"]
    )
    WebhookEndpoint.objects.create(team=alice.team, url="http://127.0.0.1:9/off", secret="whsec_z", enabled=False)
    outsider = WebhookEndpoint.objects.create(team=charlie.team, url="http://127.0.0.1:9/other", secret="whsec_o")

    job = new_job(alice, count=2)
    assert job_run(job_id=job.id) is RunOutcome.SUCCEEDED

    delivered_to = {
        endpoint.url: sorted(WebhookDelivery.objects.filter(endpoint=endpoint).values_list("event__type", flat=True))
        for endpoint in (everything, ends_only, outsider)
    }
    assert delivered_to == {
        everything.url: ["job.output", "job.output", "job.started", "job.succeeded"],
        ends_only.url: ["job.succeeded"],
        outsider.url: [],
    }
    assert WebhookDelivery.objects.filter(endpoint__enabled=False).count() == 0
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {WebhookDelivery.Status.PENDING}


def test_a_database_gone_right_after_the_commit_leaves_the_delivery_to_the_sweeper(alice):
    endpoint = WebhookEndpoint.objects.create(team=alice.team, url="http://127.0.0.1:9/all", secret="whsec_x")
    job = new_job(alice)
    after_ours: list[str] = []
    try:
        with transaction.atomic():
            job_event_record(
                job_id=job.id,
                team_id=job.team_id,
                type=JobEvent.Type.STARTED,
                data=event_data(status="running", completed=0, total=3),
            )
            transaction.on_commit(lambda: after_ours.append("ran"))
            # From the commit on, every statement of this connection fails, as with a database
            # that went away: the announcement's write (dispatched_at) cannot be made.
            with connection.cursor() as cursor:
                cursor.execute("SET default_transaction_read_only = on")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET default_transaction_read_only = off")

    # The change stands, nothing was raised into the code that made it, the callbacks after
    # the announcement ran, and the sweeper finds the delivery unpublished.
    assert after_ours == ["ran"]
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert (delivery.status, delivery.dispatched_at) == (WebhookDelivery.Status.PENDING, None)
