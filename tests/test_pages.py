"""The server-rendered pages through Django's test client: forms, errors, isolation, the cheap poll."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.db.models import Q
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from credits.models import CreditAccount
from generation.models import GeneratedOutput, GenerationJob, StudioTab
from generation.services.lifecycle import job_finish
from generation.services.studio import tab_create
from tests.conftest import _person
from tests.factories import UserFactory, png_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser_of():
    def make(person) -> Client:
        client = Client()
        client.force_login(person.user)
        return client

    return make


def studio_tab(client: Client) -> StudioTab:
    response = client.get("/studio/")
    assert response.status_code == 302
    return StudioTab.objects.get(id=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))


def test_generate_from_the_form_starts_a_job_in_that_tab_and_keeps_the_draft(alice, browser_of):
    client = browser_of(alice)
    tab = studio_tab(client)
    form = {"prompt": "silver chrome tips", "count": "3", "kind": "image", "style": "artistic", "seed": "77"}
    response = client.post(f"/studio/{tab.id}/generate/", form)
    assert response.status_code == 302
    job = GenerationJob.objects.get(tab=tab)
    assert (job.prompt, job.total_outputs, job.params["style"], job.params["seed"]) == (
        "silver chrome tips",
        3,
        "artistic",
        77,
    )
    page = client.get(f"/studio/{tab.id}/").content.decode()
    assert "silver chrome tips" in page and "0 of 3" in page
    tab.refresh_from_db()
    assert tab.draft["params"]["seed"] == "77"


def test_form_errors_are_shown_next_to_their_field_and_create_nothing(alice, browser_of):
    client = browser_of(alice)
    tab = studio_tab(client)
    form = {"prompt": "x", "count": "3", "seed": "-5", "strength": "7"}
    response = client.post(f"/studio/{tab.id}/generate/", form, follow=True)
    assert response.redirect_chain == [(f"/studio/{tab.id}/", 302)]  # post/redirect/get, errors kept
    page = response.content.decode()
    assert "Seed: Ensure this value is greater than or equal to 0." in page
    assert "Strength: Ensure this value is less than or equal to 1." in page
    assert 'name="seed" id="id_seed" value="-5"' in page  # the draft, as typed
    assert not GenerationJob.objects.exists()
    assert "Seed: Ensure" not in client.get(f"/studio/{tab.id}/").content.decode()  # shown once


def test_a_bad_upload_is_refused_next_to_its_field(alice, browser_of):
    client = browser_of(alice)
    tab = studio_tab(client)
    fake = SimpleUploadedFile("sketch.png", b"%PDF-1.4 not an image")
    response = client.post(
        f"/studio/{tab.id}/generate/", {"prompt": "x", "count": "1", "sketch_image": fake}, follow=True
    )
    assert response.redirect_chain == [(f"/studio/{tab.id}/", 302)]
    assert "Sketch: The file is not a PNG, JPEG or WebP image." in response.content.decode()
    assert not GenerationJob.objects.exists()


def test_an_edit_with_a_source_and_a_sketch_from_the_form(alice, browser_of):
    client = browser_of(alice)
    tab = studio_tab(client)
    form = {
        "prompt": "make it pink", "kind": "edit", "count": "1",
        "source_image": SimpleUploadedFile("s.png", png_bytes(80, 60)),
        "sketch_image": SimpleUploadedFile("k.png", png_bytes(40, 40)), "sketch_image_weight": "0.9",
    }  # fmt: skip
    assert client.post(f"/studio/{tab.id}/generate/", form).status_code == 302
    job = GenerationJob.objects.get(tab=tab)
    assert job.kind == "edit" and job.source_asset.width == 80
    sketch = job.reference_links.get()
    assert (sketch.role, sketch.weight) == ("sketch", 0.9)
    api = alice.client.get(f"/api/v1/jobs/{job.id}").json()
    assert api["inputs"]["sketch"]["weight"] == 0.9 and api["inputs"]["references"] == []


def test_short_credits_show_the_shortfall_on_the_page():
    user = UserFactory(email="short@example.com")
    person = _person(user, user.personal_team, credits=2)
    client = Client()
    client.force_login(person.user)
    tab = studio_tab(client)
    response = client.post(f"/studio/{tab.id}/generate/", {"prompt": "x", "count": "5"}, follow=True)
    assert response.redirect_chain == [(f"/studio/{tab.id}/", 302)]  # a reload sends nothing again
    page = response.content.decode()
    assert "this needs 5 and the team has 2, 3 short" in page
    assert 'href="/credits/"' in page
    assert not GenerationJob.objects.exists()
    assert "3 short" not in client.get(f"/studio/{tab.id}/").content.decode()  # shown once


def test_estimate_partial_shows_cost_and_optimized_prompt(alice, browser_of):
    client = browser_of(alice)
    tab = studio_tab(client)
    response = client.post(
        f"/studio/{tab.id}/estimate/",
        {"prompt": "blue", "count": "4", "quality": "high"},
        headers={"HX-Request": "true"},
    )
    page = response.content.decode()
    assert "8 credits" in page and "for 4 images (2 each)" in page
    assert "blue, photorealistic" in page
    assert "<html" not in page  # a partial, not the whole page
    assert CreditAccount.objects.get(team=alice.team).held == 0


def _running_job(person, tab, images: int) -> GenerationJob:
    job = GenerationJob.objects.create(
        team=person.team, created_by=person.user, tab=tab, provider="local", model="atelier-sketch-1",
        prompt="poll me", optimized_prompt="poll me", total_outputs=10, status="running", lease_owner="w",
    )  # fmt: skip
    GeneratedOutput.objects.bulk_create(
        GeneratedOutput(job=job, index=i, file=f"f{i}.png", mime="image/png", width=1, height=1, bytes=1, sha256="0")
        for i in range(images)
    )
    GenerationJob.objects.filter(id=job.id).update(completed_outputs=images)
    return job


def test_the_progress_poll_is_a_few_queries_whatever_the_image_count_and_304_when_unchanged(alice, browser_of):
    client = browser_of(alice)
    tab = studio_tab(client)
    job = _running_job(alice, tab, images=2)
    url = f"/studio/{tab.id}/progress/"
    with CaptureQueriesContext(connection) as few_images:
        first = client.get(url)
    GeneratedOutput.objects.bulk_create(
        GeneratedOutput(job=job, index=i, file=f"f{i}.png", mime="image/png", width=1, height=1, bytes=1, sha256="0")
        for i in range(2, 9)
    )
    GenerationJob.objects.filter(id=job.id).update(completed_outputs=9)
    with CaptureQueriesContext(connection) as many_images:
        second = client.get(url)
    assert first.status_code == second.status_code == 200
    assert "9 of 10" in second.content.decode()
    assert 'hx-trigger="every 1s"' in second.content.decode()  # still polling while running
    assert len(many_images) == len(few_images) <= 4

    with CaptureQueriesContext(connection) as unchanged:
        not_modified = client.get(url, headers={"If-None-Match": second["ETag"]})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert len(unchanged) <= len(many_images)  # the ETag is drawn from the row the panel needs anyway


def test_the_poll_stops_when_the_job_is_finished_and_marks_it_seen(alice, browser_of):
    client = browser_of(alice)
    tab = studio_tab(client)
    job = _running_job(alice, tab, images=3)
    job_finish(job_id=job.id, fence=Q(), status="canceled")
    page = client.get(f"/studio/{tab.id}/progress/").content.decode()
    assert "Canceled" in page
    assert "hx-trigger" not in page
    job.refresh_from_db()
    assert job.seen_at is not None


def test_the_return_notice_counts_finished_jobs_and_images_once(alice, browser_of):
    client = browser_of(alice)
    tab = studio_tab(client)
    for images in (3, 2):
        job = _running_job(alice, tab, images=images)
        job_finish(job_id=job.id, fence=Q(), status="failed", error_code="X")
    _running_job(alice, tab, images=1)
    page = client.get("/collection/").content.decode()
    assert "1 still generating" in page
    # The page's first activity poll shows what finished (generation/pages/activity.py), once.
    arrival = client.get("/activity/", {"arrival": "1"}).content.decode()
    assert "2 generations finished while you were away (5 images)" in arrival
    assert "1 still generating" in arrival
    again = client.get("/activity/", {"arrival": "1"}).content.decode()
    assert "finished" not in again
    assert "1 still generating" in again
    assert "finished while you were away" not in client.get("/collection/").content.decode()


def test_other_peoples_tabs_jobs_and_looks_are_404(alice, bob, charlie, browser_of):
    alice_client = browser_of(alice)
    tab = studio_tab(alice_client)
    alice_client.post(f"/studio/{tab.id}/generate/", {"prompt": "mine", "count": "2"})
    job = GenerationJob.objects.get(tab=tab)
    job_finish(job_id=job.id, fence=Q(), status="canceled")
    bob_client, charlie_client = browser_of(bob), browser_of(charlie)
    for path in (f"/studio/{tab.id}/", f"/studio/{tab.id}/progress/"):
        assert bob_client.get(path).status_code == 404  # a teammate's tab is still theirs
        assert charlie_client.get(path).status_code == 404
    for method, path in [
        ("get", f"/jobs/{job.id}/"), ("get", f"/jobs/{job.id}/progress/"),
        ("post", f"/jobs/{job.id}/cancel/"), ("post", f"/jobs/{job.id}/retry/"),
        ("post", f"/studio/{tab.id}/generate/"), ("post", f"/studio/{tab.id}/close/"),
    ]:  # fmt: skip
        assert getattr(charlie_client, method)(path).status_code == 404
    assert bob_client.get(f"/jobs/{job.id}/").status_code == 404  # Bob's session acts for his personal team
    bob_client.post("/accounts/team/", {"team": alice.team.id})
    assert bob_client.get(f"/jobs/{job.id}/").status_code == 200  # the team's history is shared


def test_pages_require_csrf_on_every_form(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice.user)
    tab = tab_create(user=alice.user, team=alice.team)
    assert client.post(f"/studio/{tab.id}/generate/", {"prompt": "x"}).status_code == 403
    assert client.post("/studio/new/").status_code == 403
    assert not GenerationJob.objects.exists()


def test_pages_redirect_to_login_without_a_session():
    client = Client()
    for path in ("/studio/", "/jobs/", "/collection/", "/credits/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_tabs_can_be_added_renamed_and_closed_without_stopping_their_job(alice, browser_of):
    client = browser_of(alice)
    first = studio_tab(client)
    client.post("/studio/new/")
    second = StudioTab.objects.exclude(id=first.id).get()
    client.post(f"/studio/{second.id}/rename/", {"title": "Spring line"})
    second.refresh_from_db()
    assert second.title == "Spring line"
    client.post(f"/studio/{second.id}/generate/", {"prompt": "spring", "count": "1"})
    client.post(f"/studio/{second.id}/close/")
    assert not StudioTab.objects.filter(id=second.id).exists()
    job = GenerationJob.objects.get(prompt="spring")
    assert job.status == "queued" and job.tab is None  # still going, still in the history
    assert "spring" in client.get("/jobs/").content.decode()


def test_job_history_filters_by_status(alice, browser_of):
    client = browser_of(alice)
    tab = studio_tab(client)
    for prompt in ("kept running", "stopped early"):
        client.post(f"/studio/{tab.id}/generate/", {"prompt": prompt, "count": "1"})
    stopped = GenerationJob.objects.get(prompt="stopped early")
    client.post(f"/jobs/{stopped.id}/cancel/")
    canceled_page = client.get("/jobs/?status=canceled").content.decode()
    assert "stopped early" in canceled_page and "kept running" not in canceled_page
    assert "kept running" in client.get("/jobs/?status=queued").content.decode()


def test_signup_makes_a_personal_team_without_credits_until_the_email_is_verified(settings, mailoutbox):
    settings.SIGNUP_CREDITS = 40
    client = Client()
    response = client.post("/accounts/signup/", {"email": "New@Example.com"})
    assert response.status_code == 200
    assert "Check your inbox: we sent a link to <strong>new@example.com</strong>" in response.content.decode()
    user = User.objects.get(email="new@example.com")
    assert user.email_verified_at is None and user.personal_team.memberships.get().user == user
    assert not user.has_usable_password()  # chosen on the verification page
    assert CreditAccount.objects.get(team=user.personal_team).available == 0  # credits come with verification
    assert client.get("/studio/")["Location"].startswith("/accounts/login/")  # not logged in
    assert [mail.to for mail in mailoutbox] == [["new@example.com"]]
    # tests/test_signup_and_login.py follows the link, and signs up with registered emails.


def test_a_job_paused_by_an_outage_says_so_and_the_poll_notices_the_pause(alice, browser_of):
    client = browser_of(alice)
    tab = studio_tab(client)
    job = _running_job(alice, tab, images=2)
    url = f"/studio/{tab.id}/progress/"
    before = client.get(url)
    assert 'data-testid="paused"' not in before.content.decode()
    # Storage failed under the job: it is queued again with backoff (what job_requeue writes).
    GenerationJob.objects.filter(id=job.id).update(
        status="queued", lease_owner="", lease_expires_at=None, outage_since=timezone.now(), pauses=1
    )
    after = client.get(url, headers={"If-None-Match": before["ETag"]})
    assert after.status_code == 200  # not a stale 304
    page = after.content.decode()
    assert "Paused: part of Atelier is briefly unavailable" in page
    assert '<span class="badge queued" data-testid="status">Paused</span>' in page
    assert 'hx-trigger="every 1s"' in page  # still watching: it resumes by itself
