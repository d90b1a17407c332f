"""The worker side of a job: claim it, make its images one at a time, finish it.

Every write is fenced by the lease (`lease_owner = token`): a worker that lost its lease, because
it stalled and the rescuer gave the job to another worker, can no longer change the job. Every
wait is bounded: a provider call by its timeout (abandoned if the provider ignores it), a storage
write by STORAGE_TIMEOUT_SECONDS, the whole run by JOB_TIME_LIMIT_SECONDS; a cancel, a lost lease
or a shutdown interrupts a wait within a fraction of a second.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import TypeVar
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from credits.services import credits_capture
from generation.metrics import count_provider_error, observe_image_made, observe_rate_limit_wait
from generation.models import GeneratedOutput, GenerationJob, JobEvent
from generation.providers import errors as provider_errors
from generation.providers.base import (
    OperationLost,
    OperationStatus,
    OutputRequest,
    PermanentProviderError,
    Provider,
    ProviderOutput,
    TransientProviderError,
)
from generation.providers.registry import get_provider
from generation.services.bounded import StepInterrupted, StepTimeout, call_bounded
from generation.services.events import event_data, job_event_record
from generation.services.faults import DATABASE_OUTAGE_ERRORS, Backoff, InfrastructureFault, storage_part
from generation.services.files import (
    archive_name_for,
    archive_store,
    output_name_for,
    output_store,
    pending_file_discard,
    poster_name_for,
    storage_delete_quietly,
)
from generation.services.inputs import JobInputs, job_inputs_prepare
from generation.services.lifecycle import job_finish
from generation.services.lifeline import HeldJob, Lifeline
from generation.services.limiter import rate_slow_down, rate_take
from generation.services.posters import clip_poster
from generation.services.previews import PREVIEW_CLEARED, PreviewKeeper
from generation.services.recovery import Interruption, job_requeue

T = TypeVar("T")

logger = logging.getLogger(__name__)

# What a provider call may take beyond the timeout it was given before the pipeline abandons it.
PROVIDER_GRACE_SECONDS = 2.0


class RunOutcome(StrEnum):
    NOT_CLAIMED = "not_claimed"  # nothing this worker may take now (finished, running elsewhere, waiting its turn)
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    LEASE_LOST = "lease_lost"
    PAUSED = "paused"  # one of our parts failed; queued again with backoff
    HANDED_OVER = "handed_over"  # this worker is shutting down; another one continues
    CLEARED = "cleared"  # a suspect delivered an image in quarantine; back to the ordinary workers
    RATE_LIMITED = "rate_limited"  # its provider's rate limit has no turn for a while; queued again for it


class RunOutOfTime(Exception):
    pass


class ProviderTurnLater(Exception):
    """The provider's rate limit gives the next call no turn for longer than a worker waits in
    its thread: the job goes back to the queue until then (`wait_seconds`)."""

    def __init__(self, wait_seconds: float) -> None:
        super().__init__(f"the provider's next turn is in {wait_seconds:.1f}s")
        self.wait_seconds = wait_seconds


def jobs_work(*, alone: bool = False) -> int:
    """What a worker thread does when a message wakes it: claim the next job in the fair order
    (scheduler.py), run it, and claim again, until there is nothing this worker may take now
    (or it is shutting down). A thread that finishes a job thus starts the next one itself,
    without a message; a wake-up that finds nothing to take is simply dropped. Returns how
    many jobs it ran."""
    lifeline = Lifeline.current()
    ran = 0
    while True:
        try:
            held = lifeline.claim(alone=alone)
        except DATABASE_OUTAGE_ERRORS as error:
            # Nothing was claimed; once the database is back the rescuer wakes idle workers.
            logger.warning("could not claim a job: database: %s", error)
            connection.close()
            return ran
        if held is None:
            return ran
        _run_held(held, lifeline)
        ran += 1


def job_run(*, job_id: UUID | str, alone: bool = False) -> RunOutcome:
    """Run one given job to a terminal state (or until it is interrupted), if the scheduler's
    rules let this worker take it now; NOT_CLAIMED otherwise. Workers run `jobs_work`; this is
    the same path for one job, for operators' shells and the tests."""
    lifeline = Lifeline.current()
    held = lifeline.claim(alone=alone, job_id=job_id)
    if held is None:
        return RunOutcome.NOT_CLAIMED
    return _run_held(held, lifeline)


def _run_held(held: HeldJob, lifeline: Lifeline) -> RunOutcome:
    """Run a claimed job, resuming at its first missing image.

    1. Make the images not yet delivered, in order (see `_run_claimed`).
    2. Faults: our own parts failing pause the job with backoff; an unexpected error counts
       against the job (it may be poison); both put it back in the queue (`job_requeue`).
    """
    job_id = held.job_id
    try:
        return _run_claimed(held)
    except ProviderTurnLater as later:
        return _requeue(held, lifeline, Interruption.RATE_LIMITED, wait_seconds=later.wait_seconds)
    except InfrastructureFault as fault:
        logger.warning("job %s paused: %s", job_id, fault)
        return _requeue(held, lifeline, Interruption.OUTAGE, fault.part)
    except DATABASE_OUTAGE_ERRORS as error:
        logger.warning("job %s paused: database: %s", job_id, error)
        connection.close()  # a dropped connection: the next query opens a new one
        return _requeue(held, lifeline, Interruption.OUTAGE, "database")
    except Exception:
        logger.exception("job %s stopped on an unexpected error", job_id)
        connection.close()
        return _requeue(held, lifeline, Interruption.JOB_ERROR)
    finally:
        lifeline.release(held)


def _requeue(
    held: HeldJob, lifeline: Lifeline, interruption: Interruption, part: str = "", wait_seconds: float = 0.0
) -> RunOutcome:
    """Queue the job again; if the database is still away, the lifeline keeps its lease and does
    it once the database answers (a live worker's job is never taken for a dead one's)."""
    try:
        job_requeue(
            job_id=held.job_id,
            fence=Q(lease_owner=held.token),
            interruption=interruption,
            part=part,
            wait_seconds=wait_seconds,
        )
    except DATABASE_OUTAGE_ERRORS:
        logger.warning("job %s could not be queued again now; its worker's lifeline will", held.job_id)
        connection.close()
        lifeline.park(held, interruption, part)
    return RunOutcome.RATE_LIMITED if interruption is Interruption.RATE_LIMITED else RunOutcome.PAUSED


def _run_claimed(held: HeldJob) -> RunOutcome:
    """1. Load the job; delete a file an earlier run wrote but never recorded.
    2. Prepare its input images once (decoded, downsized to what the provider needs).
    3. For each image not yet delivered: stop if interrupted (cancel, lost lease, shutdown) or
       out of time; ask the provider, retrying transient errors with backoff, and keep the latest
       partial image it shows as the job's preview meanwhile (previews.py; never waited on);
       store the file; record it with its progress and price in one short transaction fenced by
       the lease, which also ends the preview.
    4. Store the zip of a multi-image job (best effort) and finish it as succeeded.
    A suspect in quarantine stops after its first image: cleared, it goes back to the ordinary
    workers for the rest.
    """
    deadline = time.monotonic() + settings.JOB_TIME_LIMIT_SECONDS
    fence = Q(lease_owner=held.token)
    job = GenerationJob.objects.select_related("source_asset").get(id=held.job_id)
    pending_file_discard(job=job, fence=fence)
    provider = get_provider(job.provider)
    # Reading and decoding the inputs may wait for the worker's decode budget and for storage.
    held.expect_step(settings.STORAGE_TIMEOUT_SECONDS + settings.JOB_LEASE_SECONDS)
    try:
        inputs = job_inputs_prepare(job=job, provider=provider)
    except PermanentProviderError as error:
        return _finish(held, RunOutcome.FAILED, error.code, error.message)
    delivered = set(job.outputs.values_list("index", flat=True))
    for index in range(job.total_outputs):
        if index in delivered:
            continue
        held.expect_step(settings.JOB_LEASE_SECONDS)
        stop = _stop_reason(held)
        if stop is not None:
            return stop
        if time.monotonic() > deadline:
            return _out_of_time(held, index)
        making_since = time.monotonic()
        # Closed however the output ends (recorded, failed, interrupted): its preview goes then.
        with PreviewKeeper.for_output(job=job, held=held, index=index) as previews:
            request = _output_request(job, index, inputs, previews)
            try:
                result = _make_output(job, provider, request, held, deadline)
            except PermanentProviderError as error:
                return _finish(held, RunOutcome.FAILED, error.code, error.message)
            except TransientProviderError as error:
                return _finish(
                    held,
                    RunOutcome.FAILED,
                    error.code,
                    f"{error.message} Gave up on image {index + 1} after "
                    f"{settings.JOB_MAX_IMAGE_RETRIES + 1} tries; retry the job later.",
                )
            except StepInterrupted:
                return _stop_reason(held) or RunOutcome.LEASE_LOST
            except RunOutOfTime:
                return _out_of_time(held, index)
            if not _record_output(job, index, result, held, previews):
                return RunOutcome.LEASE_LOST
        observe_image_made(job.provider, time.monotonic() - making_since, model=job.model)
        if held.suspect and len(delivered) + 1 < job.total_outputs:
            job_requeue(job_id=held.job_id, fence=Q(lease_owner=held.token), interruption=Interruption.CLEARED)
            return RunOutcome.CLEARED
        delivered.add(index)
    return _finish_succeeded(job, held)


def _stop_reason(held: HeldJob) -> RunOutcome | None:
    """Why the run must stop now, acting on it (a cancel ends the job), or None to go on."""
    if held.handed_over:
        return RunOutcome.HANDED_OVER
    if held.lost:
        return RunOutcome.LEASE_LOST
    if held.cancel or GenerationJob.objects.filter(id=held.job_id, cancel_requested=True).exists():
        return _finish(held, RunOutcome.CANCELED)
    return None


def _out_of_time(held: HeldJob, index: int) -> RunOutcome:
    return _finish(
        held,
        RunOutcome.FAILED,
        "JOB_TIMEOUT",
        f"The job ran out of time ({settings.JOB_TIME_LIMIT_SECONDS:.0f} s) before image {index + 1}.",
    )


def _finish(
    held: HeldJob, outcome: RunOutcome, code: str = "", message: str = "", archive_name: str = ""
) -> RunOutcome:
    held.expect_step(settings.JOB_LEASE_SECONDS)
    if job_finish(
        job_id=held.job_id,
        fence=Q(lease_owner=held.token),
        status=outcome.value,
        error_code=code,
        error_message=message,
        archive_name=archive_name,
    ):
        return outcome
    return RunOutcome.LEASE_LOST


def _finish_succeeded(job: GenerationJob, held: HeldJob) -> RunOutcome:
    """The zip is an optimisation: if it cannot be stored, the job still succeeds and the
    download builds the zip on the fly."""
    archive_name = ""
    if job.total_outputs > 1:
        outputs = list(job.outputs.order_by("index"))
        name = archive_name_for(job)
        try:
            if _write_ahead(held, name):
                held.expect_step(settings.STORAGE_TIMEOUT_SECONDS + settings.JOB_LEASE_SECONDS)
                with storage_part():
                    archive_name = call_bounded(
                        lambda: archive_store(job=job, outputs=outputs, name=name),
                        timeout=settings.STORAGE_TIMEOUT_SECONDS,
                        what="zip write",
                    )
        except InfrastructureFault as fault:
            logger.warning("job %s: the zip could not be stored (%s); the download will build it", job.id, fault)
    return _finish(held, RunOutcome.SUCCEEDED, archive_name=archive_name)


def _write_ahead(held: HeldJob, name: str) -> bool:
    """Record the name of a file before writing it, so a crash in between leaves no orphan."""
    return (
        GenerationJob.objects.filter(
            id=held.job_id, lease_owner=held.token, status=GenerationJob.Status.RUNNING
        ).update(pending_file=name)
        == 1
    )


def _record_output(
    job: GenerationJob, index: int, result: ProviderOutput, held: HeldJob, previews: PreviewKeeper | None = None
) -> bool:
    """Store the file, then record it, the progress, its price and its `job.output` event in one
    transaction fenced by the lease, which also clears the job's preview (its file is deleted
    after the commit, off this thread). Returns False (and deletes the file) if the lease was lost."""
    name = output_name_for(job=job, index=index, mime=result.mime)
    poster, poster_content = "", b""
    if result.mime.startswith("video/"):
        poster_content = result.poster or clip_poster(result.content)
        poster = poster_name_for(name) if poster_content else ""
    if not _write_ahead(held, name):
        return False
    held.expect_step(settings.STORAGE_TIMEOUT_SECONDS + settings.JOB_LEASE_SECONDS)
    with storage_part():
        call_bounded(
            lambda: output_store(name=name, content=result.content),
            timeout=settings.STORAGE_TIMEOUT_SECONDS,
            what="image write",
        )
        if poster:
            call_bounded(
                lambda: output_store(name=poster, content=poster_content),
                timeout=settings.STORAGE_TIMEOUT_SECONDS,
                what="poster write",
            )
    with transaction.atomic():
        progressed = GenerationJob.objects.filter(
            id=job.id, lease_owner=held.token, status=GenerationJob.Status.RUNNING
        ).update(
            completed_outputs=F("completed_outputs") + 1,
            heartbeat_at=timezone.now(),
            pending_file="",
            provider_operation={},
            **PREVIEW_CLEARED,
            # A delivered image clears every suspicion and ends any outage.
            suspect_crashes=0,
            crashes_alone=0,
            pauses=0,
            outage_since=None,
        )
        if progressed == 1:
            GeneratedOutput.objects.create(
                job=job,
                index=index,
                file=name,
                poster=poster,
                mime=result.mime,
                width=result.width,
                height=result.height,
                bytes=len(result.content),
                sha256=hashlib.sha256(result.content).hexdigest(),
                provider_report=result.report,
            )
            credits_capture(team_id=job.team_id, job_id=job.id, output_index=index, amount=job.credits_per_output)
            completed = GenerationJob.objects.values_list("completed_outputs", flat=True).get(id=job.id)
            job_event_record(
                job_id=job.id,
                team_id=job.team_id,
                type=JobEvent.Type.OUTPUT,
                output_index=index,
                data=event_data(status=GenerationJob.Status.RUNNING, completed=completed, total=job.total_outputs),
            )
            if previews is not None:
                transaction.on_commit(partial(previews.close, recorded=True))
    if progressed != 1:
        storage_delete_quietly(name)  # the names are this run's own: nobody else refers to them
        storage_delete_quietly(poster)
        return False
    job.completed_outputs += 1  # the count the next output's previews are fenced by
    return True


def _make_output(
    job: GenerationJob, provider: Provider, request: OutputRequest, held: HeldJob, deadline: float
) -> ProviderOutput:
    if job.kind in provider.long_running_kinds:
        return _run_operation(job, provider, request, held, deadline)
    return _call_provider(provider.generate, request, held, deadline, provider_name=provider.name)


def _run_operation(
    job: GenerationJob, provider: Provider, request: OutputRequest, held: HeldJob, deadline: float
) -> ProviderOutput:
    """Make one output as a long-running operation (a Veo clip), paying for one operation only.

    1. Resume the operation recorded on the job for this output, if an earlier run started one
       (the worker died or was stopped while waiting); otherwise start one, retrying transient
       errors, and record its name, fenced by the lease, before waiting on it.
    2. Poll it every PROVIDER_POLL_SECONDS (each poll bounded and retried like any call) until it
       is done; the provider's progress is recorded when it changes. The lease is renewed all
       along by the lifeline, since every wait declares its bound (`expect_step`).
    3. An operation that ended without a result (OperationLost) is forgotten and a new one is
       started, at most JOB_MAX_IMAGE_RETRIES times; one still running after
       PROVIDER_OPERATION_TIMEOUT_SECONDS fails the job (a second one would be paid twice).
    """
    restarts = 0
    while True:
        operation = job.provider_operation if job.provider_operation.get("index") == request.index else {}
        if not operation:
            name = _call_provider(provider.start, request, held, deadline, provider_name=provider.name)
            operation = {"index": request.index, "name": name, "started_at": timezone.now().isoformat()}
            _record_operation(job, held, operation)
        try:
            return _poll_until_done(job, provider, request, held, deadline, operation)
        except OperationLost as lost:
            _record_operation(job, held, {})
            restarts += 1
            if restarts > settings.JOB_MAX_IMAGE_RETRIES:
                raise
            logger.info("job %s output %d: operation lost (%s); starting another", job.id, request.index + 1, lost)
            _wait_before_retry(held, Backoff.for_provider_retries().delay(restarts - 1, lost.retry_after))


def _poll_until_done(
    job: GenerationJob,
    provider: Provider,
    request: OutputRequest,
    held: HeldJob,
    deadline: float,
    operation: dict,
) -> ProviderOutput:
    name = operation["name"]
    give_up_at = datetime.fromisoformat(operation["started_at"]) + timedelta(
        seconds=settings.PROVIDER_OPERATION_TIMEOUT_SECONDS
    )
    while True:
        status: OperationStatus = _call_provider(
            lambda r: provider.poll(r, name), request, held, deadline, provider_name=provider.name
        )
        if status.done:
            if status.output is None:
                raise OperationLost("The provider finished the operation without a result.")
            return replace(status.output, report={"operation": name, **status.output.report})
        if status.progress is not None and status.progress != operation.get("progress"):
            operation = {**operation, "progress": status.progress}
            _record_operation(job, held, operation)
        if timezone.now() >= give_up_at:
            raise PermanentProviderError(
                f"The provider did not finish within {settings.PROVIDER_OPERATION_TIMEOUT_SECONDS:.0f} s; "
                "nothing was charged.",
                code=provider_errors.PROVIDER_TIMEOUT,
            )
        if time.monotonic() >= deadline:
            raise RunOutOfTime
        _wait_before_retry(held, settings.PROVIDER_POLL_SECONDS)


def _record_operation(job: GenerationJob, held: HeldJob, operation: dict) -> None:
    """Write the job's operation, fenced by the lease; a lost lease stops the run."""
    updated = GenerationJob.objects.filter(
        id=job.id, lease_owner=held.token, status=GenerationJob.Status.RUNNING
    ).update(provider_operation=operation)
    if updated != 1:
        held.flag("lost")
        raise StepInterrupted("operation record")
    job.provider_operation = operation


def _call_provider(
    call: Callable[[OutputRequest], T], request: OutputRequest, held: HeldJob, deadline: float, *, provider_name: str
) -> T:
    """Call the provider within bounds; on a transient error (or a call that overran its timeout
    and was abandoned, uncharged) wait (exponential backoff with jitter, or the provider's
    Retry-After) and try again, at most JOB_MAX_IMAGE_RETRIES times. A cancel, a lost lease or a
    shutdown interrupts both the call and the wait. Every call first takes its turn under the
    provider's rate limits (`_wait_for_provider_turn`); a 429 slows the limit down for every
    worker, and where the limiter paces the provider its next turn is the retry's wait."""
    retries = settings.JOB_MAX_IMAGE_RETRIES
    for attempt in range(retries + 1):
        _wait_for_provider_turn(provider_name, request.model, held, deadline)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RunOutOfTime
        timeout = min(settings.PROVIDER_TIMEOUT_SECONDS, remaining)
        bounded_request = replace(request, timeout_seconds=timeout)
        held.expect_step(timeout + PROVIDER_GRACE_SECONDS + settings.JOB_LEASE_SECONDS)
        try:
            return call_bounded(
                lambda bounded_request=bounded_request: call(bounded_request),  # type: ignore[misc]
                timeout=timeout + PROVIDER_GRACE_SECONDS,
                what="provider call",
                interrupt=held.wake,
            )
        except StepTimeout:
            if time.monotonic() >= deadline:
                raise RunOutOfTime from None
            error = provider_errors.timed_out("The provider", timeout)
        except OperationLost:
            raise  # the operation is gone: a new one must be started, not this call repeated
        except TransientProviderError as transient:
            error = transient
        except PermanentProviderError as permanent:
            count_provider_error(provider_name, permanent.code)
            raise
        except StepInterrupted:
            raise
        except Exception as leaked:  # noqa: BLE001 - an SDK's own network error, unwrapped by its adapter
            logger.warning("job %s output %d: provider call raised %r", held.job_id, request.index + 1, leaked)
            error = provider_errors.unexpected()
        count_provider_error(provider_name, error.code)
        paced = error.code == provider_errors.RATE_LIMITED and rate_slow_down(
            provider_name, request.model, retry_after=error.retry_after
        )
        if attempt == retries:
            raise error
        delay = 0.0 if paced else Backoff.for_provider_retries().delay(attempt, error.retry_after)
        logger.info(
            "job %s output %d: %s (%s); retry %d/%d %s",
            held.job_id,
            request.index + 1,
            error.code,
            error.message,
            attempt + 1,
            retries,
            "at its turn under the rate limit" if paced else f"in {delay:.1f}s",
        )
        _wait_before_retry(held, delay)
    raise AssertionError("unreachable")


def _wait_for_provider_turn(provider_name: str, model: str, held: HeldJob, deadline: float) -> None:
    """Book the call's turn under its provider's rate limits (generation/services/limiter.py)
    and wait for it here when it is due within PROVIDER_LIMIT_MAX_INLINE_WAIT_SECONDS (a cancel,
    a lost lease or a shutdown interrupts the wait); a later turn is not booked and raises
    ProviderTurnLater, which puts the job back in the queue until then, so this worker slot runs
    another job meanwhile."""
    wait = rate_take(provider_name, model)
    observe_rate_limit_wait(provider_name, wait)
    if wait > settings.PROVIDER_LIMIT_MAX_INLINE_WAIT_SECONDS or time.monotonic() + wait >= deadline:
        raise ProviderTurnLater(wait)
    if wait > 0:
        _wait_before_retry(held, wait)


def _wait_before_retry(held: HeldJob, delay: float) -> None:
    """Wait `delay` s, or raise StepInterrupted at once on a cancel, a lost lease or a shutdown."""
    held.expect_step(delay + settings.JOB_LEASE_SECONDS)
    if held.wake.wait(max(0.0, delay)):
        raise StepInterrupted("retry wait")
    if GenerationJob.objects.filter(id=held.job_id, cancel_requested=True).exists():
        held.flag("cancel")
        raise StepInterrupted("retry wait")


def _output_request(
    job: GenerationJob, index: int, inputs: JobInputs, previews: PreviewKeeper | None = None
) -> OutputRequest:
    return OutputRequest(
        job_id=str(job.id),
        kind=job.kind,
        model=job.model,
        prompt=job.optimized_prompt,
        index=index,
        seed=int(job.params.get("seed", 0)),
        params=job.params,
        source_image=inputs.source,
        references=inputs.references,
        mask=inputs.mask,
        timeout_seconds=settings.PROVIDER_TIMEOUT_SECONDS,
        on_preview=previews.offer if previews is not None else None,
    )
