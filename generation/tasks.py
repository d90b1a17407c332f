"""Celery tasks: thin. They take ids and call services; the job row holds all state.

Services import these tasks at module level to publish them; the tasks import their services
inside their bodies, so the import graph has no cycle (HackSoft's rule).
"""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_ready, worker_shutting_down


@shared_task(name="generation.tasks.run_generation_job", ignore_result=True)
def run_generation_job(job_id: str = "") -> int:
    """A wake-up: run the next jobs in the fair order while there are any this worker may take.
    `job_id` names the job whose submit (or requeue) published the message, for the logs only:
    the scheduler, not the message, decides which job runs."""
    # No Celery retry here: transient provider errors are retried per image inside the run,
    # faults of our own parts pause the job, and a dead worker's job is the rescuer's.
    from generation.services.pipeline import jobs_work

    return jobs_work()


@shared_task(name="generation.tasks.run_suspect_job", ignore_result=True)
def run_suspect_job(job_id: str = "") -> int:
    # Suspects (their worker died under them before they delivered an image): the quarantine
    # worker (one job at a time) runs them alone until each delivers one (docs/architecture.md).
    from generation.services.pipeline import jobs_work

    return jobs_work(alone=True)


@shared_task(name="generation.tasks.rescue_stale_jobs", ignore_result=True)
def rescue_stale_jobs() -> dict:
    from generation.services.rescue import jobs_rescue

    return jobs_rescue().__dict__


@shared_task(name="generation.tasks.sweep_retention", ignore_result=True)
def sweep_retention() -> dict:
    # On the `maintenance` queue, every RETENTION_INTERVAL_SECONDS (beat). No retry: a sweep that
    # failed or stopped is simply followed by the next one, which takes up where it left off.
    from generation.services.retention import retention_sweep

    sweep = retention_sweep()
    return {"id": sweep.id, "removed": sweep.removed, "bytes_removed": sweep.bytes_removed, "error": sweep.error}


@worker_ready.connect
def beat_for_life(sender: object = None, **_: object) -> None:
    """A process that runs jobs beats from its start, so a live worker always looks alive."""
    from generation.services.lifeline import Lifeline

    app = getattr(sender, "app", None)
    queues = set(app.amqp.queues.consume_from or ()) if app is not None else set()
    pool = "suspects" if "suspects" in queues else "jobs" if "jobs" in queues else ""
    if pool:
        # The sender is the worker's consumer; its controller knows the pool's size.
        slots = getattr(getattr(sender, "controller", None), "concurrency", None) or 1
        Lifeline.current().run_for_life(pool=pool, slots=int(slots))


@worker_shutting_down.connect
def hand_over_on_shutdown(**_: object) -> None:
    """SIGTERM (every deploy): stop taking jobs and give the leases back at once."""
    from generation.services.lifeline import Lifeline

    Lifeline.current().begin_shutdown()
