"""Waking workers through the broker. The broker only wakes workers; the job row is the truth.

A message says "there may be a job to take" to the pool a job belongs to (the ordinary workers,
or the quarantine worker for suspects); the woken worker asks the fair scheduler which job to run
(scheduler.py), so the message's job id is only a note for the logs. A publish is bounded by
PUBLISH_TIMEOUT_SECONDS whatever the broker does (down, hung, slow): a submit answers quickly and
a wake-up that did not make it is the rescuer's (rescue.py, `_wake_idle_workers`).
"""

from __future__ import annotations

import logging
from uuid import UUID

from django.conf import settings
from django.db import transaction
from kombu.exceptions import ChannelError

from generation.services.bounded import StepTimeout, call_bounded
from generation.tasks import run_generation_job, run_suspect_job

logger = logging.getLogger(__name__)


def job_dispatch(job_id: UUID | str, *, countdown: float = 0.0, suspect: bool = False) -> bool:
    """Wake a worker of the job's pool (no sooner than `countdown` s from now): the quarantine
    queue for a suspect, the jobs queue for any other. On a broker that is down or hangs, log
    and return False."""
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


def pool_queue_length(*, suspect: bool) -> int | None:
    """Wake-ups waiting in a pool's queue (the quarantine's for `suspect`), or None when the broker
    does not answer within PUBLISH_TIMEOUT_SECONDS. Kombu asks the transport itself (the length of
    the Redis list, the files of the filesystem transport's folder)."""
    task = run_suspect_job if suspect else run_generation_job
    queue = "suspects" if suspect else "jobs"

    def read() -> int:
        with task.app.connection_for_read() as connection:
            try:
                return int(connection.default_channel.queue_declare(queue=queue, passive=True).message_count)
            except ChannelError as error:
                if "NOT_FOUND" in str(error):
                    return 0  # no worker has declared the queue yet (a new broker): nothing waits in it
                raise

    try:
        return call_bounded(read, timeout=settings.PUBLISH_TIMEOUT_SECONDS, what="queue length")
    except Exception as error:  # noqa: BLE001 - unknown is an answer: the caller decides without it
        logger.warning("Could not read the length of the %s queue: %s", queue, error)
        return None


def job_dispatch_on_commit(job_id: UUID | str, *, countdown: float = 0.0, suspect: bool = False) -> None:
    transaction.on_commit(lambda: job_dispatch(job_id, countdown=countdown, suspect=suspect))
