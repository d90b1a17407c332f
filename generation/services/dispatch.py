"""Publishing jobs to the broker. The broker only wakes workers; the job row is the truth."""

from __future__ import annotations

import logging
from uuid import UUID

from django.db import transaction

logger = logging.getLogger(__name__)


def job_dispatch(job_id: UUID | str) -> bool:
    """Publish the job's task; on a broker outage log and return False (the rescuer re-publishes)."""
    from generation.tasks import run_generation_job

    try:
        run_generation_job.apply_async(args=[str(job_id)])
    except Exception as error:  # noqa: BLE001 - any publish failure is recoverable by the rescuer
        logger.warning("Could not publish job %s, the rescuer will retry: %s", job_id, error)
        return False
    return True


def job_dispatch_on_commit(job_id: UUID | str) -> None:
    transaction.on_commit(lambda: job_dispatch(job_id))
