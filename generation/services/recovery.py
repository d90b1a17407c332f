"""Putting an interrupted run's job back in the queue, and what the interruption costs it.

One place decides, for the worker (its own fault handling) and the rescuer (a dead or stuck
worker) alike; the rule is in docs/architecture.md ("Who caused a fault").
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from generation.models import LEASE_RELEASED, GenerationJob
from generation.providers import errors as provider_errors
from generation.services.dispatch import job_dispatch_on_commit
from generation.services.faults import (
    Backoff,
    outage_budget_spent,
    outage_message,
    poison_message,
    rate_starved_message,
)
from generation.services.lifecycle import job_finish

logger = logging.getLogger(__name__)


class Interruption(StrEnum):
    # A suspect delivered an image in quarantine: back to the ordinary workers, nothing counted.
    CLEARED = "cleared"
    # The worker process died (SIGKILL, OOM, host loss) under the job.
    WORKER_DIED = "worker_died"
    # The job's own run raised an unexpected error (not one of our parts failing).
    JOB_ERROR = "job_error"
    # One of our parts failed under a live worker (database, storage), or a step hung.
    OUTAGE = "outage"
    # Its provider's rate limit has no turn for it for a while (limiter.py): it waits in the
    # queue, not in a worker's slot. Nobody's fault: nothing counted, the attempt given back.
    RATE_LIMITED = "rate_limited"


class RequeueOutcome(StrEnum):
    REQUEUED = "requeued"
    FAILED = "failed"
    CANCELED = "canceled"
    NOT_HELD = "not_held"  # the fence no longer holds: someone else has dealt with the job


def job_requeue(
    *,
    job_id: UUID | str,
    fence: Q,
    interruption: Interruption,
    part: str = "",
    death_number: int | None = None,
    wait_seconds: float = 0.0,
) -> RequeueOutcome:
    """Queue a running job again after `interruption`, with backoff, or end it.

    1. A cancel that was asked for wins: the job ends canceled.
    2. CLEARED, or WORKER_DIED after the run delivered an image: queued again at once, nothing
       counted (the image cleared every suspicion).
    3. WORKER_DIED without a new image: the job becomes (more of) a suspect and runs in the
       quarantine worker, alone, next time. A death there counts towards JOB_POISON_CRASHES,
       which fails it as a poison job, if no other worker died since the job's previous death
       (`death_number` is the rescuer's count of deaths: when workers die all around, a death
       while alone proves nothing). However flaky the machines, 3 x JOB_POISON_CRASHES deaths in
       a row without an image fail it. Backoff grows with the suspicion.
    JOB_ERROR (an unexpected error in its own run; it killed nothing) counts towards
       JOB_POISON_CRASHES directly, without making the job a suspect.
    4. OUTAGE: a pause with backoff, bounded only by the outage budget (time without an image).
    5. RATE_LIMITED: queued again to run after `wait_seconds` (its turn under its provider's rate
       limit), with nothing counted and its attempt given back, as on a shutdown's hand-over.
    Every change is fenced by `fence` (the lease the caller holds or saw expire).
    """
    now = timezone.now()
    with transaction.atomic():
        job = (
            GenerationJob.objects.select_for_update()
            .filter(fence, id=job_id, status=GenerationJob.Status.RUNNING)
            .first()
        )
        if job is None:
            return RequeueOutcome.NOT_HELD
        if job.cancel_requested:
            job_finish(job_id=job.id, fence=fence, status=GenerationJob.Status.CANCELED)
            return RequeueOutcome.CANCELED
        backoff = Backoff.for_pauses()
        changes: dict[str, object] = {}
        delay = 0.0
        progressed = job.completed_outputs > job.claim_completed
        if interruption is Interruption.CLEARED or (interruption is Interruption.WORKER_DIED and progressed):
            pass
        elif interruption is Interruption.RATE_LIMITED:
            if _starved_by_rate_limit(job, now):
                job_finish(
                    job_id=job.id,
                    fence=fence,
                    status=GenerationJob.Status.FAILED,
                    error_code=provider_errors.RATE_LIMITED,
                    error_message=rate_starved_message(),
                )
                return RequeueOutcome.FAILED
            changes["attempts"] = Greatest(F("attempts") - 1, 0)
            delay = max(0.0, wait_seconds)
        elif interruption is Interruption.JOB_ERROR:
            crashes_alone = job.crashes_alone + 1
            if crashes_alone >= settings.JOB_POISON_CRASHES:
                _fail_poison(job, fence, interruption, crashes_alone)
                return RequeueOutcome.FAILED
            changes["crashes_alone"] = crashes_alone
            delay = backoff.delay(crashes_alone - 1)
        elif interruption is Interruption.WORKER_DIED:
            counts = job.ran_alone and death_number is not None and job.last_death_seen == death_number - 1
            crashes_alone = job.crashes_alone + (1 if counts else 0)
            suspect_crashes = job.suspect_crashes + 1
            if crashes_alone >= settings.JOB_POISON_CRASHES or suspect_crashes >= 3 * settings.JOB_POISON_CRASHES:
                _fail_poison(job, fence, interruption, suspect_crashes)
                return RequeueOutcome.FAILED
            changes.update(
                suspect_crashes=suspect_crashes,
                crashes_alone=crashes_alone,
                last_death_seen=death_number or job.last_death_seen,
            )
            delay = backoff.delay(job.suspect_crashes)
        else:
            outage_since = job.outage_since or now
            if outage_budget_spent(outage_since, now):
                job_finish(
                    job_id=job.id,
                    fence=fence,
                    status=GenerationJob.Status.FAILED,
                    error_code="INFRASTRUCTURE_OUTAGE",
                    error_message=outage_message(part or "infrastructure"),
                )
                return RequeueOutcome.FAILED
            changes.update(pauses=job.pauses + 1, outage_since=outage_since)
            delay = backoff.delay(job.pauses)
        run_after = now + timedelta(seconds=delay) if delay else None
        GenerationJob.objects.filter(id=job.id).update(
            status=GenerationJob.Status.QUEUED,
            run_after=run_after,
            # The rescuer re-publishes a queued job nobody claimed this long after it was due.
            dispatched_at=run_after or now,
            **LEASE_RELEASED,
            **changes,
        )
        suspect = int(changes.get("suspect_crashes", job.suspect_crashes)) > 0  # type: ignore[call-overload]
        job_dispatch_on_commit(job.id, countdown=delay, suspect=suspect)
    logger.log(
        # Waiting for a provider's turn is routine under a rate limit, not a fault.
        logging.INFO if interruption is Interruption.RATE_LIMITED else logging.WARNING,
        "job %s %s%s; queued again in %.1fs (image %d of %d next)",
        job_id,
        interruption.value,
        f" ({part})" if part else "",
        delay,
        job.completed_outputs + 1,
        job.total_outputs,
    )
    return RequeueOutcome.REQUEUED


def _starved_by_rate_limit(job: GenerationJob, now: datetime) -> bool:
    """A provider that answers 429 for ever would keep handing a job back for ever: waiting for
    turns is bounded, like an outage, by JOB_OUTAGE_BUDGET_SECONDS without a new image."""
    last_image = job.outputs.filter(carried_from__isnull=True).aggregate(at=Max("created_at"))["at"]
    since = last_image or job.started_at or job.created_at
    return now - since > timedelta(seconds=settings.JOB_OUTAGE_BUDGET_SECONDS)


def _fail_poison(job: GenerationJob, fence: Q, interruption: Interruption, crashes: int) -> None:
    if interruption is Interruption.JOB_ERROR:
        code = "JOB_ERROR"
        message = (
            f"The job hit an internal error {crashes} times in a row before it could deliver an image, so Atelier "
            "stopped trying. Credits for the images it did not make were released; the ones it made are kept."
        )
    else:
        code = "POISON_JOB"
        message = poison_message(crashes)
    job_finish(job_id=job.id, fence=fence, status=GenerationJob.Status.FAILED, error_code=code, error_message=message)
    logger.error("job %s failed as %s after %d crashes", job.id, code, crashes)
