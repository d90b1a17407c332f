"""A worker process's lifeline: one thread that keeps the leases of the jobs this process runs.

Every tick (JOB_CANCEL_POLL_SECONDS) it
1. reads the cancel flag and lease owner of every job held here, in one query, and wakes the
   job's thread when a cancel arrived or the lease went to someone else;
2. renews, every third of JOB_LEASE_SECONDS, the leases of the jobs whose current step is
   within its bound, in one UPDATE: a job stuck past its bound (a hung call the pipeline could
   not abandon, a hung database call) is not renewed, so its lease runs out and the rescuer
   takes it over;
3. settles the jobs their threads could not put back in the queue (the database was away when
   their run stopped): it keeps their leases and queues them again once the database answers;
4. writes this process's heartbeat (WorkerHeartbeat), by which the rescuer tells a dead worker
   from a live one. In a worker process the lifeline beats for the life of the process;
5. on shutdown (SIGTERM) gives every lease back at once and publishes the jobs again, so another
   worker continues them immediately and the run does not count.

A suspect job (its worker died under it before it delivered an image) runs only in the
quarantine worker, which runs one job at a time: `claim(alone=True)` there, `alone=False` in
ordinary workers; which job a claim takes is the fair scheduler's choice (scheduler.py).
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
from uuid import UUID

from django.conf import settings
from django.db import connection
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from generation.models import LEASE_RELEASED, GenerationJob, WorkerHeartbeat
from generation.services.bounded import abandoned_calls_running
from generation.services.dispatch import job_dispatch
from generation.services.recovery import Interruption, job_requeue
from generation.services.scheduler import job_claim_next

logger = logging.getLogger(__name__)


@dataclass
class HeldJob:
    """A job this process has claimed, as its thread and the lifeline share it."""

    job_id: str
    token: str
    alone: bool  # claimed in the quarantine worker with nothing else running in the process
    suspect: bool  # claimed from the quarantine queue
    wake: threading.Event = field(default_factory=threading.Event)  # set with any flag below
    cancel: bool = False
    lost: bool = False
    handed_over: bool = False
    # The lease is renewed only before this (monotonic) time: each step says how long it may take.
    step_deadline: float = 0.0
    # Set when the job's thread could not queue the job again: the lifeline does it later.
    parked: tuple[Interruption, str] | None = None

    def expect_step(self, seconds: float) -> None:
        self.step_deadline = time.monotonic() + seconds

    def flag(self, name: str) -> None:
        setattr(self, name, True)
        self.wake.set()


class Lifeline:
    _instance: Lifeline | None = None
    _instance_pid: int | None = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        self.name = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._lock = threading.Lock()
        self._held: dict[str, HeldJob] = {}
        self._stopping = threading.Event()
        self._tick = threading.Event()
        self._last_renewal = 0.0
        self._thread: threading.Thread | None = None
        self._for_life = False
        self._pool = ""  # "jobs" or "suspects" in a worker process; "" in any other
        self._slots = 0

    @classmethod
    def current(cls) -> Lifeline:
        """This process's lifeline (a forked child gets its own)."""
        with cls._instance_lock:
            if cls._instance is None or cls._instance_pid != os.getpid():
                cls._instance = cls()
                cls._instance_pid = os.getpid()
            return cls._instance

    def run_for_life(self, *, pool: str, slots: int) -> None:
        """A worker process: beat from now until the process ends, jobs or not, so a worker
        that is alive always looks alive; the beat says which pool it serves and its slots."""
        self._pool, self._slots = pool, slots
        self._for_life = True
        self._ensure_thread()

    # -- claiming --------------------------------------------------------------------------

    def claim(self, *, alone: bool = False, job_id: UUID | str | None = None) -> HeldJob | None:
        """Claim the next job in the fair order (generation/services/scheduler.py) for this
        process, or None when there is none it may take now: from the quarantine pool (`alone`)
        only a suspect, and only when nothing else runs here; from the ordinary pool only jobs
        that are not suspects. `job_id` restricts the choice to that job."""
        if self._stopping.is_set():
            return None
        with self._lock:
            if alone and self._held:
                return None
            # Alone means nothing else could have killed the process: no other job, and no
            # abandoned call still running on a thread of its own.
            ran_alone = alone and abandoned_calls_running() == 0
        token = secrets.token_hex(16)
        claimed = job_claim_next(suspects=alone, token=token, worker=self.name, ran_alone=ran_alone, job_id=job_id)
        if claimed is None:
            return None
        held = HeldJob(job_id=claimed.job_id, token=token, alone=ran_alone, suspect=claimed.suspect)
        held.expect_step(settings.JOB_LEASE_SECONDS)
        with self._lock:
            self._held[held.job_id] = held
        self._ensure_thread()
        if self._stopping.is_set():  # a SIGTERM between the claim and now: give it back at once
            self._hand_over_all()
        return held

    def release(self, held: HeldJob) -> None:
        """The job's thread is done with it (finished, queued again, lost or handed over)."""
        with self._lock:
            if self._held.get(held.job_id) is held and held.parked is None:
                del self._held[held.job_id]

    def park(self, held: HeldJob, interruption: Interruption, part: str) -> None:
        """The job's thread could not queue the job again (the database is away): keep its
        lease and let the lifeline do it when the database answers."""
        held.parked = (interruption, part)
        held.expect_step(settings.JOB_OUTAGE_BUDGET_SECONDS)

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
        """Tick until nothing is held (or for life in a worker process)."""
        self._tick_safely(poll=False)
        while True:
            # A claim is fresh: the first look at the jobs comes one tick after it.
            self._tick.wait(settings.JOB_CANCEL_POLL_SECONDS)
            self._tick.clear()
            self._tick_safely(poll=True)
            with self._lock:
                if not self._held and not self._for_life:
                    self._thread = None
                    break
        connection.close()

    def _tick_safely(self, *, poll: bool) -> None:
        try:
            if poll:
                if self._stopping.is_set():
                    self._hand_over_all()
                self._poll_and_renew()
                self._settle_parked()
            self._beat()
        except Exception:  # noqa: BLE001 - a database blip: keep going, the leases outlast it
            logger.warning("lifeline tick failed; trying again", exc_info=True)
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

    def _settle_parked(self) -> None:
        for job in self.held_jobs():
            if job.parked is None:
                continue
            interruption, part = job.parked
            outcome = job_requeue(
                job_id=job.job_id, fence=Q(lease_owner=job.token), interruption=interruption, part=part
            )
            logger.info("job %s settled by the lifeline: %s", job.job_id, outcome.value)
            job.parked = None
            self.release(job)

    def _beat(self) -> None:
        now = timezone.now()
        running = len(self.held_jobs())
        state = {"running_jobs": running, "pool": self._pool, "slots": self._slots}
        updated = WorkerHeartbeat.objects.filter(name=self.name).update(
            beat_at=now, stopping=self._stopping.is_set(), **state
        )
        if not updated:
            WorkerHeartbeat.objects.create(name=self.name, started_at=now, beat_at=now, up_since=now, **state)

    def _hand_over_all(self) -> None:
        """Give every lease back now: queued again, published, and the run not counted."""
        for job in self.held_jobs():
            if job.lost or job.handed_over:
                continue
            given_back = GenerationJob.objects.filter(
                id=job.job_id, lease_owner=job.token, status=GenerationJob.Status.RUNNING
            ).update(
                status=GenerationJob.Status.QUEUED,
                run_after=None,
                dispatched_at=timezone.now(),
                attempts=Greatest(F("attempts") - 1, 0),
                **LEASE_RELEASED,
            )
            job.flag("handed_over")
            if job.parked is not None:
                job.parked = None
                self.release(job)
            if given_back:
                logger.info("job %s handed over on shutdown", job.job_id)
                job_dispatch(job.job_id, suspect=job.suspect)
