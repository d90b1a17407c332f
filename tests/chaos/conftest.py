"""The chaos suite's stack: gunicorn, job workers, the rescuer, beat and a Redis of its own.

Every case starts a fresh stack with the settings it needs, injects its fault into the real
processes (signals, pg_terminate_backend, a storage folder replaced by a file, a stopped Redis)
and checks what the database must hold afterwards. `make chaos` runs it; each case prints what
it did, what it checked and its figures.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from django.core.management import call_command
from django.db import connection
from django.db.models import Count

from credits.audit import credits_audit
from generation.models import GeneratedOutput, GenerationJob
from tests.conftest import Person, _person
from tests.factories import UserFactory
from tests.processes import (
    ManagedProcess,
    child_environment,
    start_beat,
    start_quarantine,
    start_redis,
    start_rescuer,
    start_web,
    start_worker,
    wait_until,
)

# Short leases and intervals so faults are noticed in seconds; the defaults are 10x these.
CHAOS_SETTINGS = {
    "JOB_LEASE_SECONDS": "3",
    "RESCUE_INTERVAL_SECONDS": "1",
    "JOB_REDISPATCH_AFTER_SECONDS": "3",
    "JOB_CANCEL_POLL_SECONDS": "0.5",
    "JOB_PAUSE_BASE_SECONDS": "0.5",
    "JOB_PAUSE_MAX_SECONDS": "3",
    "JOB_RETRY_BASE_SECONDS": "0.05",
    "JOB_RETRY_MAX_SECONDS": "0.5",
    "JOB_MAX_IMAGE_RETRIES": "8",
    "PUBLISH_TIMEOUT_SECONDS": "1",
    "LOG_LEVEL": "INFO",
}


def report(case: str, **figures: object) -> None:
    """One line per figure, under the case's name: what it did, what it checked, what it measured."""
    print(f"\n[chaos] {case}")
    for name, value in figures.items():
        print(f"[chaos]   {name.replace('_', ' ')}: {value}")


@dataclass
class ChaosStack:
    env: dict[str, str]
    log_dir: Path
    redis: ManagedProcess
    redis_port: int
    web: ManagedProcess
    base_url: str
    quarantine: ManagedProcess
    rescuer: ManagedProcess
    beat: ManagedProcess
    workers: list[ManagedProcess] = field(default_factory=list)
    extra: list[ManagedProcess] = field(default_factory=list)

    def add_worker(self, concurrency: int = 16, wait: bool = True, **kwargs: object) -> ManagedProcess:
        worker = start_worker(
            self.env, self.log_dir, concurrency=concurrency, name=f"worker{len(self.workers)}", wait=wait, **kwargs
        )  # type: ignore[arg-type]
        self.workers.append(worker)
        return worker

    def replace_worker(self, index: int, **kwargs: object) -> ManagedProcess:
        old = self.workers[index]
        worker = start_worker(
            self.env, self.log_dir, concurrency=16, name=old.name, max_file_bytes=old.max_file_bytes, **kwargs
        )  # type: ignore[arg-type]
        self.workers[index] = worker
        return worker

    def restart_dead_workers(self) -> int:
        """What a process supervisor does: start again every worker that died. Returns how many."""
        dead = 0
        for index, worker in enumerate(self.workers):
            if not worker.running:
                dead += 1
                self.replace_worker(index)
        if not self.quarantine.running:
            dead += 1
            self.quarantine = start_quarantine(self.env, self.log_dir)
        return dead

    def kill_redis(self) -> None:
        self.redis.kill()

    def restart_redis(self) -> None:
        self.redis, _ = start_redis(self.log_dir, port=self.redis_port)

    @property
    def media_root(self) -> Path:
        return Path(self.env["ATELIER_VAR_DIR"]) / "media"

    def stop(self) -> None:
        for process in [*self.workers, self.quarantine, self.rescuer, self.beat, self.web, *self.extra]:
            process.kill()
        self.redis.kill()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log()[-4000:]}" for p in [*self.workers, self.quarantine, self.rescuer])


@pytest.fixture
def make_chaos_stack(django_db_setup, django_db_blocker, tmp_path: Path) -> Iterator[Callable[..., ChaosStack]]:  # noqa: ARG001
    stacks: list[ChaosStack] = []

    def make(workers: int = 1, concurrency: int = 16, **overrides: str) -> ChaosStack:
        redis, port = start_redis(tmp_path)
        var_dir = tmp_path / "var"
        var_dir.mkdir(exist_ok=True)
        with django_db_blocker.unblock():
            env = child_environment(
                CELERY_BROKER_URL=f"redis://127.0.0.1:{port}/0",
                ATELIER_VAR_DIR=str(var_dir),
                **{**CHAOS_SETTINGS, **overrides},
            )
        web, base_url = start_web(env, tmp_path)
        stack = ChaosStack(
            env=env,
            log_dir=tmp_path,
            redis=redis,
            redis_port=port,
            web=web,
            base_url=base_url,
            quarantine=start_quarantine(env, tmp_path),
            rescuer=start_rescuer(env, tmp_path),
            beat=start_beat(env, tmp_path),
        )
        stacks.append(stack)
        for _ in range(workers):
            stack.add_worker(concurrency=concurrency)
        return stack

    yield make
    for stack in stacks:
        stack.stop()


@pytest.fixture
def team_of(db) -> Callable[[str, int], Person]:  # noqa: ARG001
    def make(name: str, credits: int = 1000) -> Person:
        user = UserFactory(email=f"{name}@example.com")
        return _person(user, user.personal_team, credits=credits)

    return make


def api(stack: ChaosStack, person: Person, method: str, path: str, **kwargs: object) -> requests.Response:
    return requests.request(
        method,
        f"{stack.base_url}/api/v1{path}",
        headers={"Authorization": f"Bearer {person.api_key}"},
        timeout=30,
        **kwargs,  # type: ignore[arg-type]
    )


def submit_jobs(stack: ChaosStack, person: Person, count: int, images: int, prompt: str = "chaos") -> list[str]:
    """Submit `count` jobs at once over HTTP; returns their ids (every submit must be a 202)."""

    def one(n: int) -> str:
        response = api(stack, person, "POST", "/jobs", json={"prompt": f"{prompt} {n}", "count": images})
        assert response.status_code == 202, response.text
        return response.json()["id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, range(count)))


def wait_all_finished(job_ids: list[str], timeout: float) -> dict[str, GenerationJob]:
    def done() -> dict[str, GenerationJob] | None:
        jobs = {str(job.id): job for job in GenerationJob.objects.filter(id__in=job_ids)}
        return jobs if all(job.is_finished for job in jobs.values()) and len(jobs) == len(job_ids) else None

    return wait_until(done, timeout=timeout, interval=0.2, message=f"{len(job_ids)} jobs to finish")  # type: ignore[return-value]


def assert_books_clean(job_ids: list[str]) -> dict[str, int]:
    """No output index made twice in any job, captures once per image, credits_audit clean."""
    doubled = (
        GeneratedOutput.objects.filter(job_id__in=job_ids)
        .values("job_id", "index")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    assert doubled == 0
    audit = credits_audit()
    assert audit.clean, audit.account_problems + audit.job_problems
    call_command("credits_audit")
    return {"outputs": GeneratedOutput.objects.filter(job_id__in=job_ids).count(), "doubled_indexes": doubled}


def terminate_backends(application_name: str) -> int:
    """pg_terminate_backend on every connection of the processes with that application_name."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
            [application_name],
        )
        return cursor.fetchone()[0]


class StorageOutage:
    """Makes the media folder unwritable for real: `teams/` is moved away and a plain file takes
    its place, so every write under it fails with NotADirectoryError (permissions would not stop
    root). `end()` puts the folder back."""

    def __init__(self, media_root: Path) -> None:
        self.teams = media_root / "teams"
        self.aside = media_root / "teams-aside"

    def begin(self) -> None:
        self.teams.mkdir(parents=True, exist_ok=True)
        self.teams.rename(self.aside)
        self.teams.write_text("storage outage")

    def end(self) -> None:
        self.teams.unlink()
        self.aside.rename(self.teams)


def run_in_background(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread
