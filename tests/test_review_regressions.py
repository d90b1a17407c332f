"""Defects found in review, each pinned by the behaviour a person would see."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import Q
from django.test import Client
from django.utils import timezone
from PIL import Image

from accounts.models import Membership
from credits.services import job_credits
from generation.models import GeneratedOutput, GenerationJob
from generation.services.lifecycle import job_finish
from generation.services.pipeline import RunOutcome, job_run
from generation.services.retry import job_retry
from generation.services.studio import tab_create
from generation.services.submit import JobSpec, job_submit
from tests.helpers import rescue_pass

pytestmark = pytest.mark.django_db


def _job(person, count: int = 3, **fields) -> GenerationJob:
    job = job_submit(team=person.team, user=person.user, spec=JobSpec(prompt="review", count=count)).job
    if fields:
        GenerationJob.objects.filter(id=job.id).update(**fields)
        job.refresh_from_db()
    return job


def test_a_queued_job_carrying_a_cancel_request_is_ended_by_the_rescuer_and_its_credits_released(alice):
    # What a cancel that lands while the rescuer re-queues the job leaves behind.
    job = _job(alice, cancel_requested=True)
    assert rescue_pass().canceled == 1
    job.refresh_from_db()
    assert job.status == "canceled"
    assert job_credits(job.id).released == 3


def test_the_rescuer_does_not_requeue_a_job_whose_cancel_arrived_after_it_looked(alice):
    job = _job(alice, status="running", lease_owner="gone", started_at=timezone.now(),
               lease_expires_at=timezone.now() - timedelta(seconds=5), attempts=1, cancel_requested=True)  # fmt: skip
    rescue_pass()
    job.refresh_from_db()
    assert job.status == "canceled"  # never queued again with the flag set


@pytest.mark.django_db(transaction=True)
# job_run's lifeline thread reads the job on its own connection: the rows must be committed.
@pytest.mark.django_db(transaction=True)
def test_retrying_the_original_after_a_failed_retry_makes_only_what_is_still_missing(alice, settings):
    settings.LOCAL_PROVIDER_LATENCY_MS = 0
    settings.LOCAL_PROVIDER_REFUSE_FROM_IMAGE = 2
    original = _job(alice, count=4)
    job_run(job_id=original.id)  # delivers image 1
    settings.LOCAL_PROVIDER_REFUSE_FROM_IMAGE = 4
    first_retry, _ = job_retry(job=original, user=alice.user)
    assert job_run(job_id=first_retry.id) is RunOutcome.FAILED  # delivers images 2-3
    settings.LOCAL_PROVIDER_REFUSE_FROM_IMAGE = 0
    second_retry, created = job_retry(job=original, user=alice.user)  # from the original's page
    assert created and second_retry.retry_of_id == first_retry.id
    assert job_credits(second_retry.id).held == 1  # only image 4
    assert job_run(job_id=second_retry.id) is RunOutcome.SUCCEEDED
    made = GeneratedOutput.objects.filter(job__team=alice.team, carried_from__isnull=True)
    assert sorted(made.values_list("index", flat=True)) == [0, 1, 2, 3]  # each image made once


def test_a_teammates_retry_does_not_land_in_the_owners_tab(alice, bob):
    tab = tab_create(user=alice.user, team=alice.team)
    job = job_submit(team=alice.team, user=alice.user, spec=JobSpec(prompt="x", tab_id=tab.id)).job
    job_finish(job_id=job.id, fence=Q(), status="failed", error_code="X")
    retry, _ = job_retry(job=job, user=bob.user)
    assert retry.tab_id is None
    own_retry_job = job_submit(team=alice.team, user=alice.user, spec=JobSpec(prompt="y", tab_id=tab.id)).job
    job_finish(job_id=own_retry_job.id, fence=Q(), status="failed", error_code="X")
    assert job_retry(job=own_retry_job, user=alice.user)[0].tab_id == tab.id


def test_a_double_click_on_generate_starts_one_job(alice):
    client = Client()
    client.force_login(alice.user)
    tab = tab_create(user=alice.user, team=alice.team)
    page = client.get(f"/studio/{tab.id}/").content.decode()
    token = page.split('name="submit_token" value="')[1].split('"')[0]
    form = {"prompt": "once", "count": "2", "submit_token": token}
    assert client.post(f"/studio/{tab.id}/generate/", form).status_code == 302
    assert client.post(f"/studio/{tab.id}/generate/", form).status_code == 302
    assert GenerationJob.objects.filter(prompt="once").count() == 1


def test_an_api_key_stops_working_when_its_owner_leaves_the_team(alice, bob):
    assert bob.client.get("/api/v1/jobs").status_code == 200
    Membership.objects.filter(team=alice.team, user=bob.user).delete()
    response = bob.client.get("/api/v1/credits")
    assert response.status_code == 401
    assert "no longer a member" in response.json()["error"]["message"]


def test_a_phone_photo_saved_as_multi_picture_jpeg_is_accepted(alice):
    buffer = io.BytesIO()
    frames = [Image.new("RGB", (64, 48), "red"), Image.new("RGB", (64, 48), "blue")]
    frames[0].save(buffer, format="MPO", save_all=True, append_images=frames[1:])
    upload = SimpleUploadedFile("photo.jpg", buffer.getvalue())
    response = alice.client.post("/api/v1/assets", {"file": upload}, format="multipart")
    assert response.status_code == 201, response.content
    assert response.json()["mime"] == "image/jpeg"


def test_an_oversized_upload_is_dropped_while_it_streams_and_named_in_the_error(alice, settings):
    settings.UPLOAD_MAX_BYTES = 4096
    big = SimpleUploadedFile("big.png", b"\x89PNG" + b"\0" * 20_000)
    response = alice.client.post("/api/v1/assets", {"file": big}, format="multipart")
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "file: The file is larger than 4 KB."
    client = Client()
    client.force_login(alice.user)
    tab = tab_create(user=alice.user, team=alice.team)
    big.seek(0)
    page = client.post(f"/studio/{tab.id}/generate/", {"prompt": "p", "count": "1", "reference_2": big}, follow=True)
    assert page.redirect_chain == [(f"/studio/{tab.id}/", 302)]
    assert "Reference 2: The file is larger than 4 KB." in page.content.decode()
    assert not GenerationJob.objects.exists()


def test_a_tampered_hidden_field_does_not_break_the_tab(alice):
    client = Client()
    client.force_login(alice.user)
    tab = tab_create(user=alice.user, team=alice.team)
    client.post(f"/studio/{tab.id}/estimate/", {"prompt": "p", "source_image_asset": "not-a-uuid"})
    assert client.get(f"/studio/{tab.id}/").status_code == 200


@pytest.mark.parametrize("team", ["²", "99999999999999999999999", "-1", ""])
def test_team_switch_with_a_malformed_team_is_404(alice, team):
    client = Client()
    client.force_login(alice.user)
    assert client.post("/accounts/team/", {"team": team}).status_code == 404


def test_an_out_of_range_tab_id_is_404(alice):
    client = Client()
    client.force_login(alice.user)
    for path in ("/studio/99999999999999999999/", "/studio/99999999999999999999/progress/"):
        assert client.get(path).status_code == 404


def test_login_ignores_the_case_of_the_email(alice):
    client = Client()
    response = client.post("/accounts/login/", {"username": "ALICE@Example.com", "password": "correct-horse-battery"})
    assert response.status_code == 302
    assert client.get("/studio/").status_code == 302  # logged in: on to a tab
