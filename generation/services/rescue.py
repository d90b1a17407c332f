"""The rescuer: nothing a dead worker, a hung step or a lost message leaves behind stays there.

Beat publishes it every RESCUE_INTERVAL_SECONDS to a queue of its own (`rescue`), which a
process of its own consumes, so it never waits behind jobs. Running it twice (two beats by
mistake) does nothing twice: a pass first takes the rescuer's row with a conditional UPDATE, so
there is at most one pass per interval, and every change it makes is conditional on what it saw.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Q, When
from django.utils import timezone

from generation.metrics import RescueKind, count_rescue
from generation.models import GenerationJob, WorkerHeartbeat
from generation.services.dispatch import job_dispatch, pool_queue_length
from generation.services.lifecycle import job_finish
from generation.services.recovery import Interruption, RequeueOutcome, job_requeue
from generation.services.scheduler import claimable_count

logger = logging.getLogger(__name__)

BATCH = 200
RESCUER_ROW = "rescuer"
# Worker heartbeats older than this are removed (the processes are long gone).
HEARTBEAT_RETENTION = timedelta(days=1)


@dataclass
class RescueReport:
    ran: bool = True  # False: another rescuer ran less than an interval ago
    requeued: int = 0
    failed: int = 0
    canceled: int = 0
    redispatched: int = 0  # wake-ups published for jobs whose wake-up was lost
    waiting: int = 0  # stale leases left for a later pass (the database was just back)


def jobs_rescue() -> RescueReport:
    """1. Take this interval's pass (or return: another rescuer has it).
    2. Running jobs whose lease expired a little while ago (`_rescue_stale`).
    3. Queued jobs with a cancel request (one that arrived while the job was being queued
       again): canceled.
    4. Lost wake-ups (`_wake_idle_workers`).
    """
    db_up_since = _take_pass()
    if db_up_since is None:
        return RescueReport(ran=False)
    report = RescueReport()
    now = timezone.now()
    _rescue_stale(now, db_up_since, report)

    for job_id in GenerationJob.objects.filter(status=GenerationJob.Status.QUEUED, cancel_requested=True).values_list(
        "id", flat=True
    )[:BATCH]:
        try:
            report.canceled += job_finish(
                job_id=job_id, fence=Q(status=GenerationJob.Status.QUEUED), status=GenerationJob.Status.CANCELED
            )
        except Exception:  # noqa: BLE001 - one bad job must not stop the rescue of the others
            logger.exception("cancel of queued job %s failed; will try again next pass", job_id)

    report.redispatched = _wake_idle_workers(now)

    WorkerHeartbeat.objects.filter(beat_at__lt=now - HEARTBEAT_RETENTION).exclude(name=RESCUER_ROW).delete()
    count_rescue(RescueKind.REQUEUED, report.requeued)
    count_rescue(RescueKind.FAILED, report.failed)
    count_rescue(RescueKind.CANCELED, report.canceled)
    count_rescue(RescueKind.REDISPATCHED, report.redispatched)
    if report.requeued or report.failed or report.canceled or report.redispatched or report.waiting:
        logger.info("rescue: %s", report)
    return report


def _wake_idle_workers(now: datetime) -> int:
    """Publish the wake-ups that were lost, and only those.

    Messages only wake workers (scheduler.py); a worker that finishes a job takes the next one
    itself. A wake-up can still be lost: a publish during a broker outage, a message consumed
    while every waiting job was held back by its team's cap or its provider's limit. So: when
    jobs that could start now have waited JOB_REDISPATCH_AFTER_SECONDS while live workers of
    their pool have free slots, publish one wake-up per such job, at most one per free slot.
    Jobs that merely wait their turn (no free slot, a team at its cap, a provider at its limit)
    get nothing, so the broker holds at most a small constant more messages than queued jobs,
    however long they wait.
    """
    alive_since = now - timedelta(seconds=settings.JOB_LEASE_SECONDS)
    free_slots: dict[str, int] = {}
    for pool, slots, running in WorkerHeartbeat.objects.filter(
        beat_at__gte=alive_since, stopping=False, pool__in=("jobs", "suspects")
    ).values_list("pool", "slots", "running_jobs"):
        free_slots[pool] = free_slots.get(pool, 0) + max(0, slots - running)
    due_before = now - timedelta(seconds=settings.JOB_REDISPATCH_AFTER_SECONDS)
    woken = 0
    for pool, free in free_slots.items():
        if free <= 0:
            continue
        suspects = pool == "suspects"
        waiting = claimable_count(suspects=suspects, due_before=due_before, limit=free)
        if waiting <= 0:
            continue
        # Wake-ups still in the broker reach a free slot by themselves: a worker whose consumer
        # stalled while its lifeline beats must not collect another batch at every pass.
        pending = pool_queue_length(suspect=suspects)
        if pending is None:
            continue  # the broker does not answer: a publish would not either
        for _ in range(waiting - pending):
            if not job_dispatch("", suspect=suspects):
                break  # the broker went away: the next pass tries again
            woken += 1
    return woken


def _take_pass() -> datetime | None:
    """Claim this interval's pass; returns since when passes have run without a gap (the database
    and the rescuer were up), or None when another rescuer ran less than an interval ago."""
    interval = timedelta(seconds=settings.RESCUE_INTERVAL_SECONDS)
    now = timezone.now()
    WorkerHeartbeat.objects.get_or_create(
        name=RESCUER_ROW, defaults={"beat_at": now - HEARTBEAT_RETENTION, "up_since": now, "started_at": now}
    )
    taken = WorkerHeartbeat.objects.filter(name=RESCUER_ROW, beat_at__lte=now - interval * 0.8).update(
        # A gap of more than two intervals means the database (or the broker, or beat) was away.
        up_since=Case(When(beat_at__lt=now - interval * 2.5, then=now), default=F("up_since")),
        beat_at=now,
    )
    if not taken:
        return None
    return WorkerHeartbeat.objects.values_list("up_since", flat=True).get(name=RESCUER_ROW)


def _rescue_stale(now: datetime, db_up_since: datetime, report: RescueReport) -> None:
    """Running jobs whose lease expired, by who caused it:

    - the worker still beats (it beat after the lease ran out): it lives, but a step of the
      job hung past its bound; our fault, so a pause (OUTAGE);
    - the worker stopped beating before the lease ran out: it died (WORKER_DIED), which may be
      the job's doing (see job_requeue). Unless the database itself was away within the last
      lease: then the worker may have been unable to beat, and the decision waits.
    A lease is looked at only a little after it ran out, so that a live worker has beaten since.
    """
    lease = timedelta(seconds=settings.JOB_LEASE_SECONDS)
    # Long enough for a live worker to have beaten (and renewed) since the expiry.
    settle = timedelta(seconds=max(2 * settings.JOB_CANCEL_POLL_SECONDS + 1, settings.JOB_LEASE_SECONDS / 3))
    stale = list(
        GenerationJob.objects.filter(status=GenerationJob.Status.RUNNING, lease_expires_at__lt=now - settle).values(
            "id", "lease_owner", "lease_worker", "lease_expires_at"
        )[:BATCH]
    )
    beats = dict(
        WorkerHeartbeat.objects.filter(name__in={job["lease_worker"] for job in stale}).values_list("name", "beat_at")
    )
    database_settled = now - db_up_since >= lease + settle
    death_numbers: dict[str, int] = {}
    for job in stale:
        beat_at = beats.get(job["lease_worker"])
        expired_at = job["lease_expires_at"]
        worker_alive = beat_at is not None and expired_at is not None and beat_at > expired_at
        if not worker_alive and not database_settled:
            report.waiting += 1
            continue
        death_number = None
        if not worker_alive:
            if job["lease_worker"] not in death_numbers:
                death_numbers[job["lease_worker"]] = _number_a_death()
            death_number = death_numbers[job["lease_worker"]]
        interruption = Interruption.OUTAGE if worker_alive else Interruption.WORKER_DIED
        try:
            outcome = job_requeue(
                job_id=job["id"],
                fence=Q(lease_owner=job["lease_owner"], lease_expires_at=job["lease_expires_at"]),
                interruption=interruption,
                part="a step that hung" if worker_alive else "",
                death_number=death_number,
            )
        except Exception:  # noqa: BLE001 - one bad job must not stop the rescue of the others
            logger.exception("rescue of job %s failed; will try again next pass", job["id"])
            continue
        report.requeued += outcome is RequeueOutcome.REQUEUED
        report.failed += outcome is RequeueOutcome.FAILED
        report.canceled += outcome is RequeueOutcome.CANCELED


def _number_a_death() -> int:
    """The next number in the rescuer's count of worker deaths (one per dead worker process)."""
    with transaction.atomic():
        row = WorkerHeartbeat.objects.select_for_update().get(name=RESCUER_ROW)
        row.deaths_seen += 1
        row.save(update_fields=["deaths_seen"])
    return row.deaths_seen
