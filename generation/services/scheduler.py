"""The fair scheduler: which queued job a free worker slot takes next, decided in the database.

The broker's messages only wake workers: a woken worker thread asks `job_claim_next` for the next
job in the fair order and runs it, then asks again, until nothing is left that it may take. A
message therefore never pins a worker to a job that the fair order says must wait.

The fair order (one rule, also behind the queue position in generation/selectors.py):
1. Teams take turns: the team whose job was started least recently goes first (`TeamTurn`), a
   team never served before ahead of all, ties by the team's oldest queued job. One team's flood
   of fifty jobs thus waits behind every other team's next job, not the other way round.
2. A team runs at most its cap of jobs at once (TEAM_MAX_RUNNING_JOBS, or the team's own
   `quota_running_jobs`); past it, its jobs wait (`team_limit`) and other teams go first.
3. Within a team, jobs keep their order; a job whose provider (or model) is at its concurrency
   limit, or out of its request rate for now, is passed over for the team's next job at another
   provider (`provider_limit`), so it does not hold a slot another provider's job could use.
Claims are serialized (a transaction-scoped advisory lock on PostgreSQL; SQLite's write
transactions are serialized already), so two workers can never both take a team's last place
under its cap. A claim is a handful of indexed queries, a few milliseconds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Max, Min, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from generation.models import GenerationJob, TeamTurn
from generation.services.limiter import concurrency_saturated, rate_blocked

# pg_advisory_xact_lock's key for "a job is being claimed" (any number unique in the project).
CLAIM_LOCK_KEY = 0x41544C43  # "ATLC"


@dataclass(frozen=True)
class ClaimedJob:
    job_id: str
    suspect: bool


@dataclass
class RunningLoad:
    """Running jobs counted per team and per provider key ((provider, model) and (provider, ""))."""

    per_team: Counter[int] = field(default_factory=Counter)
    per_provider: Counter[tuple[str, str]] = field(default_factory=Counter)

    @classmethod
    def read(cls) -> RunningLoad:
        load = cls()
        rows = (
            GenerationJob.objects.filter(status=GenerationJob.Status.RUNNING)
            .order_by()
            .values("team_id", "provider", "model")
            .annotate(n=Count("id"))
        )
        for row in rows:
            load.add(row["team_id"], row["provider"], row["model"], row["n"])
        return load

    def add(self, team_id: int, provider: str, model: str, n: int = 1) -> None:
        self.per_team[team_id] += n
        self.per_provider[(provider, model)] += n
        self.per_provider[(provider, "")] += n

    def provider_blocked(self, provider: str, model: str) -> bool:
        return concurrency_saturated(provider, model, self.per_provider) or rate_blocked(provider, model)


def team_cap(override: int | None) -> int:
    return int(override) if override is not None else int(settings.TEAM_MAX_RUNNING_JOBS)


def turn_order_key(last_served_at: datetime | None, oldest_queued: datetime) -> tuple:
    """Sort key of a team in the fair order: never served first, then least recently served."""
    return (last_served_at is not None, last_served_at or oldest_queued, oldest_queued)


def claimable_jobs(*, suspects: bool, now: datetime) -> QuerySet[GenerationJob]:
    """Queued jobs a worker of the pool may start now: not canceled, past their backoff, and
    suspects only in quarantine (docs/architecture.md, "Who caused a fault")."""
    jobs = GenerationJob.objects.filter(status=GenerationJob.Status.QUEUED, cancel_requested=False).filter(
        Q(run_after__isnull=True) | Q(run_after__lte=now)
    )
    return jobs.filter(suspect_crashes__gt=0) if suspects else jobs.filter(suspect_crashes=0)


def job_claim_next(
    *, suspects: bool, token: str, worker: str, ran_alone: bool, job_id: UUID | str | None = None
) -> ClaimedJob | None:
    """Claim the next job in the fair order for a worker of the ordinary pool, or of the
    quarantine pool (`suspects`), and mark it running under the lease `token`; None when
    nothing may start now. `job_id` restricts the choice to that one job (same rules).

    1. Serialize with every other claim; count the running jobs per team and provider.
    2. Group the claimable jobs by team and provider key; drop the keys at their limit and the
       teams at their cap.
    3. Take the first team in turn order, then its oldest job at an open provider, with a
       conditional UPDATE; record the team's turn.
    """
    with transaction.atomic():
        _serialize_claims()
        now = timezone.now()  # after the lock: claims start in the order they are made
        load = RunningLoad.read()
        candidates = claimable_jobs(suspects=suspects, now=now)
        if job_id is not None:
            candidates = candidates.filter(id=job_id)
        groups = (
            candidates.order_by()
            .values("team_id", "provider", "model")
            .annotate(
                oldest=Min("created_at"),
                served=Max("team__turn__last_served_at"),
                cap=Max("team__quota_running_jobs"),
            )
        )
        teams: dict[int, dict] = {}
        blocked: set[tuple[str, str]] = set()
        for group in groups:
            key = (group["provider"], group["model"])
            if key in blocked or load.provider_blocked(*key):
                blocked.add(key)
                continue
            if load.per_team[group["team_id"]] >= team_cap(group["cap"]):
                continue
            team = teams.setdefault(group["team_id"], dict(group))
            team["oldest"] = min(team["oldest"], group["oldest"])
        for team_id in sorted(teams, key=lambda t: turn_order_key(teams[t]["served"], teams[t]["oldest"])):
            open_jobs = candidates.filter(team_id=team_id)
            for provider, model in blocked:
                open_jobs = open_jobs.exclude(provider=provider, model=model)
            job = open_jobs.order_by("created_at", "id").values("id", "suspect_crashes").first()
            if job is not None and _take(job["id"], token=token, worker=worker, ran_alone=ran_alone, now=now):
                if not TeamTurn.objects.filter(team_id=team_id).update(last_served_at=now):
                    TeamTurn.objects.create(team_id=team_id, last_served_at=now)
                return ClaimedJob(job_id=str(job["id"]), suspect=job["suspect_crashes"] > 0)
    return None


def _serialize_claims() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CLAIM_LOCK_KEY])


def _take(job_id: UUID, *, token: str, worker: str, ran_alone: bool, now: datetime) -> bool:
    """The conditional UPDATE that takes the job; it is ours only if exactly one row changed."""
    updated = (
        GenerationJob.objects.filter(id=job_id, status=GenerationJob.Status.QUEUED, cancel_requested=False)
        .filter(Q(run_after__isnull=True) | Q(run_after__lte=now))
        .update(
            status=GenerationJob.Status.RUNNING,
            lease_owner=token,
            lease_worker=worker,
            lease_expires_at=now + timedelta(seconds=settings.JOB_LEASE_SECONDS),
            heartbeat_at=now,
            attempts=F("attempts") + 1,
            started_at=Coalesce(F("started_at"), now),
            claim_completed=F("completed_outputs"),
            ran_alone=ran_alone,
            run_after=None,
        )
    )
    return updated == 1


def claimable_count(*, suspects: bool, due_before: datetime, limit: int) -> int:
    """How many jobs a pool's workers could start now that have waited since before
    `due_before` (at most `limit`): for each team under its cap, its waiting jobs at open
    providers, up to the places left under the cap. The rescuer's measure of lost wake-ups."""
    now = timezone.now()
    load = RunningLoad.read()
    groups = (
        claimable_jobs(suspects=suspects, now=now)
        .filter(dispatched_at__lt=due_before)
        .order_by()
        .values("team_id", "provider", "model")
        .annotate(n=Count("id"), cap=Max("team__quota_running_jobs"))
    )
    waiting: Counter[int] = Counter()
    caps: dict[int, int] = {}
    for group in groups:
        if load.provider_blocked(group["provider"], group["model"]):
            continue
        waiting[group["team_id"]] += group["n"]
        caps[group["team_id"]] = team_cap(group["cap"])
    total = sum(min(n, max(0, caps[team_id] - load.per_team[team_id])) for team_id, n in waiting.items())
    return min(total, limit)
