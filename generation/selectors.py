"""Reads that are more than a one-line query."""

from __future__ import annotations

from django.db.models import Case, Count, OuterRef, Prefetch, QuerySet, Subquery, When
from django.db.models.functions import Coalesce

from accounts.models import Team, User
from credits.models import LedgerEntry
from generation.models import ACTIVE_STATUSES, FINISHED_STATUSES, GeneratedOutput, GenerationJob, JobReference, Look


def job_queryset_for_team(team: Team) -> QuerySet[GenerationJob]:
    """The team's jobs with everything the job representation shows, in a fixed number of queries
    (the queue position of queued jobs included, as a subquery rather than a count per job; its
    rule is GenerationJob.queued_ahead)."""
    queued_ahead = (
        GenerationJob.objects.filter(
            GenerationJob.queued_ahead(team_id=OuterRef("team_id"), created_at=OuterRef("created_at"))
        )
        .order_by()
        .values("team_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    return (
        GenerationJob.objects.filter(team=team)
        .annotate(
            queued_ahead_count=Case(
                When(status=GenerationJob.Status.QUEUED, then=Coalesce(Subquery(queued_ahead), 0)),
                default=None,
            )
        )
        .select_related("source_asset")
        .prefetch_related(
            Prefetch("outputs", queryset=GeneratedOutput.objects.order_by("index")),
            Prefetch("reference_links", queryset=JobReference.objects.order_by("id")),
            Prefetch("ledger_entries", queryset=LedgerEntry.objects.only("id", "job_id", "kind", "held_delta")),
        )
    )


def job_list_for_team(
    *, team: Team, status: str | None = None, kind: str | None = None, tab_id: int | None = None
) -> QuerySet[GenerationJob]:
    jobs = job_queryset_for_team(team).order_by("-created_at")
    if status:
        jobs = jobs.filter(status=status)
    if kind:
        jobs = jobs.filter(kind=kind)
    if tab_id is not None:
        jobs = jobs.filter(tab_id=tab_id)
    return jobs


def activity_for_user(*, team: Team, user: User) -> dict[str, list[GenerationJob]]:
    mine = job_queryset_for_team(team).filter(created_by=user)
    return {
        "active": list(mine.filter(status__in=ACTIVE_STATUSES).order_by("created_at")),
        "unseen_finished": list(
            mine.filter(status__in=FINISHED_STATUSES, seen_at__isnull=True).order_by("-finished_at")
        ),
    }


def look_list_for_team(*, team: Team) -> QuerySet[Look]:
    return Look.objects.filter(team=team).select_related("output", "job").order_by("-created_at")
