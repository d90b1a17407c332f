"""Retrying a failed or canceled job: a new job of the same chain that makes only what is missing.

A chain is a job and all its retries; every retry points at the chain's first job (`chain_root`)
and at the job it retried (`retry_of`). Retries of any jobs of one chain, however many arrive at
once, serialize on the root's row, so a chain gets at most one new job and one hold per race.
"""

from __future__ import annotations

import logging
from uuid import UUID

from django.db import IntegrityError, OperationalError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from credits.services import credits_hold
from generation.errors import InvalidJobStatus
from generation.models import ACTIVE_STATUSES, GeneratedOutput, GenerationJob, JobReference
from generation.services.dispatch import job_dispatch_on_commit
from generation.services.submit import jobs_active_quota_check

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = (GenerationJob.Status.FAILED, GenerationJob.Status.CANCELED)
# PostgreSQL's "deadlock detected" and "could not serialize access": it rolled the transaction
# back, so running it again from the start is safe. The lock order below should leave none of
# them; a few more attempts keep any that remain from reaching the person as a 500.
LOCK_CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})
RETRY_TRANSACTION_ATTEMPTS = 3


def job_retry(*, job: GenerationJob, user: User | None) -> tuple[GenerationJob, bool]:
    """A new job, linked by `retry_of`, that makes only the images `job` did not deliver.

    1. Only a failed or canceled job can be retried (InvalidJobStatus, 409).
    2. A retry that is still active or succeeded is returned instead of a second one, so a
       double click, or retries of two jobs of one chain at once, cannot start (and pay for) the
       same retry twice. If earlier retries failed too, the newest of them is the one retried,
       so nothing they delivered is made again.
    3. The delivered images are carried over as outputs of the new job (same files, no cost).
    4. Credits are held for the missing images only (InsufficientCredits, 402, when short).
    5. Another active job for the same `subject_key` refuses the retry (InvalidJobStatus, 409).
    6. A team whose queued and running jobs fill its quota gets no new one (QuotaExceeded, 409);
       an existing retry (step 2) is still returned.
    7. A job that lacks nothing (canceled after its last image) has nothing to retry (InvalidJobStatus).
    Returns (job, created).
    """
    for attempt in range(1, RETRY_TRANSACTION_ATTEMPTS + 1):
        try:
            return _job_retry_create(job=job, user=user)
        except IntegrityError:
            # A unique constraint on active jobs fired. One of this chain is a lost race (the
            # root lock should prevent it, the constraint is the last line): answer with it.
            active = _chain_active_job(root_id=job.chain_root_or_self_id)
            if active is not None:
                return active, False
            if not job.subject_key:
                raise
            raise InvalidJobStatus(
                "Another job for this subject is still active; retry once it has finished.",
                details={"subject_key": job.subject_key},
            ) from None
        except OperationalError as error:
            if attempt == RETRY_TRANSACTION_ATTEMPTS or not _is_lock_conflict(error):
                raise
            logger.warning("retry of job %s hit a lock conflict, attempt %d: %s", job.id, attempt, error)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _job_retry_create(*, job: GenerationJob, user: User | None) -> tuple[GenerationJob, bool]:
    """One attempt in one transaction.

    1. Lock the chain's root row: every retry of the chain waits here for the one before it.
    2. Read the asked job's status and walk to the chain's end under that lock (both fresh, not
       the caller's possibly stale copies).
    3. Lock the end, the job to retry. Locks are taken in one order, root, end, then the team's
       account (before the team's active jobs are counted against its quota, so that nothing is
       stored over it), and the new row's deferred foreign-key checks at commit (`retry_of`,
       `chain_root`) find rows this transaction already holds, so they wait on nobody while the
       account is locked: two retries cannot deadlock.
    """
    with transaction.atomic():
        root = GenerationJob.objects.select_for_update().get(id=job.chain_root_or_self_id)
        asked = root if root.id == job.id else GenerationJob.objects.get(id=job.id)
        if asked.status not in RETRYABLE_STATUSES:
            raise InvalidJobStatus(
                f"Only a failed or canceled job can be retried; this one is {asked.status}.",
                details={"status": asked.status},
            )
        end = _chain_end(root=root)
        if end.status not in RETRYABLE_STATUSES:
            return end, False
        if end.id != root.id:
            end = GenerationJob.objects.select_for_update().get(id=end.id)
        delivered = list(end.outputs.all())
        if len(delivered) >= end.total_outputs:
            raise InvalidJobStatus(
                "This job has all its images; there is nothing to retry.",
                details={"status": end.status, "completed_outputs": len(delivered)},
            )
        jobs_active_quota_check(team=end.team)
        # The retry stays in the tab only when that tab belongs to the person retrying.
        tab_id = end.tab_id if end.tab_id and end.tab and user and end.tab.user_id == user.id else None
        retry = GenerationJob.objects.create(
            team_id=end.team_id,
            created_by=user,
            tab_id=tab_id,
            kind=end.kind,
            provider=end.provider,
            model=end.model,
            prompt=end.prompt,
            optimized_prompt=end.optimized_prompt,
            params=end.params,
            source_asset_id=end.source_asset_id,
            total_outputs=end.total_outputs,
            completed_outputs=len(delivered),
            credits_per_output=end.credits_per_output,
            retry_of=end,
            chain_root=root,
            subject_key=end.subject_key,
            dispatched_at=timezone.now(),
        )
        JobReference.objects.bulk_create(
            JobReference(job=retry, asset_id=link.asset_id, weight=link.weight, role=link.role)
            for link in end.reference_links.all()
        )
        # Only the images still to make are held; the carried ones were paid by the job that made them.
        credits_hold(
            team_id=end.team_id,
            job_id=retry.id,
            amount=(end.total_outputs - len(delivered)) * end.credits_per_output,
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
                carried_from_id=output.carried_from_id or output.id,  # always the image's maker
            )
            for output in delivered
        )
        job_dispatch_on_commit(retry.id)
    return retry, True


def _chain_end(*, root: GenerationJob) -> GenerationJob:
    """The job to retry: from the root, follow each job's newest retry to the end.

    A chain built under the root lock is a line; one made before it may branch, and the newest
    branch is the one followed, as it carries the most recent images.
    """
    newest_retry: dict[UUID, GenerationJob] = {}
    for member in GenerationJob.objects.filter(chain_root=root).order_by("created_at", "id"):
        if member.retry_of_id is not None:
            newest_retry[member.retry_of_id] = member  # later members overwrite earlier ones
    end = root
    for _ in range(len(newest_retry)):  # a retry is newer than what it retries: no cycle, but bounded
        if end.id not in newest_retry:
            break
        end = newest_retry[end.id]
    return end


def _chain_active_job(*, root_id: UUID) -> GenerationJob | None:
    return (
        GenerationJob.objects.filter(Q(id=root_id) | Q(chain_root_id=root_id), status__in=ACTIVE_STATUSES)
        .order_by("-created_at")
        .first()
    )


def _is_lock_conflict(error: OperationalError) -> bool:
    return getattr(error.__cause__, "sqlstate", None) in LOCK_CONFLICT_SQLSTATES
