"""The credit ledger against PostgreSQL: holds, captures, releases, idempotency, isolation, audit."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Q
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from credits.audit import credits_audit
from credits.models import CreditAccount, LedgerEntry
from credits.services import credits_adjust, credits_capture, credits_grant, credits_hold, job_credits
from generation.models import GenerationJob
from generation.services.lifecycle import job_finish
from generation.services.pipeline import RunOutcome, job_run
from generation.services.retry import job_retry
from generation.services.submit import JobSpec, job_submit
from tests.conftest import _person
from tests.factories import UserFactory
from tests.helpers import job_deliver, job_fail

pytestmark = pytest.mark.django_db

JOBS = "/api/v1/jobs"


def balance(team) -> tuple[int, int]:
    account = CreditAccount.objects.get(team=team)
    return account.available, account.held


def test_submit_holds_price_times_outputs_and_shows_it_on_the_job(alice):
    estimate = alice.client.post(
        f"{JOBS}/estimate", {"prompt": "p", "count": 4, "params": {"quality": "high"}}, format="json"
    )
    assert estimate.json()["credits_per_output"] == 2
    assert estimate.json()["credits"] == 8
    assert balance(alice.team) == (1000, 0)  # an estimate holds nothing

    job = alice.client.post(JOBS, {"prompt": "p", "count": 4, "params": {"quality": "high"}}, format="json").json()
    assert job["credits"] == {"per_output": 2, "held": 8, "captured": 0, "released": 0}
    assert balance(alice.team) == (992, 8)
    hold = LedgerEntry.objects.get(job_id=job["id"])
    assert (hold.kind, hold.available_delta, hold.held_delta, hold.available_after, hold.held_after) == (
        "hold",
        -8,
        8,
        992,
        8,
    )
    assert hold.actor_label == "user:alice@example.com"


def test_short_credits_answer_402_with_the_shortfall_and_create_nothing():
    user = UserFactory(email="poor@example.com")
    poor = _person(user, user.personal_team, credits=3)
    response = poor.client.post(JOBS, {"prompt": "p", "count": 4}, format="json")
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "INSUFFICIENT_CREDITS"
    assert error["details"]["required"] == 4 and error["details"]["available"] == 3
    assert error["details"]["top_up_url"] == "http://testserver/credits/"
    assert not GenerationJob.objects.exists()
    assert balance(poor.team) == (3, 0)
    assert LedgerEntry.objects.filter(account__team=poor.team).count() == 1  # the grant only


# job_run's lifeline thread reads the job on its own connection: the rows must be committed.
@pytest.mark.django_db(transaction=True)
def test_every_terminal_state_releases_what_was_not_captured(alice, settings):
    settings.LOCAL_PROVIDER_LATENCY_MS = 0
    settings.LOCAL_PROVIDER_REFUSE_FROM_IMAGE = 3
    job_id = alice.client.post(JOBS, {"prompt": "p", "count": 4}, format="json").json()["id"]
    assert job_run(job_id=job_id) is RunOutcome.FAILED
    assert job_credits(job_id) == job_credits(job_id).__class__(held=4, captured=2, released=2)
    assert balance(alice.team) == (998, 0)
    canceled = alice.client.post(JOBS, {"prompt": "q", "count": 3}, format="json").json()["id"]
    alice.client.post(f"{JOBS}/{canceled}/cancel")
    assert (job_credits(canceled).captured, job_credits(canceled).released) == (0, 3)
    assert balance(alice.team) == (998, 0)
    call_command("credits_audit")


# job_run's lifeline thread reads the job on its own connection: the rows must be committed.
@pytest.mark.django_db(transaction=True)
def test_retry_holds_only_for_the_images_it_will_make(alice, settings):
    settings.LOCAL_PROVIDER_LATENCY_MS = 0
    settings.LOCAL_PROVIDER_REFUSE_FROM_IMAGE = 4
    job_id = alice.client.post(JOBS, {"prompt": "p", "count": 5}, format="json").json()["id"]
    job_run(job_id=job_id)
    retry = alice.client.post(f"{JOBS}/{job_id}/retry").json()
    assert retry["credits"]["held"] == 2  # images 4 and 5
    settings.LOCAL_PROVIDER_REFUSE_FROM_IMAGE = 0
    assert job_run(job_id=retry["id"]) is RunOutcome.SUCCEEDED
    assert job_credits(retry["id"]) == job_credits(retry["id"]).__class__(held=2, captured=2, released=0)
    assert balance(alice.team) == (1000 - 5, 0)  # five images made, five paid, none twice
    call_command("credits_audit")


def test_retry_with_short_credits_is_402_and_creates_nothing():
    user = UserFactory(email="thrifty@example.com")
    person = _person(user, user.personal_team, credits=2)
    job_id = person.client.post(JOBS, {"prompt": "p", "count": 2}, format="json").json()["id"]
    job_finish(job_id=job_id, fence=Q(), status="failed", error_code="TEST")
    credits_adjust(team=person.team, amount=-2, idempotency_key="drain", actor=None, memo="test")
    response = person.client.post(f"{JOBS}/{job_id}/retry")
    assert response.status_code == 402
    assert not GenerationJob.objects.filter(retry_of_id=job_id).exists()


def test_the_same_capture_twice_with_one_key_makes_one_entry(alice):
    job_id = alice.client.post(JOBS, {"prompt": "p", "count": 2}, format="json").json()["id"]
    first, created_first = credits_capture(team_id=alice.team.id, job_id=job_id, output_index=0, amount=1)
    second, created_second = credits_capture(team_id=alice.team.id, job_id=job_id, output_index=0, amount=1)
    assert (created_first, created_second) == (True, False)
    assert first.id == second.id
    assert LedgerEntry.objects.filter(job_id=job_id, kind="capture").count() == 1
    assert balance(alice.team) == (998, 1)


def test_a_team_sees_and_spends_only_its_own_credits(alice, charlie):
    alice.client.post(JOBS, {"prompt": "alice's", "count": 3}, format="json")
    charlie.client.post(JOBS, {"prompt": "charlie's", "count": 1}, format="json")
    mine = charlie.client.get("/api/v1/credits").json()
    assert (mine["available"], mine["held"]) == (999, 1)
    assert {entry["kind"] for entry in mine["entries"]} == {"grant", "hold"}
    assert mine["count"] == 2
    assert balance(alice.team) == (997, 3)
    # Charlie's session cannot act for Alice's team either.
    client = Client()
    client.force_login(charlie.user)
    page = client.get("/credits/")
    assert page.status_code == 200 and b"999" in page.content
    assert client.post("/accounts/team/", {"team": alice.team.id}).status_code == 404


def test_ledger_entries_cannot_be_changed_or_removed(alice):
    entry = LedgerEntry.objects.filter(account__team=alice.team).first()
    with pytest.raises(TypeError):
        entry.save()
    with pytest.raises(TypeError):
        entry.delete()
    with pytest.raises(TypeError):
        LedgerEntry.objects.filter(id=entry.id).update(memo="x")
    with pytest.raises(Exception, match="append-only"), connection.cursor() as cursor:
        cursor.execute("UPDATE credits_ledgerentry SET memo = 'tampered' WHERE id = %s", [entry.id])


def test_audit_reports_a_balance_that_does_not_match_its_entries(alice, capsys):
    call_command("credits_audit")
    assert "ledger is consistent" in capsys.readouterr().out
    CreditAccount.objects.filter(team=alice.team).update(available=5000)  # tampering outside the services
    with pytest.raises(CommandError, match="1 account"):
        call_command("credits_audit")
    assert f"team {alice.team.id}" in capsys.readouterr().err


def test_audit_reports_an_image_a_retry_chain_made_and_charged_twice(alice):
    original = job_submit(team=alice.team, user=alice.user, spec=JobSpec(prompt="p", count=2)).job
    job_deliver(job=original, indexes=[0])
    job_fail(job=original)
    # What two retries started by one race leave behind: a retry of the chain that did not carry
    # image 1 over, so it made (and charged) it again.
    twice = GenerationJob.objects.create(
        team=alice.team,
        provider=original.provider,
        model=original.model,
        prompt=original.prompt,
        optimized_prompt=original.optimized_prompt,
        total_outputs=2,
        credits_per_output=original.credits_per_output,
        retry_of=original,
        chain_root=original,
    )
    credits_hold(team_id=alice.team.id, job_id=twice.id, amount=2 * original.credits_per_output)
    job_deliver(job=twice, indexes=[0, 1])
    assert job_finish(job_id=twice.id, fence=Q(), status=GenerationJob.Status.SUCCEEDED)
    report = credits_audit()
    assert report.job_problems == [
        f"chain of job {original.id}: image index 0 made 2 times by its jobs",
        f"chain of job {original.id}: image index 0 captured 2 times",
    ]
    with pytest.raises(CommandError, match="2 job"):
        call_command("credits_audit")


def test_audit_finds_a_carried_over_retry_chain_clean_in_a_fixed_number_of_queries(alice):
    def chain(prompt: str) -> None:
        original = job_submit(team=alice.team, user=alice.user, spec=JobSpec(prompt=prompt, count=3)).job
        job_deliver(job=original, indexes=[0])
        job_fail(job=original)
        first_retry, _ = job_retry(job=original, user=alice.user)
        job_deliver(job=first_retry, indexes=[1])
        job_fail(job=first_retry)
        second_retry, _ = job_retry(job=original, user=alice.user)
        job_deliver(job=second_retry, indexes=[2])
        assert job_finish(job_id=second_retry.id, fence=Q(), status=GenerationJob.Status.SUCCEEDED)

    chain("one")
    with CaptureQueriesContext(connection) as one_chain:
        report = credits_audit()
    assert report.clean, report.job_problems
    assert report.jobs_checked == 3
    chain("two")
    chain("three")
    with CaptureQueriesContext(connection) as three_chains:
        report = credits_audit()
    assert report.clean, report.job_problems
    assert report.jobs_checked == 9
    assert len(three_chains) == len(one_chain)


def test_grant_refuses_a_non_positive_amount_and_adjust_cannot_go_below_zero(alice):
    with pytest.raises(Exception, match="positive"):
        credits_grant(team=alice.team, amount=0, idempotency_key="zero", actor=None, memo="")
    with pytest.raises(Exception, match="needs 2000 credits"):
        credits_adjust(team=alice.team, amount=-2000, idempotency_key="too-much", actor=None, memo="")
    assert balance(alice.team) == (1000, 0)


def test_admin_grant_action_requires_a_memo_and_grants_once(alice):
    User.objects.create_superuser(email="ops@example.com", password="operator-password")
    client = Client()
    client.login(email="ops@example.com", password="operator-password")
    account = CreditAccount.objects.get(team=alice.team)
    url = "/admin/credits/creditaccount/"
    base = {"action": "grant_credits", "_selected_action": [account.id]}
    form_page = client.post(url, base)
    assert b"Grant credits" in form_page.content
    no_memo = client.post(url, base | {"apply": "1", "amount": 50, "memo": "", "grant_token": "t1"})
    assert b"This field is required" in no_memo.content
    assert balance(alice.team) == (1000, 0)
    granted = client.post(
        url, base | {"apply": "1", "amount": 50, "memo": "launch bonus", "grant_token": "t1"}, follow=True
    )
    assert b"Granted 50 credits" in granted.content
    client.post(url, base | {"apply": "1", "amount": 50, "memo": "launch bonus", "grant_token": "t1"})  # resubmitted
    assert balance(alice.team) == (1050, 0)
    entry = LedgerEntry.objects.get(kind="grant", memo="launch bonus")
    assert entry.actor_label == "user:ops@example.com"
    assert client.get(f"/admin/credits/ledgerentry/{entry.id}/change/").status_code == 200
    assert client.post(f"/admin/credits/ledgerentry/{entry.id}/delete/").status_code == 403


def test_bootstrap_grants_credits(capsys):
    call_command("bootstrap", email="new@example.com", password="long-enough-pw", team="Credits", credits=250)
    assert "granted 250 credits; 250 available" in capsys.readouterr().out
    team = User.objects.get(email="new@example.com").teams.get(name="Credits")
    assert balance(team) == (250, 0)
