"""The credits page: one row per job (what it held, spent and released), grants as their own rows,
and every ledger entry one click away; only the team's own, in bounded queries."""

from __future__ import annotations

import re
from uuid import UUID

import pytest
from django.db import connection
from django.db.models import Q
from django.test import Client
from django.test.utils import CaptureQueriesContext

from credits.models import LedgerEntry
from credits.selectors import ROWS_PER_PAGE
from credits.services import credits_adjust, credits_grant, job_credits
from generation.models import GenerationJob
from generation.services.lifecycle import job_finish
from generation.services.submit import JobSpec, job_submit
from tests.helpers import job_deliver, job_fail

pytestmark = pytest.mark.django_db


def submit(person, prompt: str, count: int) -> GenerationJob:  # type: ignore[no-untyped-def]
    return job_submit(team=person.team, user=person.user, spec=JobSpec(prompt=prompt, count=count)).job


def succeeded(person, prompt: str, count: int) -> GenerationJob:  # type: ignore[no-untyped-def]
    job = submit(person, prompt, count)
    job_deliver(job=job, indexes=range(count))
    assert job_finish(job_id=job.id, fence=Q(), status=GenerationJob.Status.SUCCEEDED)
    return job


def failed(person, prompt: str, count: int, delivered: int) -> GenerationJob:  # type: ignore[no-untyped-def]
    job = submit(person, prompt, count)
    job_deliver(job=job, indexes=range(delivered))
    job_fail(job=job)
    return job


def session(person) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(person.user)
    return client


def job_rows(page: str) -> dict[str, dict[str, str]]:
    """The summary's job rows: {job id: {cell name: text}}."""
    rows = {}
    for job_id, row in re.findall(r'<tr data-testid="credit-job" data-job="([^"]+)">(.*?)</tr>', page, re.S):
        cells = dict(re.findall(r'data-testid="credit-(\w+)">([^<]*)<', row))
        cells["link"] = re.search(r'<a href="([^"]+)" data-testid="credit-job-link">([^<]*)</a>', row).groups()
        rows[job_id] = cells
    return rows


def entry_rows(page: str, testid: str) -> list[str]:
    return re.findall(rf'<tr data-testid="{testid}" data-entry="(\d+)">', page)


def test_each_job_is_one_row_whose_numbers_are_its_ledgers(alice):
    ten = succeeded(alice, "ten roses in a vase", 10)
    partial = failed(alice, "a storm over the harbour", 3, delivered=1)
    running = submit(alice, "still going", 2)
    job_deliver(job=running, indexes=[0])
    credits_adjust(team=alice.team, amount=-5, idempotency_key="fix-1", actor=None, memo="double charge fixed")

    page = session(alice).get("/credits/").content.decode()
    rows = job_rows(page)
    assert set(rows) == {str(ten.id), str(partial.id), str(running.id)}  # 12 + 5 + 2 entries: 3 rows
    for job in (ten, partial, running):
        totals = job_credits(job.id)
        delivered = LedgerEntry.objects.filter(job=job, kind=LedgerEntry.Kind.CAPTURE).count()
        row = rows[str(job.id)]
        assert row["link"] == (f"/jobs/{job.id}/", job.prompt)  # named by its prompt, linked to its page
        assert (row["held"], row["spent"], row["released"]) == tuple(
            str(n) for n in (totals.held, totals.captured, totals.released)
        )
        assert row["images"] == f"{delivered} of {job.total_outputs} images"
        change = sum(LedgerEntry.objects.filter(job=job).values_list("available_delta", flat=True))
        assert row["change"] == f"{change:+d}"
    assert (rows[str(ten.id)]["spent"], rows[str(partial.id)]["released"]) == ("10", "2")

    # The fixture's grant and the adjustment are rows of their own, with their memos.
    grants = entry_rows(page, "credit-entry")
    assert len(grants) == 2
    assert "Adjustment</strong>: double charge fixed" in page
    assert "Grant</strong>: test" in page
    # Newest first; a job sits where it started.
    order = re.findall(r'data-(?:job|entry)="([^"]+)"', page)
    assert order == [grants[0], str(running.id), str(partial.id), str(ten.id), grants[1]]


def test_times_are_in_the_persons_zone_and_the_zone_is_named(alice):
    succeeded(alice, "dawn", 1)
    client = session(alice)
    client.cookies["tz"] = "Asia/Tokyo"
    page = client.get("/credits/").content.decode()
    assert "Times are in Asia/Tokyo." in page
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d JST", page)


def test_the_ledger_view_lists_every_entry_with_its_job_across_pages(alice):
    job = succeeded(alice, "ten roses in a vase", 10)
    for n in range(ROWS_PER_PAGE):
        credits_grant(team=alice.team, amount=1, idempotency_key=f"small-{n}", actor=None, memo=f"gift {n}")
    client = session(alice)
    summary = client.get("/credits/").content.decode()
    assert 'href="?view=ledger"' in summary  # one click away

    shown: list[str] = []
    page_number = 1
    while True:
        page = client.get("/credits/", {"view": "ledger", "page": page_number}).content.decode()
        shown += entry_rows(page, "ledger-entry")
        if "Older</a>" not in page:
            break
        page_number += 1
    expected = [
        str(entry_id) for entry_id in LedgerEntry.objects.filter(account__team=alice.team).values_list("id", flat=True)
    ]
    assert shown == expected  # every entry once, newest first
    assert page_number == 2
    first_page = client.get("/credits/", {"view": "ledger", "page": 2}).content.decode()
    assert f'<a href="/jobs/{job.id}/">ten roses in a vase</a>' in first_page
    assert "Capture (image 10)" in first_page


def test_another_teams_jobs_and_entries_are_never_shown(alice, charlie):
    succeeded(alice, "alice's lighthouse", 2)
    theirs = succeeded(charlie, "charlie's secret garden", 3)
    client = session(alice)
    theirs_entries = set(LedgerEntry.objects.filter(account__team=charlie.team).values_list("id", flat=True))
    for params in ({}, {"view": "ledger"}):
        page = client.get("/credits/", params).content.decode()
        assert "charlie" not in page.lower()
        assert str(theirs.id) not in page
        assert not {int(n) for n in re.findall(r'data-entry="(\d+)"', page)} & theirs_entries
    # Charlie sees his own.
    assert "charlie&#x27;s secret garden" in session(charlie).get("/credits/").content.decode()


def test_the_summary_and_the_ledger_take_the_same_queries_for_one_job_or_many(alice):
    client = session(alice)
    succeeded(alice, "one", 4)

    def queries(params: dict) -> int:
        client.get("/credits/", params)  # what the page's header does once (marking jobs seen) is done
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/credits/", params).status_code == 200
        return len(captured.captured_queries)

    few = (queries({}), queries({"view": "ledger"}))
    for n in range(6):
        succeeded(alice, f"job {n}", 5)
    failed(alice, "broken", 4, delivered=1)
    assert (queries({}), queries({"view": "ledger"})) == few


def test_a_team_with_no_movements_sees_an_empty_page_and_nothing_is_written(db):
    from tests.factories import UserFactory

    user = UserFactory(email="new@example.com")
    client = Client()
    client.force_login(user)
    page = client.get("/credits/").content.decode()
    assert "No credit movements yet." in page
    assert "No credit movements yet." in client.get("/credits/", {"view": "ledger"}).content.decode()


def test_a_page_reads_only_its_own_jobs_whatever_the_number_of_jobs_beyond_it(alice, monkeypatch):
    monkeypatch.setattr("credits.selectors.ROWS_PER_PAGE", 3)
    client = session(alice)
    for n in range(4):
        succeeded(alice, f"early {n}", 3)

    def first_page() -> tuple[list[str], list[str]]:
        client.get("/credits/")  # what the page's header does once (marking jobs seen) is done
        with CaptureQueriesContext(connection) as captured:
            page = client.get("/credits/").content.decode()
        return list(job_rows(page)), [query["sql"] for query in captured.captured_queries]

    shown, few_jobs = first_page()
    assert len(shown) == 3
    newest = [succeeded(alice, f"late {n}", 4) for n in range(8)]
    failed(alice, "broken", 4, delivered=1)
    shown, many_jobs = first_page()
    assert len(many_jobs) == len(few_jobs)
    newest_first = [str(job.id) for job in GenerationJob.objects.filter(team=alice.team).order_by("-created_at")[:3]]
    assert shown == newest_first and str(newest[-1].id) in shown
    # The sums are read for the page's jobs only, never by grouping the team's whole ledger.
    (sums,) = [sql for sql in many_jobs if "GROUP BY" in sql and "credits_ledgerentry" in sql]
    assert '"credits_ledgerentry"."job_id" IN (' in sums
    summed = set(re.findall(r"'([0-9a-f]{32})'::uuid", sums))  # the jobs' ids as the query binds them
    assert summed == {UUID(job_id).hex for job_id in newest_first}
