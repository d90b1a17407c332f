"""A worker process's lifeline: one thread that keeps the leases of the jobs this process runs.

Every tick (JOB_CANCEL_POLL_SECONDS) it
1. reads the cancel flag and lease owner of every job held here, in one query, and wakes the
   job's thread when a cancel arrived or the lease went to someone else;
2. renews, every third of JOB_LEASE_SECONDS, the leases of the jobs whose current step is
   within its bound, in one UPDATE: a job stuck past its bound (a hung call the pipeline could
   not abandon, a hung database call) is not renewed, so its lease runs out and the rescuer
   takes it over;
3. writes this process's heartbeat (WorkerHeartbeat), by which the rescuer tells a dead worker
   from a live one;
4. on shutdown (SIGTERM) gives every lease back at once and publishes the jobs again, so another
   worker continues them immediately and the run does not count.

It also decides what this process may claim (`Lifeline.claim`): a suspect job (one whose worker
died under it before it delivered an image) runs only on a worker that runs nothing else, until
it delivers an image; while a suspect waits for such a worker, this worker takes no new ordinary
jobs, so it empties. A death while a job ran alone can only be that job's doing.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from uuid import UUID

from django.conf import settings
from django.db import connection
from django.db.models import F, Q
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from generation.models import GenerationJob, WorkerHeartbeat
from generation.services.dispatch import job_dispatch

logger = logging.getLogger(__name__)

# How long a worker keeps declining ordinary jobs after a suspect asked to run alone on it; the
# suspect's message comes back every DEFER_SECONDS while it waits, which keeps the drain armed.
DRAIN_SECONDS = 5.0
DEFER_SECONDS = 1.0


@dataclass
class HeldJob:
    """A job this process has claimed, as its thread and the lifeline share it."""

    job_id: str
    token: str
    alone: bool
    wake: threading.Event = field(default_factory=threading.Event)  # set with any flag below
    cancel: bool = False
    lost: bool = False
    handed_over: bool = False
    progressed: bool = False
    # The lease is renewed only before this (monotonic) time: each step says how long it may take.
    step_deadline: float = 0.0

    def expect_step(self, seconds: float) -> None:
        self.step_deadline = time.monotonic() + seconds

    def flag(self, name: str) -> None:
        setattr(self, name, True)
        self.wake.set()


class Admission(StrEnum):
    CLAIMED = "claimed"
    DEFERRED = "deferred"  # claimable, but not here and now: publish again later
    NOT_CLAIMABLE = "not_claimable"  # finished, canceled or running elsewhere


@dataclass(frozen=True)
class ClaimResult:
    admission: Admission
    held: HeldJob | None = None
    retry_in: float = 0.0


class Lifeline:
    _instance: Lifeline | None = None
    _instance_pid: int | None = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        self.name = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._lock = threading.Lock()
        self._held: dict[str, HeldJob] = {}
        self._drain_until = 0.0
        self._stopping = threading.Event()
        self._tick = threading.Event()
        self._last_renewal = 0.0
        self._thread: threading.Thread | None = None

    @classmethod
    def current(cls) -> Lifeline:
        """This process's lifeline (a forked child gets its own)."""
        with cls._instance_lock:
            if cls._instance is None or cls._instance_pid != os.getpid():
                cls._instance = cls()
                cls._instance_pid = os.getpid()
            return cls._instance

    # -- claiming --------------------------------------------------------------------------

    def claim(self, job_id: UUID | str) -> ClaimResult:
        """Claim a queued job for this process if it may run here now (see the module docstring)."""
        job_id = str(job_id)
        with self._lock:
            if self._stopping.is_set():
                return ClaimResult(Admission.DEFERRED, retry_in=0.0)
            row = (
                GenerationJob.objects.filter(id=job_id)
                .values("status", "cancel_requested", "suspect_crashes", "run_after")
                .first()
            )
            if row is None or row["status"] != GenerationJob.Status.QUEUED or row["cancel_requested"]:
                return ClaimResult(Admission.NOT_CLAIMABLE)
            now = timezone.now()
            if row["run_after"] is not None and row["run_after"] > now:
                return ClaimResult(Admission.DEFERRED, retry_in=(row["run_after"] - now).total_seconds())
            suspect = row["suspect_crashes"] > 0
            if suspect and self._held:
                self._drain_until = time.monotonic() + DRAIN_SECONDS
                return ClaimResult(Admission.DEFERRED, retry_in=DEFER_SECONDS)
            if not suspect and (self._runs_a_suspect() or time.monotonic() < self._drain_until):
                return ClaimResult(Admission.DEFERRED, retry_in=DEFER_SECONDS)
            held = HeldJob(job_id=job_id, token=secrets.token_hex(16), alone=suspect)
            if not self._claim_row(job_id, held, row["suspect_crashes"]):
                return ClaimResult(Admission.NOT_CLAIMABLE)
            held.expect_step(settings.JOB_LEASE_SECONDS)
            self._held[job_id] = held
        self._ensure_thread()
        return ClaimResult(Admission.CLAIMED, held=held)

    def _runs_a_suspect(self) -> bool:
        return any(held.alone and not held.progressed for held in self._held.values())

    def _claim_row(self, job_id: str, held: HeldJob, suspect_crashes: int) -> bool:
        """The conditional UPDATE that takes the job; it is ours only if exactly one row changed."""
        now = timezone.now()
        updated = (
            GenerationJob.objects.filter(
                id=job_id,
                status=GenerationJob.Status.QUEUED,
                cancel_requested=False,
                suspect_crashes=suspect_crashes,
            )
            .filter(Q(run_after__isnull=True) | Q(run_after__lte=now))
            .update(
                status=GenerationJob.Status.RUNNING,
                lease_owner=held.token,
                lease_worker=self.name,
                lease_expires_at=now + timedelta(seconds=settings.JOB_LEASE_SECONDS),
                heartbeat_at=now,
                attempts=F("attempts") + 1,
                started_at=Coalesce(F("started_at"), now),
                claim_completed=F("completed_outputs"),
                ran_alone=held.alone,
                run_after=None,
            )
        )
        return updated == 1

    def progressed(self, held: HeldJob) -> None:
        """The job delivered an image: it is no suspect any more, others may run beside it."""
        held.progressed = True

    def release(self, held: HeldJob) -> None:
        """The job's thread is done with it (finished, paused, lost or handed over)."""
        with self._lock:
            if self._held.get(held.job_id) is held:
                del self._held[held.job_id]

    @property
    def idle(self) -> bool:
        """Nothing held and the lifeline thread ended (it renews nothing any more)."""
        with self._lock:
            return not self._held and self._thread is None

    def held_jobs(self) -> list[HeldJob]:
        with self._lock:
            return list(self._held.values())

    # -- shutdown --------------------------------------------------------------------------

    def begin_shutdown(self) -> None:
        """Called from the SIGTERM handler: only flags; the lifeline thread does the work."""
        self._stopping.set()
        self._tick.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- the thread ------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="atelier-lifeline", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        """Tick until nothing is held; then close the connection and end (a claim starts it again)."""
        self._beat_safely()
        while True:
            # A claim is fresh: the first look at the jobs comes one tick after it.
            self._tick.wait(settings.JOB_CANCEL_POLL_SECONDS)
            self._tick.clear()
            try:
                if self._stopping.is_set():
                    self._hand_over_all()
                self._poll_and_renew()
                self._beat()
            except Exception:  # noqa: BLE001 - a database blip: keep going, the leases outlast it
                logger.warning("lifeline tick failed; trying again", exc_info=True)
                connection.close()
            with self._lock:
                if not self._held:
                    self._thread = None
                    break
        connection.close()

    def _poll_and_renew(self) -> None:
        held = self.held_jobs()
        if not held:
            return
        rows = {
            str(job_id): (owner, cancel)
            for job_id, owner, cancel in GenerationJob.objects.filter(id__in=[h.job_id for h in held]).values_list(
                "id", "lease_owner", "cancel_requested"
            )
        }
        for job in held:
            owner, cancel = rows.get(job.job_id, ("", False))
            if owner != job.token:
                job.flag("lost")
            elif cancel and not job.cancel:
                job.flag("cancel")
        if time.monotonic() - self._last_renewal < settings.JOB_LEASE_SECONDS / 3:
            return
        now_monotonic = time.monotonic()
        tokens = [job.token for job in held if not job.lost and now_monotonic < job.step_deadline]
        overdue = [job.job_id for job in held if not job.lost and now_monotonic >= job.step_deadline]
        if overdue:
            logger.warning("jobs %s are stuck past their step's bound; their leases are left to run out", overdue)
        now = timezone.now()
        GenerationJob.objects.filter(lease_owner__in=tokens, status=GenerationJob.Status.RUNNING).update(
            lease_expires_at=now + timedelta(seconds=settings.JOB_LEASE_SECONDS), heartbeat_at=now
        )
        self._last_renewal = now_monotonic

    def _beat_safely(self) -> None:
        try:
            self._beat()
        except Exception:  # noqa: BLE001 - the next tick beats again
            logger.warning("lifeline heartbeat failed; trying again", exc_info=True)
            connection.close()

    def _beat(self) -> None:
        now = timezone.now()
        running = len(self.held_jobs())
        updated = WorkerHeartbeat.objects.filter(name=self.name).update(
            beat_at=now, running_jobs=running, stopping=self._stopping.is_set()
        )
        if not updated:
            WorkerHeartbeat.objects.create(
                name=self.name, started_at=now, beat_at=now, up_since=now, running_jobs=running
            )

    def _hand_over_all(self) -> None:
        """Give every lease back now: queued again, published, and the run not counted."""
        for job in self.held_jobs():
            if job.lost or job.handed_over:
                continue
            given_back = GenerationJob.objects.filter(
                id=job.job_id, lease_owner=job.token, status=GenerationJob.Status.RUNNING
            ).update(
                status=GenerationJob.Status.QUEUED,
                lease_owner="",
                lease_worker="",
                lease_expires_at=None,
                ran_alone=False,
                run_after=None,
                dispatched_at=timezone.now(),
                attempts=Greatest(F("attempts") - 1, 0),
            )
            job.flag("handed_over")
            if given_back:
                logger.info("job %s handed over on shutdown", job.job_id)
                job_dispatch(job.job_id)
