"""A job's zip as a download: the zip the job stored, or one built now and stored for next time.

The pipeline stores a job's zip when the job succeeds with more than one image. A finished job
can still lack one: a one-image, failed or canceled job; a zip that could not be stored; a zip
retention removed (RETENTION_ZIP_DAYS after the job finished); a zip of an older format. Its
first download builds the zip and stores it like the pipeline's, so that this download and every
later one are served as stored zips are (on S3 a redirect to a signed URL: the web process sends
no byte of it), and retention removes it as it removes the pipeline's, counted from the job's finish.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import IO

from django.conf import settings

from generation.errors import NothingToDownload
from generation.models import FINISHED_STATUSES, GeneratedOutput, GenerationJob
from generation.selectors import job_outputs_of
from generation.services.bounded import StepTimeout, call_bounded
from generation.services.faults import InfrastructureFault, storage_part
from generation.services.files import (
    archive_build,
    archive_filename,
    archive_is_current,
    archive_name_for,
    archive_save,
    storage_delete_quietly,
    stored_name,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobArchive:
    """A job's zip as a download: `filename` to offer it under, and either a stored zip
    (`stored_name`) or one built now (`built`, a temporary file that the response closes)."""

    filename: str
    stored_name: str = ""
    built: IO[bytes] | None = None


def job_archive_open(*, job: GenerationJob) -> JobArchive:
    """The zip of the job's outputs, for the API's download (the pages' button) and the admin's.

    1. A zip stored in today's format (`archive_is_current`) is served as stored.
    2. A job not finished yet gets a zip of the images it has so far, built now and not stored:
       more may come, and the pipeline stores the zip when the job succeeds.
    3. A finished job without one gets it built now, stored and recorded (`_archive_keep`), and
       then served as stored. Should storing fail, the zip just built is served instead.
    A zip is built into a temporary file that moves to disk past SPOOL_BYTES, never in memory.
    Raises NothingToDownload when the job has no outputs yet.
    """
    filename = archive_filename(job.prompt)
    if job.archive and archive_is_current(stored := stored_name(job.archive)):
        return JobArchive(filename=filename, stored_name=stored)
    outputs = job_outputs_of(job)
    if not outputs:
        raise NothingToDownload("The job has no images yet.", details={"status": job.status})
    built = archive_build(job=job, outputs=outputs)
    if job.status not in FINISHED_STATUSES:
        return JobArchive(filename=filename, built=built)
    return _archive_keep(job, outputs, built, filename)


def _archive_keep(job: GenerationJob, outputs: list[GeneratedOutput], built: IO[bytes], filename: str) -> JobArchive:
    """Store the zip `built` for `job` and record it as the job's zip, unless another download
    recorded one first: then ours is deleted and theirs served. The record is conditional on the
    job's zip being still what this download read (none, or one of an older format, which is then
    deleted: nothing serves it any more). A file stored but never recorded (the process died in
    between) is an orphan, which retention removes after RETENTION_ORPHAN_GRACE_HOURS."""
    seen = job.archive.name or ""
    name = archive_name_for(job)
    try:
        with storage_part():
            call_bounded(
                partial(archive_save, name=name, built=built),
                timeout=settings.STORAGE_TIMEOUT_SECONDS,
                what="zip write",
            )
    except InfrastructureFault as fault:
        # Storing is an optimisation: the person gets the zip all the same, from this process.
        logger.warning(
            "job %s: the zip built for a download could not be stored (%s); it is sent as built", job.id, fault
        )
        if isinstance(fault.error, StepTimeout):
            # The abandoned write may still be reading the temporary file: send one of our own.
            built.close()
            built = archive_build(job=job, outputs=outputs)
        built.seek(0)
        return JobArchive(filename=filename, built=built)

    if GenerationJob.objects.filter(id=job.id, archive=seen).update(archive=name):
        built.close()
        if seen:
            storage_delete_quietly(seen)
        return JobArchive(filename=filename, stored_name=name)

    storage_delete_quietly(name)
    winner = GenerationJob.objects.filter(id=job.id).values_list("archive", flat=True).first() or ""
    if archive_is_current(winner):
        built.close()
        return JobArchive(filename=filename, stored_name=winner)
    built.seek(0)  # the job's zip changed otherwise (retention cleared it meanwhile): send ours
    return JobArchive(filename=filename, built=built)
