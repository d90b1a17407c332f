"""Throughput and latency of the job pipeline on a real worker, PostgreSQL and Redis.

    make bench                       # 24 jobs x 4 images, 16 worker threads, 500 ms per image
    .venv/bin/python bench/run_jobs.py --jobs 48 --images 4 --latency-ms 1000 --concurrency 16

Creates (and drops) a database of its own, starts one worker and one beat process with the
Procfile's flags, submits the jobs through the service the API uses, polls the database, and
prints: the wall time, images per second against the ideal for the thread count, the time from
submit to the first image and to the end (median and p95), and the queries one job-detail API
request makes for a job of 10 images.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--latency-ms", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--database", default="postgres://postgres@127.0.0.1:5432/atelier_bench")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/13")
    args = parser.parse_args()

    os.environ.update(
        DATABASE_URL=args.database,
        CELERY_BROKER_URL=args.broker,
        ATELIER_VAR_DIR=tempfile.mkdtemp(prefix="atelier-bench-"),
        LOCAL_PROVIDER_LATENCY_MS=str(args.latency_ms),
        DJANGO_SETTINGS_MODULE="config.settings",
        LOG_LEVEL="WARNING",
    )
    _recreate_database(args.database)
    import django

    django.setup()
    import redis
    from django.core.management import call_command
    from django.db.models import Count

    call_command("migrate", verbosity=0)
    redis.Redis.from_url(args.broker).flushdb()

    from accounts.services import user_create
    from credits.services import credits_grant
    from generation.models import GenerationJob
    from generation.services.submit import JobSpec, job_submit

    user = user_create(email="bench@example.com", password="bench-password")
    team = user.personal_team
    credits_grant(team=team, amount=10_000, idempotency_key="bench-grant", actor=None, memo="benchmark")
    logs = Path(os.environ["ATELIER_VAR_DIR"])
    bin_dir = Path(sys.executable).parent
    worker = subprocess.Popen(
        [str(bin_dir / "celery"), "-A", "config", "worker", "-Q", "jobs", "--pool", "threads",
         "--concurrency", str(args.concurrency), "--loglevel", "WARNING"],
        cwd=ROOT, stdout=open(logs / "worker.log", "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
    )  # fmt: skip
    beat = subprocess.Popen(
        [str(bin_dir / "celery"), "-A", "config", "beat", "--loglevel", "WARNING", "--schedule", str(logs / "beat")],
        cwd=ROOT, stdout=open(logs / "beat.log", "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
    )  # fmt: skip
    try:
        time.sleep(3)  # let the worker connect before the clock starts
        started = time.monotonic()
        submitted = {}
        for n in range(args.jobs):
            job = job_submit(team=team, user=user, spec=JobSpec(prompt=f"bench design {n}", count=args.images)).job
            submitted[job.id] = time.monotonic()
        submit_seconds = time.monotonic() - started
        first_image: dict = {}
        finished: dict = {}
        deadline = time.monotonic() + 600
        while len(finished) < args.jobs and time.monotonic() < deadline:
            now = time.monotonic()
            for job_id, completed, status in GenerationJob.objects.values_list("id", "completed_outputs", "status"):
                if completed and job_id not in first_image:
                    first_image[job_id] = now - submitted[job_id]
                if status in ("succeeded", "failed", "canceled") and job_id not in finished:
                    finished[job_id] = now - submitted[job_id]
            time.sleep(0.05)
        wall = time.monotonic() - started
    finally:
        worker.terminate()
        beat.terminate()
        worker.wait(30)
        beat.wait(30)

    statuses = dict(GenerationJob.objects.values("status").annotate(n=Count("id")).values_list("status", "n"))
    images = args.jobs * args.images
    ideal = args.concurrency * 1000 / args.latency_ms
    print(f"jobs {args.jobs} x {args.images} images, {args.latency_ms} ms per image, {args.concurrency} threads")
    print(f"statuses: {statuses}")
    print(f"submit of all jobs: {submit_seconds * 1000 / args.jobs:.1f} ms per job")
    print(
        f"wall time: {wall:.1f} s; {images / wall:.1f} images/s (ideal for {args.concurrency} threads: {ideal:.1f}/s)"
    )
    print(f"submit -> first image: median {_median(first_image):.2f} s, p95 {_p95(first_image):.2f} s")
    print(f"submit -> finished:    median {_median(finished):.2f} s, p95 {_p95(finished):.2f} s")
    print(f"job detail API request, 10-image job: {_detail_queries(team, user)} queries")


def _median(values: dict) -> float:
    return statistics.median(values.values()) if values else float("nan")


def _p95(values: dict) -> float:
    ordered = sorted(values.values())
    return ordered[int(0.95 * (len(ordered) - 1))] if ordered else float("nan")


def _detail_queries(team, user) -> int:  # type: ignore[no-untyped-def]
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from rest_framework.test import APIClient

    from generation.models import GeneratedOutput, GenerationJob
    from generation.services.submit import JobSpec, job_submit

    job = job_submit(team=team, user=user, spec=JobSpec(prompt="query count", count=10)).job
    GenerationJob.objects.filter(id=job.id).update(completed_outputs=10)
    GeneratedOutput.objects.bulk_create(
        GeneratedOutput(job=job, index=i, file=f"x{i}.png", mime="image/png", width=1, height=1, bytes=1, sha256="0")
        for i in range(10)
    )
    client = APIClient()
    client.force_authenticate(user)
    with CaptureQueriesContext(connection) as queries:
        assert client.get(f"/api/v1/jobs/{job.id}", HTTP_HOST="localhost").status_code == 200
    return len(queries)


def _recreate_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


if __name__ == "__main__":
    main()
