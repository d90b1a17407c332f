"""The operators' monitor and the session's team switch."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import User
from accounts.services import team_create
from credits.services import credits_grant
from generation.models import GenerationJob
from generation.services.submit import JobSpec, job_submit

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
