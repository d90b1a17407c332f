"""Celery tasks: thin. They take ids and call services; the job row holds all state."""

from __future__ import annotations

from celery import shared_task

from generation.services.pipeline import job_run
from generation.services.rescue import jobs_rescue


@shared_task(name="generation.tasks.run_generation_job", ignore_result=True)
def run_generation_job(job_id: str) -> str:
    # No Celery retry here: transient provider errors are retried per image inside job_run,
    # and a crashed run is picked up again by the rescuer through the job's lease.
    return job_run(job_id=job_id).value


@shared_task(name="generation.tasks.rescue_stale_jobs", ignore_result=True)
def rescue_stale_jobs() -> dict:
    return jobs_rescue().__dict__
