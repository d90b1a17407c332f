"""State changes of a job outside the worker's image loop: finish, cancel, retry, collect."""

from __future__ import annotations

import logging
from uuid import UUID

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from credits.services import credits_hold, credits_release
from generation.errors import InvalidJobStatus
from generation.models import ACTIVE_STATUSES, GeneratedOutput, GenerationJob, JobReference, Look
from generation.services.dispatch import job_dispatch_on_commit

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
    for images not delivered are released in the same transaction.
    """
    now = timezone.now()
    with transaction.atomic():
        updated = GenerationJob.objects.filter(fence, id=job_id, status__in=ACTIVE_STATUSES).update(
            status=status,
            error_code=error_code,
            error_message=error_message,
            archive=archive_name,
            finished_at=now,
            lease_owner="",
            lease_expires_at=None,
            cancel_requested=status == GenerationJob.Status.CANCELED,
            collected_at=now,
        )
        if updated != 1:
            return False
        job = GenerationJob.objects.get(id=job_id)
        outputs_collect(job=job)
        credits_release(team_id=job.team_id, job_id=job.id)
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
        if job_finish(job_id=job.id, fence=Q(status=GenerationJob.Status.QUEUED), status="canceled"):
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


def job_retry(*, job: GenerationJob, user: User | None) -> tuple[GenerationJob, bool]:
    """A new job, linked by `retry_of`, that makes only the images `job` did not deliver.

    1. Only a failed or canceled job can be retried.
    2. A retry that is still active or succeeded is returned instead of a second one, so a
       double click cannot start (and pay for) the same retry twice. If earlier retries failed
       too, the newest of them is the one retried, so nothing they delivered is made again.
    3. The delivered images are carried over as outputs of the new job (same files, no cost).
    4. Credits are held for the missing images only (402 when the team is short).
    Returns (job, created).
    """
    try:
        return _job_retry_create(job=job, user=user)
    except IntegrityError:
        # The partial unique constraint: another job for the same subject is active.
        raise InvalidJobStatus(
            "Another job for this subject is still active; retry once it has finished.",
            details={"subject_key": job.subject_key},
        ) from None


def _job_retry_create(*, job: GenerationJob, user: User | None) -> tuple[GenerationJob, bool]:
    with transaction.atomic():
        # Lock the job asked for so two concurrent retries of it serialize; its status is read
        # under that lock, not from the caller's possibly stale copy.
        job = GenerationJob.objects.select_for_update().get(id=job.id)
        if job.status not in (GenerationJob.Status.FAILED, GenerationJob.Status.CANCELED):
            raise InvalidJobStatus(
                f"Only a failed or canceled job can be retried; this one is {job.status}.",
                details={"status": job.status},
            )
        while (newest := job.retries.order_by("-created_at").first()) is not None:
            if newest.status not in (GenerationJob.Status.FAILED, GenerationJob.Status.CANCELED):
                return newest, False
            job = newest  # retry the end of the chain: it carries everything delivered so far
        delivered = list(job.outputs.all())
        # The retry stays in the tab only when that tab belongs to the person retrying.
        tab_id = job.tab_id if job.tab_id and job.tab and user and job.tab.user_id == user.id else None
        retry = GenerationJob.objects.create(
            team_id=job.team_id,
            created_by=user,
            tab_id=tab_id,
            kind=job.kind,
            provider=job.provider,
            model=job.model,
            prompt=job.prompt,
            optimized_prompt=job.optimized_prompt,
            params=job.params,
            source_asset_id=job.source_asset_id,
            total_outputs=job.total_outputs,
            completed_outputs=len(delivered),
            credits_per_output=job.credits_per_output,
            retry_of=job,
            subject_key=job.subject_key,
            dispatched_at=timezone.now(),
        )
        JobReference.objects.bulk_create(
            JobReference(job=retry, asset_id=link.asset_id, weight=link.weight, role=link.role)
            for link in job.reference_links.all()
        )
        # Only the images still to make are held; the carried ones were paid by the original.
        credits_hold(
            team_id=job.team_id,
            job_id=retry.id,
            amount=(job.total_outputs - len(delivered)) * job.credits_per_output,
            actor=user,
        )
        GeneratedOutput.objects.bulk_create(
            GeneratedOutput(
                job=retry,
                index=output.index,
                file=output.file.name,
                mime=output.mime,
                width=output.width,
                height=output.height,
                bytes=output.bytes,
                sha256=output.sha256,
                carried_from=output.original,
            )
            for output in delivered
        )
        job_dispatch_on_commit(retry.id)
    return retry, True


def activity_mark_seen(*, user: User, team_id: int, job_ids: list | None = None) -> int:
    jobs = GenerationJob.objects.filter(
        team_id=team_id, created_by=user, seen_at__isnull=True, finished_at__isnull=False
    )
    if job_ids is not None:
        jobs = jobs.filter(id__in=job_ids)
    return jobs.update(seen_at=timezone.now())
