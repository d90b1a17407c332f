"""The hot paths stay lean: the status poll (API and studio panel), the job list and the submit take
a few queries whatever the number of images, jobs or references; the API's poll answers 304 to its
ETag while nothing shown has changed; a key is one lookup; the rate limits' history stays small.
(How fast they are is measured in bench/, not asserted here.)"""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework import serializers
from rest_framework.test import APIRequestFactory

from accounts.models import ApiKey
from generation.api.serializers import OutputSerializer
from generation.models import GeneratedOutput, GenerationJob, JobReference, StudioTab
from generation.selectors import job_outputs_of, job_queryset_for_team
from generation.services.submit import JobSpec, job_submit
from tests.factories import InputAssetFactory
from tests.helpers import job_deliver, signed_in

pytestmark = pytest.mark.django_db

JOBS = "/api/v1/jobs"
POLL_QUERY_LIMIT = 4  # issue 10: at most four queries per poll, whatever the image count


def key_used(person) -> None:  # type: ignore[no-untyped-def]
    """A first request: it notes the key's last use, which later ones within a minute do not."""
    assert person.client.get(JOBS).status_code == 200


def queries_of(request) -> tuple[int, object]:  # type: ignore[no-untyped-def]
    with CaptureQueriesContext(connection) as queries:
        response = request()
    return len(queries), response


def submitted(person, count: int) -> GenerationJob:  # type: ignore[no-untyped-def]
    return job_submit(team=person.team, user=person.user, spec=JobSpec(prompt="poll me", count=count)).job


def running_with_images(person, count: int) -> GenerationJob:  # type: ignore[no-untyped-def]
    job = submitted(person, count)
    GenerationJob.objects.filter(id=job.id).update(status="running", lease_owner="w", started_at=timezone.now())
    job_deliver(job=job, indexes=range(count))
    return job


def with_references(person, job: GenerationJob, count: int) -> None:  # type: ignore[no-untyped-def]
    for index in range(count):
        asset = InputAssetFactory(team=person.team)
        role = JobReference.Role.SKETCH if index == 0 else JobReference.Role.REFERENCE
        JobReference.objects.create(job=job, asset=asset, weight=0.25, role=role)


def test_the_status_poll_takes_the_same_few_queries_for_a_1_or_a_10_image_job(alice):
    one, ten = running_with_images(alice, 1), running_with_images(alice, 10)
    key_used(alice)
    one_queries, one_answer = queries_of(lambda: alice.client.get(f"{JOBS}/{one.id}"))
    ten_queries, ten_answer = queries_of(lambda: alice.client.get(f"{JOBS}/{ten.id}"))
    assert one_answer.status_code == ten_answer.status_code == 200
    assert [output["index"] for output in ten_answer.json()["outputs"]] == list(range(1, 11))
    assert ten_answer.json()["credits"]["captured"] == 10 * ten.credits_per_output
    assert one_queries == ten_queries <= POLL_QUERY_LIMIT


def test_a_queued_job_with_images_and_references_is_polled_in_at_most_4_queries(alice, charlie):
    submitted(charlie, 1)  # another team's job: the fair order counts it
    job = submitted(alice, 10)
    with_references(alice, job, 3)
    job_deliver(job=job, indexes=range(4))  # a job queued again after an outage keeps its images
    key_used(alice)
    count, answer = queries_of(lambda: alice.client.get(f"{JOBS}/{job.id}"))
    body = answer.json()
    assert (body["status"], body["progress"]["completed"], body["queue_position"]) == ("queued", 4, 2)
    assert len(body["outputs"]) == 4
    assert len(body["inputs"]["references"]) == 2 and body["inputs"]["sketch"]["weight"] == 0.25
    assert count <= POLL_QUERY_LIMIT


def test_the_poll_answers_304_to_its_etag_until_something_shown_changes(alice):
    job = submitted(alice, 3)
    GenerationJob.objects.filter(id=job.id).update(status="running", lease_owner="w", started_at=timezone.now())
    job_deliver(job=job, indexes=[0, 1])
    first = alice.client.get(f"{JOBS}/{job.id}")
    etag = first["ETag"]
    assert etag.startswith('"') and first["Cache-Control"] == "private, no-store"

    # A heartbeat and a lease renewal change nothing the answer shows.
    GenerationJob.objects.filter(id=job.id).update(heartbeat_at=timezone.now(), lease_expires_at=timezone.now())
    count, unchanged = queries_of(lambda: alice.client.get(f"{JOBS}/{job.id}", headers={"If-None-Match": etag}))
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged["ETag"] == etag
    assert unchanged["Cache-Control"] == "private, no-store"
    assert count <= 2  # the key, and the job's row

    job_deliver(job=job, indexes=[2])
    changed = alice.client.get(f"{JOBS}/{job.id}", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.json()["progress"]["completed"] == 3
    assert changed["ETag"] != etag


def test_a_queued_jobs_etag_changes_when_its_place_in_the_queue_does(alice):
    ahead, job = submitted(alice, 1), submitted(alice, 1)
    first = alice.client.get(f"{JOBS}/{job.id}")
    assert first.json()["queue_position"] == 2
    alice.client.post(f"{JOBS}/{ahead.id}/cancel")
    moved = alice.client.get(f"{JOBS}/{job.id}", headers={"If-None-Match": first["ETag"]})
    assert moved.status_code == 200
    assert moved.json()["queue_position"] == 1


def test_another_teams_job_is_404_with_an_etag_too(alice, charlie):
    job = running_with_images(alice, 1)
    etag = alice.client.get(f"{JOBS}/{job.id}")["ETag"]
    assert charlie.client.get(f"{JOBS}/{job.id}", headers={"If-None-Match": etag}).status_code == 404


def test_the_job_list_takes_the_same_queries_whatever_the_images_and_references(alice):
    running_with_images(alice, 1)
    key_used(alice)
    few, listing = queries_of(lambda: alice.client.get(JOBS))
    assert listing.json()["count"] == 1
    for _ in range(3):
        job = running_with_images(alice, 10)
        with_references(alice, job, 2)
    submitted(alice, 10)  # a queued one: the queue is read once for the page
    many, listing = queries_of(lambda: alice.client.get(JOBS))
    assert listing.json()["count"] == 5
    assert sum(len(job["outputs"]) for job in listing.json()["results"]) == 31
    assert many <= few + 1  # + the queue, read once now that a job waits


def test_a_submit_takes_the_same_queries_for_1_or_10_images_and_with_many_jobs_queued(alice):
    def submit(count: int):  # type: ignore[no-untyped-def]
        return queries_of(lambda: alice.client.post(JOBS, {"prompt": "gold tips", "count": count}, format="json"))

    key_used(alice)
    one, first = submit(1)
    for _ in range(20):
        submitted(alice, 10)
    ten, last = submit(10)
    assert first.status_code == last.status_code == 202
    assert last.json()["queue_position"] == 22
    assert one == ten


def test_the_studio_panel_poll_is_at_most_4_queries_for_a_queued_job_with_images(alice):
    client = signed_in(alice)
    tab = StudioTab.objects.get(id=int(client.get("/studio/")["Location"].rstrip("/").rsplit("/", 1)[1]))
    job = submitted(alice, 10)
    GenerationJob.objects.filter(id=job.id).update(tab=tab)
    job_deliver(job=job, indexes=range(6))
    url = f"/studio/{tab.id}/progress/"
    count, panel = queries_of(lambda: client.get(url))
    page = panel.content.decode()
    assert "6 of 10" in page and "Position 1 in the queue" in page
    assert page.count('data-testid="thumb"') == 6
    assert count <= POLL_QUERY_LIMIT
    count, unchanged = queries_of(lambda: client.get(url, headers={"If-None-Match": panel["ETag"]}))
    assert unchanged.status_code == 304
    assert count <= POLL_QUERY_LIMIT


def test_a_job_pages_panel_poll_is_at_most_4_queries_and_a_304_when_unchanged(alice, charlie):
    client = signed_in(alice)
    job = submitted(alice, 10)
    job_deliver(job=job, indexes=range(6))
    url = f"/jobs/{job.id}/progress/"
    count, panel = queries_of(lambda: client.get(url))
    page = panel.content.decode()
    assert "6 of 10" in page and page.count('data-testid="thumb"') == 6
    assert count <= POLL_QUERY_LIMIT
    count, unchanged = queries_of(lambda: client.get(url, headers={"If-None-Match": panel["ETag"]}))
    assert unchanged.status_code == 304
    assert count <= POLL_QUERY_LIMIT
    job_deliver(job=job, indexes=[6])
    assert client.get(url, headers={"If-None-Match": panel["ETag"]}).status_code == 200  # an image came
    assert signed_in(charlie).get(url).status_code == 404  # another team's job


def test_an_api_key_is_one_lookup_and_its_last_use_is_written_once_a_minute(alice):
    job = running_with_images(alice, 1)
    ApiKey.objects.update(last_used_at=None)
    first, _ = queries_of(lambda: alice.client.get(f"{JOBS}/{job.id}"))
    again, _ = queries_of(lambda: alice.client.get(f"{JOBS}/{job.id}"))
    assert first == again + 1  # the last use, written by the first request only
    assert ApiKey.objects.get().last_used_at is not None


def test_an_outputs_answer_is_what_its_declared_fields_give(alice):
    """OutputSerializer reads its values straight (the poll's hot path): the same as DRF's
    field-by-field answer, which the schema documents."""
    job = running_with_images(alice, 2)
    GeneratedOutput.objects.filter(job=job, index=1).update(
        poster="teams/x/clip-poster.png", provider_report={"usage": {"input_tokens": 7}}
    )
    row = job_queryset_for_team(alice.team).get(id=job.id)
    context = {"request": APIRequestFactory().get("/", HTTP_HOST="testserver")}
    for output in job_outputs_of(row):
        fast = OutputSerializer(output, context=context).data
        by_fields = serializers.ModelSerializer.to_representation(OutputSerializer(output, context=context), output)
        assert fast == by_fields
    assert fast["poster_url"].endswith(f"/api/v1/jobs/{job.id}/outputs/2/poster")


def test_the_rate_limit_history_keeps_one_entry_a_second_however_many_requests(alice):
    job = running_with_images(alice, 1)
    for _ in range(30):
        assert alice.client.get(f"{JOBS}/{job.id}").status_code == 200
    history = cache.get(f"throttle_s_api_key:{ApiKey.objects.get().pk}")
    assert sum(count for _, count in history) == 30
    assert len(history) <= 3  # the seconds the 30 requests took, not one entry each


def test_jobs_read_for_the_answer_bring_their_outputs_in_their_own_row(alice):
    job = running_with_images(alice, 3)
    row = job_queryset_for_team(alice.team).get(id=job.id)
    count, outputs = queries_of(lambda: job_outputs_of(row))
    assert count == 0
    assert [(output.index, output.file.name) for output in outputs] == list(
        GeneratedOutput.objects.filter(job=job).order_by("index").values_list("index", "file")
    )
