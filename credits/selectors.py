"""Reads of a team's ledger for its credits page: one row per job, and the entries themselves.

The ledger has one entry per delivered image, so a ten-image job is twelve entries (a hold, ten
captures, a release). People think in jobs: `credit_activity_page` shows one row per job, with
every entry that belongs to no job (a grant, an adjustment, a refund) as a row of its own. It
pages those rows first and sums in SQL the entries of the page's jobs only, so a page costs a
fixed number of queries and reads, whatever the jobs' sizes and however long the ledger grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.core.paginator import Page, Paginator
from django.db.models import Count, Q, QuerySet, Sum

from credits.actors import LedgerActors
from credits.models import CreditAccount, LedgerEntry
from generation.models import GenerationJob

ROWS_PER_PAGE = 50
Kind = LedgerEntry.Kind


@dataclass(frozen=True)
class JobActivity:
    """A job's credits: `held` when it was accepted, `spent` on the images it delivered,
    `released` back when it ended; `available_change` is what it took from `available` in all."""

    job: GenerationJob
    at: datetime
    held: int
    spent: int
    released: int
    images: int
    available_change: int

    @property
    def still_held(self) -> int:
        return self.held - self.spent - self.released


@dataclass(frozen=True)
class EntryActivity:
    """An entry that belongs to no job: a grant, an adjustment or a refund."""

    entry: LedgerEntry
    actor: str

    @property
    def at(self) -> datetime:
        return self.entry.created_at


def _team_entries(account: CreditAccount) -> QuerySet[LedgerEntry]:
    return LedgerEntry.objects.filter(account=account)


def _activity_rows(account: CreditAccount) -> QuerySet[LedgerEntry]:
    """The entries that stand for the rows of the credits page, one each, newest first: a job's
    hold (its first entry: a job sits where it was accepted, so a running job does not move
    down) and every entry that belongs to no job. Every job with entries has a hold: a job is
    accepted by holding what it may cost, and every model costs credits. Read through the
    account's ledger index (`credits_entry_account`), newest first, a page at a time."""
    return (
        _team_entries(account)
        .filter(Q(kind=Kind.HOLD) | Q(job__isnull=True))
        .select_related("job", "actor")
        .order_by("-id")
    )


def _job_sums(account: CreditAccount, job_ids: list[UUID]) -> dict[UUID, dict[str, Any]]:
    """The sums of these jobs' entries, one row per job, read through the per-job index
    (`credits_entry_job_kind`)."""
    if not job_ids:
        return {}
    sums = (
        _team_entries(account)
        .filter(job_id__in=job_ids)
        .values("job_id")
        .annotate(
            held=Sum("held_delta", filter=Q(kind=Kind.HOLD), default=0),
            captured=Sum("held_delta", filter=Q(kind=Kind.CAPTURE), default=0),
            released=Sum("held_delta", filter=Q(kind=Kind.RELEASE), default=0),
            images=Count("id", filter=Q(kind=Kind.CAPTURE)),
            available_change=Sum("available_delta", default=0),
        )
        .order_by()
    )
    return {row["job_id"]: dict(row) for row in sums}


def credit_activity_page(*, account: CreditAccount, page_number: str | None) -> tuple[Page, list]:
    """One page of the account's activity, newest first: (the page, its rows), where a row is a
    JobActivity or an EntryActivity.

    1. Page the rows' entries (`_activity_rows`): a count and one page, with their jobs and actors.
    2. Sum the entries of that page's jobs only (`_job_sums`).
    3. Name the other entries' actors (one query for the team's members, when there are any).
    Four queries at most, whatever the size of the ledger beyond the page.
    """
    page = Paginator(_activity_rows(account), ROWS_PER_PAGE).get_page(page_number)
    entries: list[LedgerEntry] = list(page.object_list)
    sums = _job_sums(account, [entry.job_id for entry in entries if entry.job_id])
    actors = LedgerActors(account.team) if any(entry.job_id is None for entry in entries) else None
    rows: list[JobActivity | EntryActivity] = []
    for entry in entries:
        if entry.job is None:
            assert actors is not None
            rows.append(EntryActivity(entry=entry, actor=actors.shown(entry)))
            continue
        job_sums = sums[entry.job.id]
        rows.append(
            JobActivity(
                job=entry.job,
                at=entry.created_at,
                held=job_sums["held"],
                spent=-job_sums["captured"],
                released=-job_sums["released"],
                images=job_sums["images"],
                available_change=job_sums["available_change"],
            )
        )
    return page, rows


def ledger_page(*, account: CreditAccount, page_number: str | None) -> tuple[Page, list[tuple[LedgerEntry, str]]]:
    """One page of the account's entries, newest first, each with its job (for its prompt) and
    the actor the team is shown (credits.actors)."""
    entries = _team_entries(account).select_related("actor", "job").order_by("-id")
    page = Paginator(entries, ROWS_PER_PAGE).get_page(page_number)
    actors = LedgerActors(account.team)
    return page, [(entry, actors.shown(entry)) for entry in page]
