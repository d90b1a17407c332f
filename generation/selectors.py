"""Reads that are more than a one-line query."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cache
from uuid import UUID

from django.db.models import (
    Case,
    Count,
    Exists,
    JSONField,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    When,
)
from django.db.models.functions import Coalesce

from accounts.models import Team, User
from config.db import JSONArrayAgg, JSONRow
from credits.models import CreditAccount, LedgerEntry
from credits.services import JobCredits, job_credits
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
                _queued_ahead_in_team(team_id=job.team_id, created_at=job.created_at)
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


def _queued_ahead_in_team(*, team_id: object, created_at: object) -> Q:
    """A queued job's own team's queued jobs created before it (values, or OuterRefs in a
    subquery): within a team jobs keep their order; across teams `QueueSnapshot.place` ranks."""
    return Q(team_id=team_id, status=GenerationJob.Status.QUEUED, created_at__lt=created_at)


class QueuePlaces:
    """The queue places of one answer or one page: the snapshot is read once, and only if a
    queued job asks. What the API's `queue_position`, the studio's panel, the queue panel and
    their ETags all call, so they give the same number."""

    def __init__(self) -> None:
        self._snapshot: QueueSnapshot | None = None

    def of(self, job: GenerationJob) -> QueuePlace | None:
        if job.status != GenerationJob.Status.QUEUED:
            return None
        if self._snapshot is None:
            self._snapshot = queue_snapshot()
        return self._snapshot.place(job)


@dataclass(frozen=True)
class TeamActivity:
    """What every signed-in page shows live (generation/pages/activity.py): the team's balance
    and its queued and running jobs, all members' (the queue panel), oldest first."""

    balance: int
    active: list[GenerationJob]

    def active_of(self, user: User) -> list[GenerationJob]:
        return [job for job in self.active if job.created_by_id == user.id]

    def busy_tab_ids(self, user: User) -> set[int]:
        """The person's studio tabs with a job queued or running (each gets a busy dot)."""
        return {job.tab_id for job in self.active_of(user) if job.tab_id is not None}


def team_activity(*, team: Team) -> TeamActivity:
    """Two queries whatever the number of jobs (the team's active-jobs quota bounds the list).
    The balance is read, never created: a page draws, it does not write."""
    balance = CreditAccount.objects.filter(team=team).values_list("available", flat=True).first()
    active: list[GenerationJob] = list(
        GenerationJob.objects.filter(team=team, status__in=ACTIVE_STATUSES)
        .select_related("created_by")
        .annotate(queued_ahead_count=_queued_ahead_count())
        .order_by("created_at", "id")
    )
    return TeamActivity(balance=balance or 0, active=active)


def jobs_unseen_by(*, team: Team, user: User, limit: int, except_tab_id: int | None = None) -> list[GenerationJob]:
    """The person's finished jobs they have not seen yet, newest first (the index
    `generation_job_activity` serves it). A tab whose panel the person is watching shows its
    jobs finishing there: `except_tab_id` leaves those out."""
    unseen = GenerationJob.objects.filter(
        team=team, created_by=user, status__in=FINISHED_STATUSES, seen_at__isnull=True
    )
    if except_tab_id is not None:
        unseen = unseen.exclude(tab_id=except_tab_id)
    return list(unseen.order_by("-finished_at")[:limit])


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


@dataclass(frozen=True)
class JobInputLink:
    """A reference or the sketch of a job, as the job representation shows it."""

    id: int
    asset_id: UUID
    weight: float
    role: str


SHOWN_INPUT_ROLES = (JobReference.Role.REFERENCE, JobReference.Role.SKETCH)  # a mask is not shown
# What the API, the job page and the progress panel show of an output, carried in the job's row.
OUTPUT_ROW_FIELDS = (
    "index",
    "file",
    "poster",
    "mime",
    "width",
    "height",
    "bytes",
    "provider_report",
    "carried_from_id",
)


def _look_of_output() -> Subquery:
    """The look an output is collected as, for the lightbox's Remix and Delete: its own, or for an
    output a retry carried over, the look of the output it was carried from (where it was collected)."""
    return Subquery(
        Look.objects.filter(output_id=Coalesce(OuterRef("carried_from_id"), OuterRef("id"))).values("id")[:1]
    )


def _output_rows() -> Subquery:
    """A job's outputs as one JSON array in the job's own row: a poll reads one row whatever the
    image count, and the ETag and the answer are drawn from the same read."""
    rows = (
        GeneratedOutput.objects.filter(job_id=OuterRef("pk"))
        .order_by()
        .values("job_id")
        .annotate(rows=JSONArrayAgg(JSONRow(**{name: name for name in OUTPUT_ROW_FIELDS}, look_id=_look_of_output())))
        .values("rows")
    )
    return Subquery(rows)


def _queued_ahead_count() -> Case:
    """A queued job's place in its team's order (`queued_ahead_count`), as a subquery rather than
    a count per job: `QueueSnapshot.place` turns it into the place in the fair order."""
    queued_ahead = (
        GenerationJob.objects.filter(
            _queued_ahead_in_team(team_id=OuterRef("team_id"), created_at=OuterRef("created_at"))
        )
        .order_by()
        .values("team_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Case(When(status=GenerationJob.Status.QUEUED, then=Coalesce(Subquery(queued_ahead), 0)), default=None)


@cache
def _job_rows() -> QuerySet[GenerationJob]:
    """The annotated queryset of `job_queryset_for_team`, built once per process: resolving its
    subqueries costs more than running them. Only ever cloned (filtered), never evaluated."""
    input_links = (
        JobReference.objects.filter(job_id=OuterRef("pk"), role__in=SHOWN_INPUT_ROLES)
        .order_by()
        .values("job_id")
        .annotate(rows=JSONArrayAgg(JSONRow(id="id", asset_id="asset_id", weight="weight", role="role")))
        .values("rows")
    )
    ledger_totals = (
        LedgerEntry.objects.filter(job_id=OuterRef("pk"))
        .order_by()
        .values("job_id")
        .annotate(
            totals=JSONRow(
                **{
                    kind.value: Sum("held_delta", filter=Q(kind=kind), default=0)
                    for kind in (LedgerEntry.Kind.HOLD, LedgerEntry.Kind.CAPTURE, LedgerEntry.Kind.RELEASE)
                }
            )
        )
        .values("totals")
    )
    return GenerationJob.objects.annotate(
        queued_ahead_count=_queued_ahead_count(),
        output_rows=_output_rows(),
        input_link_rows=Subquery(input_links),
        ledger_totals=Subquery(ledger_totals, output_field=JSONField()),
    ).select_related("source_asset")


def job_queryset_for_team(team: Team) -> QuerySet[GenerationJob]:
    """The team's jobs, each row carrying everything the job representation shows, in one query
    whatever the number of jobs and images: its outputs (`job_outputs_of`), its source asset, its
    references and sketch (`job_input_links`), its ledger's totals (`job_credits_of`), and a
    queued job's place in its team's order. The status poll answers a 304 from this row."""
    return _job_rows().filter(team=team)


def job_input_links(job: GenerationJob) -> list[JobInputLink]:
    """The job's references and sketch in the order they were given, from its row when
    `job_queryset_for_team` read it."""
    if hasattr(job, "input_link_rows"):
        rows = job.input_link_rows or []
    else:
        rows = list(job.reference_links.filter(role__in=SHOWN_INPUT_ROLES).values("id", "asset_id", "weight", "role"))
    links = [
        # SQLite's JSON holds a UUID as 32 hex digits, PostgreSQL's with dashes: UUID() reads both.
        JobInputLink(id=row["id"], asset_id=UUID(str(row["asset_id"])), weight=row["weight"], role=row["role"])
        for row in rows
    ]
    return sorted(links, key=lambda link: link.id)


def job_credits_of(job: GenerationJob) -> JobCredits:
    """The job's credits, from its row when `job_queryset_for_team` read it. Captures and releases
    take from what is held, hence their sign (credits.services.job_credits)."""
    if not hasattr(job, "ledger_totals"):
        return job_credits(job.id)
    totals = job.ledger_totals or {}  # null: no entry yet
    return JobCredits(
        held=totals.get(LedgerEntry.Kind.HOLD, 0),
        captured=-totals.get(LedgerEntry.Kind.CAPTURE, 0),
        released=-totals.get(LedgerEntry.Kind.RELEASE, 0),
    )


def job_progress_job(*, job_id: UUID, user: User) -> GenerationJob | None:
    """A job of a team the person belongs to, with what its progress panel shows, in one query
    (the job page's poll: like the tab's, it needs no lookup of the session's team first)."""
    return _job_rows().filter(id=job_id, team__memberships__user=user).first()


def tab_progress_job(*, tab_id: int, user: User) -> GenerationJob | None:
    """The newest job of a person's studio tab (in a team they belong to) with what its progress
    panel shows, outputs included, in one query whatever the image count: the poll's ETag and its
    panel are both drawn from it."""
    return (
        GenerationJob.objects.filter(tab_id=tab_id, tab__user=user, tab__team__memberships__user=user)
        .select_related("tab")
        .annotate(queued_ahead_count=_queued_ahead_count(), output_rows=_output_rows())
        .order_by("-created_at")
        .first()
    )


def job_outputs_of(job: GenerationJob) -> list[GeneratedOutput]:
    """The job's outputs by index, from its row when `job_queryset_for_team` or `tab_progress_job`
    read it (unsaved instances: for showing, not for saving), else read now."""
    if not hasattr(job, "output_rows"):
        return list(job.outputs.all())  # ordered by index (the model's ordering)
    outputs = []
    for row in job.output_rows or []:
        row = dict(row)
        look_id = row.pop("look_id", None)
        report = row["provider_report"]
        if isinstance(report, str):  # SQLite's JSON_OBJECT embeds a JSON column as its text
            report = json.loads(report)
        output = GeneratedOutput(job_id=job.id, **{**row, "provider_report": report})
        # The look it is collected as (None: not collected yet, or deleted), for `output_views`.
        output.row_look_id = UUID(str(look_id)) if look_id else None  # type: ignore[attr-defined]
        outputs.append(output)
    return sorted(outputs, key=lambda output: output.index)


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


@dataclass(frozen=True)
class JobChain:
    """A job and its retries as one generation (generation/services/retry.py): the Jobs page
    shows the latest attempt's state and outputs, and every attempt in its history."""

    latest: GenerationJob
    attempts: list[GenerationJob]  # oldest first; the latest is the last

    @property
    def retried(self) -> bool:
        return len(self.attempts) > 1


def job_chain_heads_for_team(*, team: Team, status: str | None = None) -> QuerySet[GenerationJob]:
    """The latest job of each of the team's retry chains, newest first: one row per generation,
    to paginate (then `job_chains_of` reads the page's chains). `status` is the latest job's, so
    "failed" lists only what a retry has not fixed since. Plain rows: cheap to count and slice."""
    chain_id = Coalesce("chain_root_id", "id")
    newer_in_chain = GenerationJob.objects.filter(chain_root_id=OuterRef("chain_id")).filter(
        Q(created_at__gt=OuterRef("created_at")) | Q(created_at=OuterRef("created_at"), id__gt=OuterRef("id"))
    )
    heads = (
        GenerationJob.objects.filter(team=team)
        .annotate(chain_id=chain_id)
        .filter(~Exists(newer_in_chain))
        .order_by("-created_at", "-id")
    )
    if status:
        heads = heads.filter(status=status)
    return heads


def job_chains_of(*, team: Team, heads: Iterable[GenerationJob]) -> list[JobChain]:
    """The chains whose latest jobs are `heads` (in their order), every attempt with its outputs
    and creator, in one query whatever the number of chains, attempts and images."""
    heads = list(heads)
    chain_ids = {head.chain_root_or_self_id for head in heads}
    members = (
        job_queryset_for_team(team)
        .filter(Q(id__in=chain_ids) | Q(chain_root_id__in=chain_ids))
        .select_related("created_by")
        .order_by("created_at", "id")
    )
    attempts: dict[UUID, list[GenerationJob]] = {chain_id: [] for chain_id in chain_ids}
    for member in members:
        attempts[member.chain_root_or_self_id].append(member)
    chains = []
    for head in heads:
        chain = attempts[head.chain_root_or_self_id]
        latest = next((member for member in chain if member.id == head.id), head)
        chains.append(JobChain(latest=latest, attempts=chain))
    return chains


def activity_for_user(*, team: Team, user: User) -> dict[str, list[GenerationJob]]:
    mine = job_queryset_for_team(team).filter(created_by=user)
    return {
        "active": list(mine.filter(status__in=ACTIVE_STATUSES).order_by("created_at")),
        "unseen_finished": list(
            mine.filter(status__in=FINISHED_STATUSES, seen_at__isnull=True).order_by("-finished_at")
        ),
    }


class LookKind(StrEnum):
    """What the collection's kind filter offers: an image (also an edit's) or a clip."""

    IMAGE = "image"
    CLIP = "clip"


@dataclass(frozen=True)
class LookFilters:
    """What the collection is narrowed to; each field left empty narrows nothing."""

    prompt: str = ""  # contained in the job's prompt, in any case
    created_from: datetime | None = None  # inclusive
    created_before: datetime | None = None  # exclusive
    kind: LookKind | None = None
    provider: str = ""


SEARCH_WORDS = 8  # the most words of a search used: each is a LIKE over the team's prompts


def search_words(text: str) -> list[str]:
    """The words of a collection search, plurals cut to their stem (foxes -> fox, teapots -> teapot)."""
    words = []
    for word in text.lower().split()[:SEARCH_WORDS]:
        if len(word) > 4 and word.endswith("es"):
            word = word[:-2]
        elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        words.append(word)
    return words


def look_list_for_team(*, team: Team, filters: LookFilters | None = None) -> QuerySet[Look]:
    """The team's looks, newest first, each with its output and job (one query for a page of
    them: the collection shows the prompt, the date and the image of each)."""
    looks = Look.objects.filter(team=team)
    if filters is not None:
        # Each word of the search, in any order (icontains: UPPER(...) LIKE UPPER(...) on
        # PostgreSQL, LIKE on SQLite, case-blind there for ASCII letters only; Django escapes the
        # person's own % and _). A plural also finds the singular: "teapots" finds "teapot".
        for word in search_words(filters.prompt):
            looks = looks.filter(job__prompt__icontains=word)
        if filters.created_from is not None:
            looks = looks.filter(created_at__gte=filters.created_from)
        if filters.created_before is not None:
            looks = looks.filter(created_at__lt=filters.created_before)
        if filters.kind == LookKind.CLIP:
            looks = looks.filter(job__kind=GenerationJob.Kind.VIDEO)
        elif filters.kind == LookKind.IMAGE:
            looks = looks.exclude(job__kind=GenerationJob.Kind.VIDEO)
        if filters.provider:
            looks = looks.filter(job__provider=filters.provider)
    return looks.select_related("output", "job").order_by("-created_at")
