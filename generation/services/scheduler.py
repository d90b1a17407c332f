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
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Max, Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import Team
from generation.metrics import observe_job_started
from generation.models import GenerationJob, JobEvent, TeamTurn
from generation.services.events import event_data, job_event_record
from generation.services.limiter import concurrency_saturated, rate_blocked, rate_blocked_keys

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

    1. Ask the rate limiter which providers have no turn soon (Redis or the database; before
       the lock, so the lock is never held across it).
    2. Serialize with every other claim.
    3. One statement picks and takes the job (`_CLAIM_SQL`: running jobs counted per team and
       provider, teams at their cap and providers at their limit left out, teams in turn, a
       team's oldest job first) and returns it; one more records the team's turn. Holding the
       lock for two statements, not a dozen, keeps claims from queueing behind each other when
       a hundred threads of one process share its interpreter.
    4. A job's first start writes its `job.started` event (and webhook deliveries) in the same
       transaction: the outbox (generation/services/events.py).
    """
    blocked = rate_blocked_keys()
    with transaction.atomic():
        _serialize_claims()
        now = timezone.now()  # after the lock: claims start in the order they are made
        db_now = connection.ops.adapt_datetimefield_value(now)
        sql, params = _claim_statement(suspects=suspects, job_id=job_id, blocked=blocked)
        with connection.cursor() as cursor:
            cursor.execute(
                sql,
                [
                    *params,
                    db_now,  # run_after
                    settings.TEAM_MAX_RUNNING_JOBS,
                    GenerationJob.Status.RUNNING,
                    token,
                    worker,
                    connection.ops.adapt_datetimefield_value(now + timedelta(seconds=settings.JOB_LEASE_SECONDS)),
                    db_now,  # heartbeat_at
                    db_now,  # started_at on a first start
                    ran_alone,
                    db_now,  # is this its first start?
                ],
            )
            row = cursor.fetchone()
            if row is None:
                return None
            claimed_id, team_id, suspect_crashes, provider, created_at, first_start, completed, total = row
            cursor.execute(_TURN_SQL.format(turn=TeamTurn._meta.db_table), [team_id, db_now])
        if first_start:
            # The outbox: `job.started` commits with the claim (a rerun after a rescue is no new start).
            job_event_record(
                job_id=UUID(str(claimed_id)),
                team_id=team_id,
                type=JobEvent.Type.STARTED,
                data=event_data(status=GenerationJob.Status.RUNNING, completed=completed, total=total),
            )
    if first_start:  # a rerun after a pause or a rescue is not a new wait
        waited = (now - _as_datetime(created_at)).total_seconds()
        observe_job_started(waited, provider=provider)
    return ClaimedJob(job_id=str(UUID(str(claimed_id))), suspect=suspect_crashes > 0)


# The claim, in SQL that PostgreSQL and SQLite both run. Its parameters: the limits and the
# blocked providers (`_claim_statement`), then now, the default team cap, and the values the
# UPDATE writes.
_CLAIM_SQL = """
WITH running AS (
    SELECT team_id, provider, model, COUNT(*) AS n FROM {job} WHERE status = 'running'
    GROUP BY team_id, provider, model
), team_load AS (
    SELECT team_id, SUM(n) AS n FROM running GROUP BY team_id
), limits (provider, model, most) AS (
    VALUES {limit_rows}
), saturated AS (
    SELECT l.provider, l.model FROM limits l
    WHERE l.most <= (
        SELECT COALESCE(SUM(r.n), 0) FROM running r
        WHERE r.provider = l.provider AND (l.model = '' OR r.model = l.model)
    )
), blocked (provider, model) AS (
    VALUES {blocked_rows}
), candidates AS (
    SELECT j.id, j.team_id, j.created_at FROM {job} j
    JOIN {team} t ON t.id = j.team_id
    LEFT JOIN team_load tl ON tl.team_id = j.team_id
    WHERE j.status = 'queued' AND j.cancel_requested = {false} AND {pool} {one_job}
      AND (j.run_after IS NULL OR j.run_after <= %s)
      AND COALESCE(tl.n, 0) < COALESCE(t.quota_running_jobs, %s)
      AND NOT EXISTS (
          SELECT 1 FROM saturated s WHERE s.provider = j.provider AND (s.model = '' OR s.model = j.model)
      )
      AND NOT EXISTS (
          SELECT 1 FROM blocked b WHERE b.provider = j.provider AND (b.model = '' OR b.model = j.model)
      )
), oldest AS (
    SELECT team_id, MIN(created_at) AS at FROM candidates GROUP BY team_id
), picked AS (
    SELECT c.id FROM candidates c
    JOIN oldest o ON o.team_id = c.team_id
    LEFT JOIN {turn} tt ON tt.team_id = c.team_id
    ORDER BY CASE WHEN tt.last_served_at IS NULL THEN 0 ELSE 1 END, COALESCE(tt.last_served_at, o.at),
             o.at, c.team_id, c.created_at, c.id
    LIMIT 1
)
UPDATE {job} SET
    status = %s, lease_owner = %s, lease_worker = %s, lease_expires_at = %s, heartbeat_at = %s,
    attempts = attempts + 1, started_at = COALESCE(started_at, %s), claim_completed = completed_outputs,
    ran_alone = %s, run_after = NULL
WHERE id = (SELECT id FROM picked) AND status = 'queued'
RETURNING id, team_id, suspect_crashes, provider, created_at, CASE WHEN started_at = %s THEN 1 ELSE 0 END,
    completed_outputs, total_outputs
"""

_TURN_SQL = """
INSERT INTO {turn} (team_id, last_served_at) VALUES (%s, %s)
ON CONFLICT (team_id) DO UPDATE SET last_served_at = excluded.last_served_at
"""

# A row that matches no job: VALUES lists cannot be empty.
_NO_MATCH = ("", "", 0)


def _claim_statement(
    *, suspects: bool, job_id: UUID | str | None, blocked: list[tuple[str, str]]
) -> tuple[str, list[Any]]:
    limits = [
        (provider, model, concurrent)
        for (provider, model), (_, concurrent) in settings.PROVIDER_LIMITS.items()
        if concurrent is not None
    ] or [_NO_MATCH]
    blocked_rows = [(provider, model) for provider, model in blocked] or [_NO_MATCH[:2]]
    params: list[Any] = [value for row in limits for value in row]
    params += [value for row in blocked_rows for value in row]
    one_job = ""
    if job_id is not None:
        one_job = "AND j.id = %s"
        params.append(GenerationJob._meta.pk.get_db_prep_value(job_id, connection))  # type: ignore[union-attr]
    sql = _CLAIM_SQL.format(
        job=GenerationJob._meta.db_table,
        team=Team._meta.db_table,
        turn=TeamTurn._meta.db_table,
        limit_rows=", ".join(["(CAST(%s AS VARCHAR(20)), CAST(%s AS VARCHAR(60)), CAST(%s AS INTEGER))"] * len(limits)),
        blocked_rows=", ".join(["(CAST(%s AS VARCHAR(20)), CAST(%s AS VARCHAR(60)))"] * len(blocked_rows)),
        false="FALSE" if connection.vendor == "postgresql" else "0",
        pool="j.suspect_crashes > 0" if suspects else "j.suspect_crashes = 0",
        one_job=one_job,
    )
    return sql, params


def _as_datetime(value: object) -> datetime:
    """A timestamp as the database returned it: aware (PostgreSQL), or naive UTC or a string
    (SQLite)."""
    parsed = value if isinstance(value, datetime) else parse_datetime(str(value))
    if parsed is None:
        raise ValueError(f"not a timestamp: {value!r}")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)


def _serialize_claims() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CLAIM_LOCK_KEY])


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
