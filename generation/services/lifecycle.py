"""State changes of a job outside the worker's image loop: finish, cancel, collect (retry is retry.py)."""

from __future__ import annotations

import logging
from uuid import UUID

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from credits.services import credits_release
from generation.errors import InvalidJobStatus
from generation.models import ACTIVE_STATUSES, LEASE_RELEASED, GenerationJob, Look
from generation.services.events import job_event_record_finish
from generation.services.files import storage_delete_quietly
from generation.services.previews import PREVIEW_CLEARED

logger = logging.getLogger(__name__)


def job_finish(
    *,
    job_id: UUID | str,
    fence: Q,
    status: str,
    error_code: str = "",
    error_message: str = "",
    archive_name: str = "",
) -> bool:
    """Move a job to a terminal state, if `fence` still holds, and collect its images.

    The fence is what the caller must still own: the worker's lease, the rescuer's view of an
    expired lease, or "still queued" for a cancel. Returns False (and changes nothing) otherwise.
    All terminal paths go through here so that they collect and settle alike: the credits held
    for images not delivered are released, and the job's terminal event (the outbox) written,
    in the same transaction. A live preview ends with the job: cleared, its file deleted.
    """
    now = timezone.now()
    with transaction.atomic():
        files = (
            GenerationJob.objects.select_for_update()
            .filter(fence, id=job_id, status__in=ACTIVE_STATUSES)
            .values_list("pending_file", "preview_file")
            .first()
        )
        if files is None:
            return False
        pending_file, preview_file = files
        GenerationJob.objects.filter(id=job_id).update(
            status=status,
            error_code=error_code,
            error_message=error_message,
            archive=archive_name,
            finished_at=now,
            run_after=None,
            pending_file="",
            cancel_requested=status == GenerationJob.Status.CANCELED,
            collected_at=now,
            **LEASE_RELEASED,
            **PREVIEW_CLEARED,
        )
        job = GenerationJob.objects.get(id=job_id)
        outputs_collect(job=job)
        credits_release(team_id=job.team_id, job_id=job.id)
        job_event_record_finish(job=job)
        if pending_file and pending_file != archive_name:
            # A file a run wrote (or began to write) but never recorded: nothing will refer to it.
            transaction.on_commit(lambda: storage_delete_quietly(pending_file))
        if preview_file:
            transaction.on_commit(lambda: storage_delete_quietly(preview_file))
    logger.info("job %s finished: %s %s", job_id, status, error_code)
    return True


def outputs_collect(*, job: GenerationJob) -> int:
    """Save the job's delivered images in the team's collection, once each.

    Images a retry carried over were collected when their own job finished, so only the
    job's own are added; the one-look-per-output constraint makes a second call a no-op.
    """
    own_outputs = job.outputs.filter(carried_from__isnull=True)
    looks = [Look(team_id=job.team_id, output=output, job=job) for output in own_outputs]
    Look.objects.bulk_create(looks, ignore_conflicts=True)
    return len(looks)


def job_cancel(*, job: GenerationJob) -> GenerationJob:
    """A queued job is canceled at once; a running one is flagged and stops before its next image."""
    for _ in range(3):  # the job may be claimed between the two conditional updates
        if job_finish(job_id=job.id, fence=Q(status=GenerationJob.Status.QUEUED), status=GenerationJob.Status.CANCELED):
            break
        flagged = GenerationJob.objects.filter(id=job.id, status=GenerationJob.Status.RUNNING).update(
            cancel_requested=True
        )
        if flagged:
            break
        job.refresh_from_db(fields=["status"])
        if job.is_finished:
            raise InvalidJobStatus(
                f"The job has already {job.status}; only a queued or running job can be canceled.",
                details={"status": job.status},
            )
    job.refresh_from_db()
    return job


def activity_mark_seen(*, user: User, team_id: int, job_ids: list | None = None) -> int:
    jobs = GenerationJob.objects.filter(
        team_id=team_id, created_by=user, seen_at__isnull=True, finished_at__isnull=False
    )
    if job_ids is not None:
        jobs = jobs.filter(id__in=job_ids)
    return jobs.update(seen_at=timezone.now())
