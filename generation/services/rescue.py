"""The rescuer, run by beat every few seconds: nothing the broker loses stays lost."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from generation.models import GenerationJob
from generation.services.dispatch import job_dispatch_on_commit
from generation.services.lifecycle import job_finish

logger = logging.getLogger(__name__)

BATCH = 200


@dataclass
class RescueReport:
    requeued: int = 0
    failed: int = 0
    canceled: int = 0
    redispatched: int = 0


def jobs_rescue() -> RescueReport:
    """1. Running jobs whose lease expired (their worker died or stalled): canceled if a cancel
       was asked for, failed once their attempts are used up, else queued again and published.
    2. Queued jobs with a cancel request (one that arrived while the job was being queued
       again): canceled.
    3. Queued jobs that no worker claimed within JOB_REDISPATCH_AFTER_SECONDS of their last
       publish (a lost message, a broker outage): published again.
    Each change is a conditional UPDATE on what was seen, so two rescuers never act twice.
    """
    report = RescueReport()
    now = timezone.now()
    stale = GenerationJob.objects.filter(status=GenerationJob.Status.RUNNING, lease_expires_at__lt=now).values(
        "id", "lease_owner", "attempts", "cancel_requested"
    )[:BATCH]
    for job in stale:
        try:
            _rescue_stale(job, now, report)
        except Exception:  # noqa: BLE001 - one bad job must not stop the rescue of the others
            logger.exception("rescue of job %s failed; will try again next pass", job["id"])

    # A cancel that reached a job while it was being queued again: nobody will claim it, end it.
    for job_id in GenerationJob.objects.filter(status=GenerationJob.Status.QUEUED, cancel_requested=True).values_list(
        "id", flat=True
    )[:BATCH]:
        report.canceled += job_finish(job_id=job_id, fence=Q(status=GenerationJob.Status.QUEUED), status="canceled")

    unclaimed_since = now - timedelta(seconds=settings.JOB_REDISPATCH_AFTER_SECONDS)
    waiting = GenerationJob.objects.filter(
        status=GenerationJob.Status.QUEUED, cancel_requested=False, dispatched_at__lt=unclaimed_since
    ).values_list("id", "dispatched_at")[:BATCH]
    for job_id, dispatched_at in waiting:
        with transaction.atomic():
            claimed = GenerationJob.objects.filter(
                id=job_id, status=GenerationJob.Status.QUEUED, dispatched_at=dispatched_at
            ).update(dispatched_at=now)
            if claimed:
                job_dispatch_on_commit(job_id)
        report.redispatched += claimed
    if report.requeued or report.failed or report.canceled or report.redispatched:
        logger.info("rescue: %s", report)
    return report


def _rescue_stale(job: Mapping[str, Any], now: datetime, report: RescueReport) -> None:
    """Cancel, fail or queue again one running job whose lease expired."""
    still_stale = Q(lease_owner=job["lease_owner"], lease_expires_at__lt=now)
    if job["cancel_requested"]:
        report.canceled += job_finish(job_id=job["id"], fence=still_stale, status="canceled")
    elif job["attempts"] >= settings.JOB_MAX_ATTEMPTS:
        report.failed += job_finish(
            job_id=job["id"],
            fence=still_stale,
            status="failed",
            error_code="WORKER_LOST",
            error_message=(
                f"The job was interrupted {job['attempts']} times (its worker stopped or hit an error); "
                "the images it made are kept. Retry it to make the rest."
            ),
        )
    else:
        with transaction.atomic():
            # Not if a cancel arrived since the read: the next pass ends the job as canceled.
            requeued = GenerationJob.objects.filter(still_stale, id=job["id"], cancel_requested=False).update(
                status=GenerationJob.Status.QUEUED,
                lease_owner="",
                lease_expires_at=None,
                dispatched_at=now,
            )
            if requeued:
                job_dispatch_on_commit(job["id"])
        report.requeued += requeued
        if requeued:
            logger.warning("job %s lost its worker (attempt %d); queued again", job["id"], job["attempts"])
