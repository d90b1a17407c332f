"""The benchmarks' harness: the plan of each measurement (BENCH_QUICK shrinks it), the running
stack as the figures see it (`Bench`), real teams with keys and credits, submits, waits."""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0", "false")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
DATABASE_NAME = "atelier_bench"
WORKER_THREADS = 16  # the Procfile's WORKER_CONCURRENCY default


@dataclass(frozen=True)
class Plan:
    """The sizes of each measurement; BENCH_QUICK=1 shrinks them for a smoke run."""

    start_submits: int = 60 if QUICK else 200
    start_rate: float = 20.0
    start_latency: float = 0.2
    start_rate_slow: float = 4.0
    start_submits_slow: int = 20 if QUICK else 40
    overhead_jobs: int = 10 if QUICK else 40
    overhead_images: int = 10
    sdk_calls: int = 50 if QUICK else 200
    anchor_tasks: int = 400 if QUICK else 2000
    wrk_seconds: int = 3 if QUICK else 10
    zip_images: int = 10
    throughput_concurrency: int = 100
    throughput_latency: float = 2.0
    throughput_jobs: int = 100 if QUICK else 200
    throughput_images: int = 2 if QUICK else 5
    throughput_one_team: bool = True
    fairness_latency: float = 1.0 if QUICK else 2.0
    flood_jobs: int = 50
    flood_images: int = 10
    other_teams: int = 5
    fairness_capped_variant: bool = not QUICK


PLAN = Plan()


def say(text: str) -> None:
    print(f"[bench] {text}", flush=True)


@dataclass
class Figure:
    name: str
    value: str
    target: str
    met: bool | None


@dataclass
class BenchTeam:
    team: Any
    user: Any
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@dataclass
class Bench:
    database_url: str
    env: dict[str, str]
    log_dir: Path
    fake: Any
    web: Any
    base_url: str
    worker: Any
    processes: list = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    teams_made: int = 0
    worker_threads: int = WORKER_THREADS

    def record(self, name: str, value: str, target: str, met: bool | None) -> None:
        self.figures.append(Figure(name, value, target, met))

    def team(
        self, name: str, *, credits: int = 1_000_000, active: int | None = None, running: int | None = None
    ) -> BenchTeam:
        """A real team with its owner, credits and an API key; `active` and `running` are the
        team's own quotas (queued + running jobs, running jobs), as an operator sets them in the admin."""
        from accounts.models import Team
        from accounts.services import api_key_create, user_create
        from credits.services import credits_grant

        self.teams_made += 1
        user = user_create(email=f"{name}-{self.teams_made}@bench.local", password=None, team_name=name)
        team = user.personal_team
        credits_grant(team=team, amount=credits, idempotency_key=f"bench:{team.id}", actor=None, memo="benchmark")
        Team.objects.filter(id=team.id).update(quota_active_jobs=active, quota_running_jobs=running)
        team.refresh_from_db()
        issued = api_key_create(team=team, created_by=user, name="bench")
        return BenchTeam(team=team, user=user, key=issued.raw_key)

    def web_cpu(self) -> float:
        """CPU seconds of gunicorn's worker processes so far."""
        from bench.stack import children, cpu_seconds

        return sum(cpu_seconds(pid) for pid in children(self.web.pid))

    def database_waits(self) -> Any:
        from bench.stack import DatabaseWaits

        return DatabaseWaits(self.database_url)

    def restart_worker(self, concurrency: int) -> None:
        from bench.stack import start_worker

        self.worker.stop()
        if self.worker in self.processes:
            self.processes.remove(self.worker)
        self.worker = start_worker(self.env, self.log_dir, concurrency)
        self.processes.append(self.worker)
        self.worker_threads = concurrency

    def ensure_worker(self, concurrency: int = WORKER_THREADS) -> None:
        """A running worker of `concurrency` threads (a figure before may have changed it)."""
        if not self.worker.running or self.worker_threads != concurrency:
            self.restart_worker(concurrency)


# -- helpers ------------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 0.1 else f"{seconds * 1000:.0f} ms"


def submit_in_process(team: BenchTeam, count: int, images: int, prompt: str) -> list[str]:
    """Jobs submitted through the service the API calls (when the submit itself is not measured)."""
    from generation.services.submit import JobSpec, job_submit

    return [
        str(
            job_submit(
                team=team.team, user=team.user, spec=JobSpec(prompt=f"{prompt} {n}", provider="openai", count=images)
            ).job.id
        )
        for n in range(count)
    ]


def submit_over_http(session: Any, base_url: str, team: BenchTeam, images: int, prompt: str) -> str:
    answer = session.post(
        f"{base_url}/api/v1/jobs",
        json={"prompt": prompt, "provider": "openai", "count": images},
        headers=team.headers,
        timeout=30,
    )
    if answer.status_code != 202:
        raise RuntimeError(f"submit answered {answer.status_code}: {answer.text[:300]}")
    return str(answer.json()["id"])


def wait_for_jobs(job_ids: list[str], *, timeout: float, what: str) -> None:
    """Until every job has finished; fails at the deadline naming how many are left."""
    from generation.models import GenerationJob
    from tests.processes import wait_until

    finished = [GenerationJob.Status.SUCCEEDED, GenerationJob.Status.FAILED, GenerationJob.Status.CANCELED]

    def done() -> bool:
        return GenerationJob.objects.filter(id__in=job_ids, status__in=finished).count() == len(job_ids)

    wait_until(done, timeout=timeout, interval=0.2, message=what)
    failed = GenerationJob.objects.filter(id__in=job_ids).exclude(status=GenerationJob.Status.SUCCEEDED)
    if failed.exists():
        sample = failed.values("status", "error_code", "error_message").first()
        raise RuntimeError(f"{failed.count()} of {len(job_ids)} jobs did not succeed ({what}), e.g. {sample}")


def drain_team(team: BenchTeam, timeout: float = 60) -> None:
    """Cancel the team's unfinished jobs and wait until none runs, so the next figure starts clean."""
    from generation.errors import InvalidJobStatus
    from generation.models import GenerationJob
    from generation.services.lifecycle import job_cancel
    from tests.processes import wait_until

    active = [GenerationJob.Status.QUEUED, GenerationJob.Status.RUNNING]
    for job in GenerationJob.objects.filter(team=team.team, status__in=active):
        with contextlib.suppress(InvalidJobStatus):  # it finished meanwhile
            job_cancel(job=job)
    wait_until(
        lambda: not GenerationJob.objects.filter(status__in=active).exists(),
        timeout=timeout,
        interval=0.2,
        message="every job to be finished or canceled",
    )


def first_image_seconds(job_id: str) -> float | None:
    from django.db.models import Min

    from generation.models import GeneratedOutput, GenerationJob

    first = GeneratedOutput.objects.filter(job_id=job_id).aggregate(at=Min("created_at"))["at"]
    if first is None:
        return None
    return (first - GenerationJob.objects.get(id=job_id).created_at).total_seconds()


@contextmanager
def cpu_of(pid: int) -> Iterator[dict[str, float]]:
    from bench.stack import cpu_seconds

    measured: dict[str, float] = {}
    before = cpu_seconds(pid)
    yield measured
    measured["seconds"] = cpu_seconds(pid) - before


def thread_local_session() -> Callable[[], Any]:
    import requests

    local = threading.local()

    def session() -> Any:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return local.session

    return session
