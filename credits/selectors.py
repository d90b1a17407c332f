"""Reads of a team's ledger for its credits page: one row per job, and the entries themselves.

The ledger has one entry per delivered image, so a ten-image job is twelve entries (a hold, ten
captures, a release). People think in jobs: `credit_activity` sums each job's entries in SQL,
one row per job, with every entry that belongs to no job (a grant, an adjustment, a refund) as a
row of its own. A page of rows costs a fixed number of queries, whatever the jobs' sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.core.paginator import Page, Paginator
from django.db.models import CharField, Count, Max, Min, Q, QuerySet, Sum, Value
from django.db.models.functions import Cast, Coalesce, Concat

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


def credit_activity_page(*, account: CreditAccount, page_number: str | None) -> tuple[Page, list]:
    """One page of the account's activity, newest first: (the page, its rows), where a row is a
    JobActivity or an EntryActivity. Four queries: count, the page's sums, its jobs, its other
    entries (and one for the team's members, to name the entries' actors)."""
    grouped = (
        _team_entries(account)
        # A job's entries form one group; an entry of no job is a group of its own.
        .annotate(
            group=Coalesce(
                Cast("job_id", output_field=CharField()),
                Concat(Value("entry:"), Cast("id", output_field=CharField())),
                output_field=CharField(),
            )
        )
        .values("group")
        .annotate(
            first_id=Min("id"),
            at=Min("created_at"),
            job_key=Max(Cast("job_id", output_field=CharField())),
            held=Sum("held_delta", filter=Q(kind=Kind.HOLD), default=0),
            captured=Sum("held_delta", filter=Q(kind=Kind.CAPTURE), default=0),
            released=Sum("held_delta", filter=Q(kind=Kind.RELEASE), default=0),
            images=Count("id", filter=Q(kind=Kind.CAPTURE)),
            available_change=Sum("available_delta", default=0),
        )
        # A job sits where it was accepted (its hold), so a running job does not move down.
        .order_by("-first_id")
    )
    page = Paginator(grouped, ROWS_PER_PAGE).get_page(page_number)
    groups = list(page.object_list)
    job_ids = [UUID(group["job_key"]) for group in groups if group["job_key"]]
    jobs = {job.id: job for job in GenerationJob.objects.filter(id__in=job_ids, team_id=account.team_id)}
    entry_ids = [group["first_id"] for group in groups if not group["job_key"]]
    entries = {entry.id: entry for entry in _team_entries(account).filter(id__in=entry_ids).select_related("actor")}
    actors = LedgerActors(account.team) if entries else None
    rows: list[JobActivity | EntryActivity] = []
    for group in groups:
        if group["job_key"]:
            job = jobs.get(UUID(group["job_key"]))
            if job is None:  # never: an account's entries are its team's jobs'
                continue
            rows.append(
                JobActivity(
                    job=job,
                    at=group["at"],
                    held=group["held"],
                    spent=-group["captured"],
                    released=-group["released"],
                    images=group["images"],
                    available_change=group["available_change"],
                )
            )
        else:
            entry = entries[group["first_id"]]
            assert actors is not None
            rows.append(EntryActivity(entry=entry, actor=actors.shown(entry)))
    return page, rows


def ledger_page(*, account: CreditAccount, page_number: str | None) -> tuple[Page, list[tuple[LedgerEntry, str]]]:
    """One page of the account's entries, newest first, each with its job (for its prompt) and
    the actor the team is shown (credits.actors)."""
    entries = _team_entries(account).select_related("actor", "job").order_by("-id")
    page = Paginator(entries, ROWS_PER_PAGE).get_page(page_number)
    actors = LedgerActors(account.team)
    return page, [(entry, actors.shown(entry)) for entry in page]
