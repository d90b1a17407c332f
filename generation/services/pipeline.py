"""The worker side of a job: claim it, make its images one at a time, finish it.

Every write is fenced by the lease (`lease_owner = token`): a worker that lost its lease, because
it stalled and the rescuer gave the job to another worker, can no longer change the job.
"""

from __future__ import annotations

import hashlib
import logging
import random
import secrets
import threading
import time
from datetime import timedelta
from enum import StrEnum
from uuid import UUID

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import close_old_connections, connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from credits.services import credits_capture
from generation.models import GeneratedOutput, GenerationJob
from generation.providers.base import (
    OutputRequest,
    PermanentProviderError,
    ProviderOutput,
    ReferenceImage,
    TransientProviderError,
)
from generation.providers.registry import get_provider
from generation.services.files import archive_store, output_store, storage_delete_quietly, stored_name
from generation.services.lifecycle import job_finish

logger = logging.getLogger(__name__)


class RunOutcome(StrEnum):
    NOT_CLAIMED = "not_claimed"  # finished, canceled, or another worker holds a live lease
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    LEASE_LOST = "lease_lost"


class LeaseLost(Exception):
    pass


class CancelRequested(Exception):
    """A cancel arrived while the job waited to retry an image."""


def job_claim(*, job_id: UUID | str, token: str) -> bool:
    """Take the job with a conditional UPDATE: queued, or running under an expired lease."""
    now = timezone.now()
    claimable = Q(status=GenerationJob.Status.QUEUED, cancel_requested=False) | Q(
        status=GenerationJob.Status.RUNNING, lease_expires_at__lt=now
    )
    updated = GenerationJob.objects.filter(claimable, id=job_id, attempts__lt=settings.JOB_MAX_ATTEMPTS).update(
        status=GenerationJob.Status.RUNNING,
        lease_owner=token,
        lease_expires_at=now + timedelta(seconds=settings.JOB_LEASE_SECONDS),
        heartbeat_at=now,
        attempts=F("attempts") + 1,
        started_at=Coalesce(F("started_at"), now),
    )
    return updated == 1


class LeaseKeeper:
    """Renews the lease from a background thread while the job's thread waits on the provider.

    Renewal is fenced like every other write; when it finds the lease gone it sets `lost`, and
    the image loop stops before writing anything more.
    """

    def __init__(self, job_id: UUID | str, token: str) -> None:
        self.job_id = job_id
        self.token = token
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        interval = settings.JOB_LEASE_SECONDS / 3
        try:
            while not self._stop.wait(interval):
                if not self.renew():
                    self.lost.set()
                    return
        finally:
            connection.close()  # this thread's own connection

    def renew(self) -> bool:
        now = timezone.now()
        try:
            renewed = GenerationJob.objects.filter(
                id=self.job_id, lease_owner=self.token, status=GenerationJob.Status.RUNNING
            ).update(lease_expires_at=now + timedelta(seconds=settings.JOB_LEASE_SECONDS), heartbeat_at=now)
        except Exception:  # noqa: BLE001 - a database blip: keep the lease until it really expires
            logger.warning("lease renewal of job %s failed; will try again", self.job_id, exc_info=True)
            close_old_connections()
            return True
        return renewed == 1

    def sleep(self, seconds: float) -> None:
        """Wait, but wake at once if the lease is lost."""
        self.lost.wait(max(0.0, seconds))


def job_run(*, job_id: UUID | str) -> RunOutcome:
    """Run a job to a terminal state, resuming at its first missing image.

    1. Claim it (or return NOT_CLAIMED: someone else has it, or it is finished).
    2. For each image not yet delivered, in order: stop if canceled, out of time or the lease is
       lost; ask the provider, retrying transient errors with backoff; store the file; record
       the output and the progress in one short transaction fenced by the lease.
    3. Build the zip of a multi-image job and finish it as succeeded.
    """
    token = secrets.token_hex(16)
    if not job_claim(job_id=job_id, token=token):
        return RunOutcome.NOT_CLAIMED
    try:
        return _run_claimed(job_id, token)
    except Exception:
        # A bug or an outage of our own parts: give the lease up now, so the rescuer queues the
        # job again at once; its attempt count bounds how often that can happen.
        logger.exception("job %s stopped on an unexpected error", job_id)
        GenerationJob.objects.filter(id=job_id, lease_owner=token).update(lease_expires_at=timezone.now())
        raise


def _run_claimed(job_id: UUID | str, token: str) -> RunOutcome:
    lease_fence = Q(lease_owner=token)
    deadline = time.monotonic() + settings.JOB_TIME_LIMIT_SECONDS
    with LeaseKeeper(job_id, token) as lease:
        job = GenerationJob.objects.select_related("source_asset").get(id=job_id)
        provider = get_provider(job.provider)
        delivered = set(job.outputs.values_list("index", flat=True))
        inputs = _load_inputs(job)
        for index in range(job.total_outputs):
            if index in delivered:
                continue
            state = GenerationJob.objects.filter(id=job_id).values("cancel_requested", "lease_owner").first()
            if state is None or state["lease_owner"] != token or lease.lost.is_set():
                return RunOutcome.LEASE_LOST
            if state["cancel_requested"]:
                return _finish(job_id, lease_fence, RunOutcome.CANCELED)
            if time.monotonic() > deadline:
                return _finish(
                    job_id,
                    lease_fence,
                    RunOutcome.FAILED,
                    "JOB_TIMEOUT",
                    f"The job ran out of time ({settings.JOB_TIME_LIMIT_SECONDS:.0f} s) before image {index + 1}.",
                )
            request = _output_request(job, index, inputs)
            try:
                result = _generate_with_retries(provider, request, lease, job_id)
            except PermanentProviderError as error:
                return _finish(job_id, lease_fence, RunOutcome.FAILED, error.code, error.message)
            except TransientProviderError as error:
                return _finish(
                    job_id,
                    lease_fence,
                    RunOutcome.FAILED,
                    error.code,
                    f"{error.message} Gave up on image {index + 1} after "
                    f"{settings.JOB_MAX_IMAGE_RETRIES + 1} tries; retry the job later.",
                )
            except LeaseLost:
                return RunOutcome.LEASE_LOST
            except CancelRequested:
                return _finish(job_id, lease_fence, RunOutcome.CANCELED)
            try:
                _record_output(job, index, result, token)
            except LeaseLost:
                return RunOutcome.LEASE_LOST
        return _finish_succeeded(job, token)


def _finish(
    job_id: UUID | str, fence: Q, outcome: RunOutcome, code: str = "", message: str = "", archive_name: str = ""
) -> RunOutcome:
    if job_finish(
        job_id=job_id,
        fence=fence,
        status=outcome.value,
        error_code=code,
        error_message=message,
        archive_name=archive_name,
    ):
        return outcome
    return RunOutcome.LEASE_LOST


def _finish_succeeded(job: GenerationJob, token: str) -> RunOutcome:
    archive_name = ""
    outputs = list(job.outputs.order_by("index"))
    if job.total_outputs > 1:
        archive_name = archive_store(job=job, outputs=outputs)  # I/O before the transaction
    outcome = _finish(job.id, Q(lease_owner=token), RunOutcome.SUCCEEDED, archive_name=archive_name)
    if outcome is not RunOutcome.SUCCEEDED:
        storage_delete_quietly(archive_name)
    return outcome


def _record_output(job: GenerationJob, index: int, result: ProviderOutput, token: str) -> None:
    """Store the file, then record it, the progress and its price in one transaction fenced by the lease."""
    name = output_store(job=job, index=index, content=result.content, mime=result.mime)
    with transaction.atomic():
        progressed = GenerationJob.objects.filter(
            id=job.id, lease_owner=token, status=GenerationJob.Status.RUNNING
        ).update(completed_outputs=F("completed_outputs") + 1, heartbeat_at=timezone.now())
        if progressed != 1:
            transaction.set_rollback(True)
        else:
            GeneratedOutput.objects.create(
                job=job,
                index=index,
                file=name,
                mime=result.mime,
                width=result.width,
                height=result.height,
                bytes=len(result.content),
                sha256=hashlib.sha256(result.content).hexdigest(),
            )
            credits_capture(team_id=job.team_id, job_id=job.id, output_index=index, amount=job.credits_per_output)
    if progressed != 1:
        storage_delete_quietly(name)
        raise LeaseLost


def _generate_with_retries(provider, request: OutputRequest, lease: LeaseKeeper, job_id) -> ProviderOutput:  # type: ignore[no-untyped-def]
    """Call the provider; on a transient error wait (exponential backoff with full jitter, or the
    provider's Retry-After) and try again, at most JOB_MAX_IMAGE_RETRIES times. A cancel that
    arrives during a wait is honoured before the next try, not after the provider recovers."""
    retries = settings.JOB_MAX_IMAGE_RETRIES
    for attempt in range(retries + 1):
        try:
            return provider.generate(request)
        except TransientProviderError as error:
            if attempt == retries:
                raise
            delay = _backoff_seconds(attempt, error.retry_after)
            logger.info(
                "job %s image %d: %s (%s); retry %d/%d in %.1fs",
                job_id,
                request.index + 1,
                error.code,
                error.message,
                attempt + 1,
                retries,
                delay,
            )
            lease.sleep(delay)
            if lease.lost.is_set():
                raise LeaseLost from None
            if GenerationJob.objects.filter(id=job_id, cancel_requested=True).exists():
                raise CancelRequested from None
    raise AssertionError("unreachable")


def _backoff_seconds(attempt: int, retry_after: float | None) -> float:
    ceiling = settings.JOB_RETRY_MAX_SECONDS
    if retry_after is not None:
        return min(max(retry_after, 0.0), ceiling)
    exponential = min(ceiling, settings.JOB_RETRY_BASE_SECONDS * (2**attempt))
    return random.uniform(exponential / 2, exponential)


def _load_inputs(job: GenerationJob) -> tuple[bytes | None, tuple[ReferenceImage, ...]]:
    source = None
    if job.source_asset is not None:
        with default_storage.open(stored_name(job.source_asset.file), "rb") as handle:
            source = handle.read()
    references = []
    for link in job.reference_links.select_related("asset"):
        with default_storage.open(stored_name(link.asset.file), "rb") as handle:
            references.append(ReferenceImage(content=handle.read(), weight=link.weight))
    return source, tuple(references)


def _output_request(
    job: GenerationJob, index: int, inputs: tuple[bytes | None, tuple[ReferenceImage, ...]]
) -> OutputRequest:
    source, references = inputs
    return OutputRequest(
        job_id=str(job.id),
        kind=job.kind,
        model=job.model,
        prompt=job.optimized_prompt,
        index=index,
        seed=int(job.params.get("seed", 0)),
        params=job.params,
        source_image=source,
        references=references,
        timeout_seconds=settings.PROVIDER_TIMEOUT_SECONDS,
    )
