"""Helpers the tests share (not fixtures: those are in conftest.py)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.test import Client
from django.utils import timezone

from credits.services import credits_capture
from generation.models import GeneratedOutput, GenerationJob, JobEvent, WorkerHeartbeat
from generation.services.events import event_data, job_event_record
from generation.services.lifecycle import job_finish
from generation.services.rescue import RESCUER_ROW, RescueReport, jobs_rescue
from generation.services.retry import job_retry
from generation.services.submit import JobSpec, job_submit
from tests.factories import GenerationJobFactory


def job_deliver(*, job: GenerationJob, indexes: Iterable[int]) -> None:
    """What a worker records for each image it makes (the output and its capture), without one."""
    made = list(indexes)
    for index in made:
        GeneratedOutput.objects.create(
            job=job,
            index=index,
            file=f"teams/{job.team_id}/jobs/{job.id}/image-{index + 1}.png",
            mime="image/png",
            width=64,
            height=48,
            bytes=1,
            sha256="0" * 64,
        )
        credits_capture(team_id=job.team_id, job_id=job.id, output_index=index, amount=job.credits_per_output)
    GenerationJob.objects.filter(id=job.id).update(completed_outputs=F("completed_outputs") + len(made))


def job_fail(*, job: GenerationJob) -> None:
    """The job ends as failed (its unused hold released), whoever runs it."""
    assert job_finish(job_id=job.id, fence=Q(), status=GenerationJob.Status.FAILED, error_code="TEST")


# A retry chain as failed_chain makes it: 10 images, 2 made by the job, 2 by its first retry.
IMAGES_IN_A_CHAIN = 10
MADE_BY_ORIGINAL = [0, 1]
MADE_BY_FIRST_RETRY = [2, 3]


def failed_chain(person, name: str) -> tuple[GenerationJob, GenerationJob]:  # type: ignore[no-untyped-def]
    """A failed job that delivered two images and its failed retry that delivered two more."""
    spec = JobSpec(prompt=name, count=IMAGES_IN_A_CHAIN)
    original = job_submit(team=person.team, user=person.user, spec=spec).job
    job_deliver(job=original, indexes=MADE_BY_ORIGINAL)
    job_fail(job=original)
    first_retry, created = job_retry(job=original, user=person.user)
    assert created
    job_deliver(job=first_retry, indexes=MADE_BY_FIRST_RETRY)
    job_fail(job=first_retry)
    return original, first_retry


def rescue_pass() -> RescueReport:
    """One rescuer pass now, as if the last one ran an interval ago and the database had been up
    for long (the rescuer runs at most once per interval, and judges dead workers only then)."""
    now = timezone.now()
    WorkerHeartbeat.objects.update_or_create(
        name=RESCUER_ROW,
        defaults={
            "beat_at": now - timedelta(seconds=settings.RESCUE_INTERVAL_SECONDS),
            "up_since": now - timedelta(hours=1),
        },
    )
    return jobs_rescue()


def rescuer_just_back() -> None:
    """The rescuer's last pass was long ago: the database (or beat) was away until now."""
    long_ago = timezone.now() - timedelta(hours=1)
    WorkerHeartbeat.objects.update_or_create(name=RESCUER_ROW, defaults={"beat_at": long_ago, "up_since": long_ago})


def signed_in(person) -> Client:  # type: ignore[no-untyped-def]
    """A browser (Django's test client) signed in as `person`: pages and the API by session."""
    client = Client()
    client.force_login(person.user)
    return client


def announce(person, event_type: JobEvent.Type, job: GenerationJob | None = None) -> GenerationJob:  # type: ignore[no-untyped-def]
    """A job event of the person's team, fanned out to its webhook endpoints as the pipeline does
    it (in the transaction of the change: `job_event_record`). The job itself, unless given, has
    ended and been seen: the pages show no activity of it."""
    now = timezone.now()
    job = job or GenerationJobFactory(
        team=person.team, created_by=person.user, prompt="a paper boat", status=GenerationJob.Status.CANCELED,
        finished_at=now, seen_at=now,
    )  # fmt: skip
    with transaction.atomic():
        job_event_record(
            job_id=job.id,
            team_id=job.team_id,
            type=event_type,
            data=event_data(status="running", completed=0, total=1),
            output_index=0 if event_type == JobEvent.Type.OUTPUT else None,
        )
    return job
