"""The outbox of job changes (`JobEvent`): written in the transaction of the change, announced
after its commit.

Three changes are announced: a job's first start (the claim), each delivered output (its record)
and the end (`job_finish`). `job_event_record` writes the event and one webhook delivery per
endpoint of the team that wants it, in the caller's transaction; after the commit it wakes the
webhook senders and the job's event streams. A wake-up that is lost (broker or Redis away, the
process killed right after the commit) costs only time: the webhook sweeper finds due deliveries
in the database, and a stream reads the events table when it (re)connects and every few seconds.
"""

from __future__ import annotations

import logging
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from generation.models import GenerationJob, JobEvent
from generation.services import event_bus
from webhooks.fanout import deliveries_create, deliveries_dispatch

logger = logging.getLogger(__name__)

_TERMINAL_TYPES = {
    GenerationJob.Status.SUCCEEDED: JobEvent.Type.SUCCEEDED,
    GenerationJob.Status.FAILED: JobEvent.Type.FAILED,
    GenerationJob.Status.CANCELED: JobEvent.Type.CANCELED,
}


def event_data(*, status: str, completed: int, total: int, error_code: str = "", error_message: str = "") -> dict:
    """What was true when the event happened, in the API's words."""
    return {
        "status": status,
        "progress": {"completed": completed, "total": total},
        "error": {"code": error_code, "message": error_message} if error_code else None,
    }


def job_event_record(
    *,
    job_id: UUID | str,
    team_id: int,
    type: JobEvent.Type,
    data: dict,
    output_index: int | None = None,
) -> JobEvent:
    """Write one event and its webhook deliveries in the caller's transaction (which must be
    open: the event belongs to the change it reports), and announce them after the commit."""
    connection_in_atomic = transaction.get_connection().in_atomic_block
    if not connection_in_atomic:
        raise RuntimeError("job_event_record must run inside the transaction of the change it reports")
    event = JobEvent.objects.create(
        job_id=job_id,
        team_id=team_id,
        type=type,
        output_index=output_index,
        data=data,
        created_at=timezone.now(),
    )
    delivery_ids = deliveries_create(event=event)
    job_key = str(job_id)
    # robust: the change is committed by then; a failed announcement must neither raise into
    # the code that made it nor skip the callbacks registered after this one.
    transaction.on_commit(lambda: _announce(job_key, event.id, delivery_ids), robust=True)
    return event


def job_event_record_finish(*, job: GenerationJob) -> JobEvent:
    """The terminal event of a job `job_finish` just ended (in its transaction)."""
    return job_event_record(
        job_id=job.id,
        team_id=job.team_id,
        type=_TERMINAL_TYPES[GenerationJob.Status(job.status)],
        data=event_data(
            status=job.status,
            completed=job.completed_outputs,
            total=job.total_outputs,
            error_code=job.error_code,
            error_message=job.error_message,
        ),
    )


def _announce(job_id: str, event_id: int, delivery_ids: list[int]) -> None:
    """Best effort and bounded: a lost announcement is found again by the database sweeps."""
    if delivery_ids:
        try:
            deliveries_dispatch(delivery_ids)
        except Exception:  # noqa: BLE001 - the database away right after the commit: the sweeper's
            logger.warning("could not publish the webhook deliveries of job %s", job_id, exc_info=True)
    event_bus.publish(job_id, {"id": event_id})
