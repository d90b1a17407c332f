"""Celery tasks: thin. They take ids and call services; the job row holds all state.

Services import these tasks at module level to publish them; the tasks import their services
inside their bodies, so the import graph has no cycle (HackSoft's rule).
"""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_ready, worker_shutting_down


@shared_task(name="generation.tasks.run_generation_job", ignore_result=True)
def run_generation_job(job_id: str) -> str:
    # No Celery retry here: transient provider errors are retried per image inside job_run,
    # faults of our own parts pause the job, and a dead worker's job is the rescuer's.
    from generation.services.pipeline import job_run

    return job_run(job_id=job_id).value


@shared_task(name="generation.tasks.run_suspect_job", ignore_result=True)
def run_suspect_job(job_id: str) -> str:
    # A job whose worker died under it before it delivered an image: the quarantine worker
    # (one job at a time) runs it alone until it delivers one (docs/architecture.md).
    from generation.services.pipeline import job_run

    return job_run(job_id=job_id, alone=True).value


@shared_task(name="generation.tasks.rescue_stale_jobs", ignore_result=True)
def rescue_stale_jobs() -> dict:
    from generation.services.rescue import jobs_rescue

    return jobs_rescue().__dict__


@worker_ready.connect
def beat_for_life(sender: object = None, **_: object) -> None:
    """A process that runs jobs beats from its start, so a live worker always looks alive."""
    from generation.services.lifeline import Lifeline

    app = getattr(sender, "app", None)
    queues = set(app.amqp.queues.consume_from or ()) if app is not None else set()
    if queues & {"jobs", "suspects"}:
        Lifeline.current().run_for_life()


@worker_shutting_down.connect
def hand_over_on_shutdown(**_: object) -> None:
    """SIGTERM (every deploy): stop taking jobs and give the leases back at once."""
    from generation.services.lifeline import Lifeline

    Lifeline.current().begin_shutdown()
