"""The operators' monitor and the session's team switch."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import timedelta

import pytest
from django.apps import apps
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone

from accounts.models import User
from accounts.services import team_create
from credits.services import credits_grant
from generation.models import GenerationJob
from generation.services.submit import JobSpec, job_submit
from tests.test_api_keys_and_admin import staff_client
from tests.test_zip_names import job_with_images

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator() -> Client:
    User.objects.create_superuser(email="ops@example.com", password="operator-password")
    client = Client()
    client.login(email="ops@example.com", password="operator-password")
    return client


def _job(person, **fields) -> GenerationJob:
    job = job_submit(team=person.team, user=person.user, spec=JobSpec(prompt=fields.pop("prompt", "admin test"))).job
    GenerationJob.objects.filter(id=job.id).update(**fields)
    return job


def test_job_list_filters_active_stuck_failed_and_not_saved(operator, alice):
    now = timezone.now()
    queued = _job(alice, prompt="queued one")
    stuck = _job(
        alice,
        prompt="stuck one",
        status="running",
        lease_owner="gone",
        lease_expires_at=now - timedelta(minutes=1),
        started_at=now,
    )
    failed = _job(alice, prompt="failed one", status="failed", finished_at=now, collected_at=now, error_code="X")
    unsaved = _job(alice, prompt="unsaved one", status="succeeded", finished_at=now)

    def listed(state: str) -> set[str]:
        response = operator.get("/admin/generation/generationjob/", {"state": state})
        assert response.status_code == 200
        return {str(job.id) for job in response.context["cl"].result_list}

    assert listed("active") == {str(queued.id), str(stuck.id)}
    assert listed("stuck") == {str(stuck.id)}
    assert listed("failed") == {str(failed.id)}
    assert listed("not_saved") == {str(unsaved.id)}
    detail = operator.get(f"/admin/generation/generationjob/{stuck.id}/change/")
    assert detail.status_code == 200
    assert b"stuck one" in detail.content


def test_admin_cancel_and_retry_actions(operator, alice):
    queued = _job(alice)
    failed = _job(alice, status="failed", finished_at=timezone.now(), error_code="X")
    url = "/admin/generation/generationjob/"
    response = operator.post(url, {"action": "cancel_jobs", "_selected_action": [str(queued.id)]}, follow=True)
    assert b"1 job(s) canceled or flagged" in response.content
    assert GenerationJob.objects.get(id=queued.id).status == "canceled"
    response = operator.post(url, {"action": "retry_jobs", "_selected_action": [str(failed.id)]}, follow=True)
    assert b"1 job(s) retried" in response.content
    assert GenerationJob.objects.filter(retry_of=failed).count() == 1


def test_team_switch_changes_the_session_team_and_refuses_foreign_teams(alice, charlie):
    client = Client()
    client.force_login(alice.user)
    second = team_create(name="Second studio", owner=alice.user)
    credits_grant(team=second, amount=10, idempotency_key="second-team", actor=None, memo="test")
    job = job_submit(team=second, user=alice.user, spec=JobSpec(prompt="in the second team")).job
    assert client.get(f"/jobs/{job.id}/").status_code == 404  # the personal team is current
    response = client.post("/accounts/team/", {"team": second.id, "next": f"/jobs/{job.id}/"})
    assert response.status_code == 302
    assert client.get(f"/jobs/{job.id}/").status_code == 200
    assert client.post("/accounts/team/", {"team": charlie.team.id}).status_code == 404
    assert client.post("/accounts/team/", {"team": "x"}).status_code == 404
    # The API under the session acts for the chosen team too.
    assert client.get(f"/api/v1/jobs/{job.id}").status_code == 200


def test_team_switch_does_not_redirect_off_site(alice):
    client = Client()
    client.force_login(alice.user)
    response = client.post("/accounts/team/", {"team": alice.team.id, "next": "https://evil.example/"})
    assert response["Location"] == "/"


# --- A job's files for operators -----------------------------------------------------------------


def _admin_job_url(job: GenerationJob, rest: str = "change/") -> str:
    return f"/admin/generation/generationjob/{job.id}/{rest}"


def test_the_job_list_leads_with_the_prompt_and_shows_progress_as_n_of_m(operator, alice):
    job = job_with_images(alice.team, "a lighthouse on a cliff at dawn, " * 4, [timezone.now()] * 2)
    response = operator.get("/admin/generation/generationjob/")
    columns = response.context["cl"].list_display
    assert columns[1:6] == ["prompt_shown", "team", "status", "progress", "created_at"]  # the UUID does not lead
    page = response.content.decode()
    assert re.findall(r'<th scope="col" class="[^"]*column-(\w+)', page)[0] == "prompt_shown"
    assert f">{job.prompt[:59]}…<" in page  # cut to 60 characters
    assert ">2 of 2<" in page
    # The row's link (to the job's page) is its prompt, not its UUID.
    assert re.search(rf'class="field-prompt_shown"><a href="/admin/generation/generationjob/{job.id}/change/', page)


def test_an_operator_sees_a_jobs_thumbnails_and_downloads_its_zip(operator, alice):
    job = job_with_images(alice.team, "Golden roses, at dusk!", [timezone.now()] * 3)
    page = operator.get(_admin_job_url(job))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Job: Golden roses, at dusk!" in html  # the page's title is the prompt
    assert "Image 1" in html and "Image 3" in html and "Image 0" not in html  # counted from 1
    assert "/api/v1/" not in html  # the team's routes would answer an operator 404
    thumbnails = re.findall(r'<img src="([^"]+)"', html)
    assert _admin_job_url(job, "outputs/1/") in thumbnails
    for number, output in enumerate(job.outputs.order_by("index"), start=1):
        image = operator.get(_admin_job_url(job, f"outputs/{number}/"))
        assert (image.status_code, image["Content-Type"]) == (200, "image/png")
        assert b"".join(image.streaming_content) == default_storage.open(output.file.name).read()
        assert "no-store" in image["Cache-Control"]
    assert operator.get(_admin_job_url(job, "outputs/4/")).status_code == 404

    download = operator.get(_admin_job_url(job, "download/"))
    assert download.status_code == 200
    assert download["Content-Disposition"] == 'attachment; filename="golden-roses-at-dusk.zip"'
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    assert archive.namelist() == [f"golden-roses-at-dusk-{n}.png" for n in (1, 2, 3)]


def test_a_jobs_files_need_the_view_permission_and_are_never_served_to_others(alice):
    job = job_with_images(alice.team, "private roses", [timezone.now()])
    addresses = [_admin_job_url(job, "outputs/1/"), _admin_job_url(job, "download/")]
    no_permission = staff_client("staff@example.com", [])
    viewer = staff_client("viewer@example.com", ["generation.view_generationjob"])
    member = Client()
    member.force_login(alice.user)  # the job's own team, but not staff: the admin is not theirs
    for address in addresses:
        assert no_permission.get(address).status_code == 403
        assert viewer.get(address).status_code == 200
        assert member.get(address).status_code == 302  # to the admin's login page
        assert Client().get(address).status_code == 302
    assert "/admin/login/" in member.get(addresses[0])["Location"]


def test_every_model_has_a_plural_name_people_write(operator):
    index = operator.get("/admin/").content.decode()
    assert "Ledger entries" in index and "entrys" not in index
    for model in apps.get_models():
        plural = str(model._meta.verbose_name_plural)
        assert not plural.endswith(("ys", "ss")) or plural.endswith(("ays", "eys", "oys")), plural
