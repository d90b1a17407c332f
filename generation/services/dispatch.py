"""Publishing jobs to the broker. The broker only wakes workers; the job row is the truth.

A publish is bounded by PUBLISH_TIMEOUT_SECONDS whatever the broker does (down, hung, slow): a
submit answers quickly and a publish that did not make it is the rescuer's, which publishes
again every queued job nobody claimed within JOB_REDISPATCH_AFTER_SECONDS.
"""

from __future__ import annotations

import logging
from uuid import UUID

from django.conf import settings
from django.db import transaction

from generation.services.bounded import StepTimeout, call_bounded
from generation.tasks import run_generation_job, run_suspect_job

logger = logging.getLogger(__name__)


def job_dispatch(job_id: UUID | str, *, countdown: float = 0.0, suspect: bool = False) -> bool:
    """Publish the job's task (to run no sooner than `countdown` s from now): a suspect's to the
    quarantine queue, any other's to the jobs queue. On a broker that is down or hangs, log and
    return False."""
    task = run_suspect_job if suspect else run_generation_job
    options = {"countdown": countdown} if countdown > 0 else {}
    try:
        call_bounded(
            lambda: task.apply_async(args=[str(job_id)], retry=False, **options),
            timeout=settings.PUBLISH_TIMEOUT_SECONDS,
            what="publish",
        )
    except StepTimeout:
        logger.warning(
            "Could not publish job %s within %.1fs; the rescuer will retry", job_id, settings.PUBLISH_TIMEOUT_SECONDS
        )
        return False
    except Exception as error:  # noqa: BLE001 - any publish failure is recoverable by the rescuer
        logger.warning("Could not publish job %s, the rescuer will retry: %s", job_id, error)
        return False
    return True


def job_dispatch_on_commit(job_id: UUID | str, *, countdown: float = 0.0, suspect: bool = False) -> None:
    transaction.on_commit(lambda: job_dispatch(job_id, countdown=countdown, suspect=suspect))
