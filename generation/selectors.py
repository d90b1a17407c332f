"""Reads that are more than a one-line query."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from django.db.models import Case, Count, Max, Min, OuterRef, Prefetch, QuerySet, Subquery, When
from django.db.models.functions import Coalesce

from accounts.models import Team, User
from credits.models import LedgerEntry
from generation.models import ACTIVE_STATUSES, FINISHED_STATUSES, GeneratedOutput, GenerationJob, JobReference, Look
from generation.services.scheduler import RunningLoad, team_cap, turn_order_key


class WaitingReason(StrEnum):
    TEAM_LIMIT = "team_limit"  # the team runs as many jobs as its cap allows
    PROVIDER_LIMIT = "provider_limit"  # the job's provider (or model) is at its limit for now
    CAPACITY = "capacity"  # waiting for a free worker slot, in the fair order


@dataclass(frozen=True)
class QueuePlace:
    position: int  # 1: the next job the fair order starts
    waiting_reason: WaitingReason


@dataclass
class QueueSnapshot:
    """The queue as the fair scheduler sees it (scheduler.py), read in one query: each team's
    queued jobs, its turn and cap, and the running jobs per team and provider. The one home of
    the queue position: the API, the pages and the studio poll's ETag all ask it."""

    queued: Counter[int] = field(default_factory=Counter)
    turn: dict[int, int] = field(default_factory=dict)  # team -> its rank in the turn order
    caps: dict[int, int] = field(default_factory=dict)
    running: RunningLoad = field(default_factory=RunningLoad)

    def place(self, job: GenerationJob, ahead_in_team: int | None = None) -> QueuePlace | None:
        """Where a queued job stands (None once it is not queued). In the fair order the teams
        take turns, so the jobs ahead of the k-th queued job of its team are the k-1 before it
        plus, from each other team, its first k-1 jobs, and its k-th too when that team's turn
        comes first. `ahead_in_team` is k-1 (`job_queryset_for_team` annotates it)."""
        if job.status != GenerationJob.Status.QUEUED:
            return None
        if ahead_in_team is None:
            ahead_in_team = getattr(job, "queued_ahead_count", None)
        if ahead_in_team is None:
            ahead_in_team = GenerationJob.objects.filter(
                GenerationJob.queued_ahead(team_id=job.team_id, created_at=job.created_at)
            ).count()
        own_turn = self.turn.get(job.team_id, len(self.turn))
        ahead = ahead_in_team + sum(
            min(count, ahead_in_team + (1 if self.turn[team_id] < own_turn else 0))
            for team_id, count in self.queued.items()
            if team_id != job.team_id
        )
        return QueuePlace(position=ahead + 1, waiting_reason=self._reason(job))

    def _reason(self, job: GenerationJob) -> WaitingReason:
        cap = self.caps.get(job.team_id, team_cap(None))
        if self.running.per_team[job.team_id] >= cap:
            return WaitingReason.TEAM_LIMIT
        if self.running.provider_blocked(job.provider, job.model):
            return WaitingReason.PROVIDER_LIMIT
        return WaitingReason.CAPACITY


def queue_snapshot() -> QueueSnapshot:
    snapshot = QueueSnapshot()
    oldest: dict[int, datetime] = {}
    served: dict[int, datetime | None] = {}
    rows = (
        GenerationJob.objects.filter(status__in=ACTIVE_STATUSES)
        .order_by()
        .values("status", "team_id", "provider", "model")
        .annotate(
            n=Count("id"),
            first=Min("created_at"),
            served=Max("team__turn__last_served_at"),
            cap=Max("team__quota_running_jobs"),
        )
    )
    for row in rows:
        team_id = row["team_id"]
        snapshot.caps[team_id] = team_cap(row["cap"])
        if row["status"] == GenerationJob.Status.RUNNING:
            snapshot.running.add(team_id, row["provider"], row["model"], row["n"])
            continue
        snapshot.queued[team_id] += row["n"]
        oldest[team_id] = min(oldest.get(team_id, row["first"]), row["first"])
        served[team_id] = row["served"]
    ranked = sorted(oldest, key=lambda team_id: turn_order_key(served[team_id], oldest[team_id]))
    snapshot.turn = {team_id: rank for rank, team_id in enumerate(ranked)}
    return snapshot


def job_queryset_for_team(team: Team) -> QuerySet[GenerationJob]:
    """The team's jobs with everything the job representation shows, in a fixed number of queries
    (each queued job's place in its team's order included, as a subquery rather than a count per
    job: `QueueSnapshot.place` turns it into the place in the fair order)."""
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
