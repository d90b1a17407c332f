"""Atelier's benchmarks against the real stack (issue 10): `make bench`, about 4 minutes;
`BENCH_QUICK=1 make bench` is a short smoke run of the same figures (under 2 minutes).

The provider is the real `openai` provider (the real SDK) pointed at a local fake OpenAI server
(bench/fake_openai.py) that answers after a fixed latency L with a pre-made image. The bench
starts a PostgreSQL of its own (see bench/stack.py for why; BENCH_DATABASE_URL uses a running
server instead), creates and migrates the database `atelier_bench`, empties Redis database 14
(BENCH_REDIS_URL), and starts Atelier's processes from the Procfile's command lines: gunicorn
(2 processes x 4 threads), the job worker (thread pool), the rescuer and beat. Then it measures,
printing every figure with the settings behind it (lines starting with `[bench]`):

1. submit -> worker start, p50 / p95, at a steady 20 submits per second over HTTP;
2. images per second at provider concurrency C = 100 and L = 2 s, as a fraction of C / L, with
   the worker's CPU and peak memory;
3. the worker's CPU per image at L = 0, beside a bare Celery task's on the same broker;
4. the status poll: queries per request, and requests per second with wrk, for 1- and 10-image jobs;
5. the zip of a 10-image job of 5 MB images: the extra memory the download and the zip took;
6. fairness: the first image of 5 other teams' one-image jobs, submitted right after one
   team's 50 ten-image jobs, as a multiple of L.
bench/README.md says how each is measured.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.figures import FIGURES  # noqa: E402 - after the path is set, for `python bench/run.py`
from bench.harness import (  # noqa: E402
    DATABASE_NAME,
    QUICK,
    REDIS_URL,
    WORKER_THREADS,
    Bench,
    BenchTeam,
    Figure,
    drain_team,
    say,
)


def environment(var_dir: Path, database_url: str) -> dict[str, str]:
    """Production-like settings (DEBUG off) for every process, with the API's rate limits and
    the quotas out of the way of the load (the teams' own quotas are set per figure)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PROVIDER_LIMITS", "BENCH_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=REDIS_URL,
        CACHE_URL=REDIS_URL,
        ATELIER_VAR_DIR=str(var_dir),
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
        SECURE_SSL_REDIRECT="false",
        OPENAI_API_KEY="sk-bench-fake",
        RATE_LIMIT_SUBMIT="1000000/min",
        RATE_LIMIT_API="1000000/min",
        RATE_LIMIT_ESTIMATE="1000000/min",
        PYTHONUNBUFFERED="1",
    )
    defaults = ("TEAM_MAX_RUNNING_JOBS", "QUOTA_ACTIVE_JOBS", "WORKER_CONCURRENCY", "WEB_CONCURRENCY", "LOG_LEVEL")
    for name in (*defaults, "PROMETHEUS_MULTIPROC_DIR", "MEDIA_ROOT", "AWS_STORAGE_BUCKET_NAME"):
        env.pop(name, None)  # the defaults are what is measured; files go to the run's own folder
    return env


def main() -> int:
    from bench.stack import PrivatePostgres, database_recreate, machine_description

    started = time.monotonic()
    run_dir = Path(tempfile.mkdtemp(prefix="atelier-bench-"))
    log_dir, var_dir = run_dir / "logs", run_dir / "var"
    log_dir.mkdir()
    postgres: PrivatePostgres | None = None
    given_url = os.environ.get("BENCH_DATABASE_URL", "")
    if given_url:
        server_url, server_note = given_url.rsplit("/", 1)[0], "the server BENCH_DATABASE_URL names"
    else:
        postgres = PrivatePostgres(log_dir).start()
        server_url = postgres.url.rsplit("/", 1)[0]
        server_note = f"the bench's own server (max_connections {postgres.max_connections}, initdb defaults)"
    database_url = f"{server_url}/{DATABASE_NAME}"
    bench: Bench | None = None
    processes: list = []
    failures = 0
    try:
        database_recreate(database_url)
        env = environment(var_dir, database_url)
        os.environ.clear()
        os.environ.update(env, LOG_LEVEL="WARNING")  # this process's own log; its children log at INFO
        import django

        django.setup()
        import redis
        from django.core.management import call_command

        from bench.stack import FakeOpenAI, start_from_procfile, start_web, start_worker

        call_command("migrate", verbosity=0)
        redis.Redis.from_url(REDIS_URL).flushdb()
        fake = FakeOpenAI.start(env, log_dir)
        processes.append(fake.process)
        env["OPENAI_BASE_URL"] = f"{fake.url}/v1"
        os.environ["OPENAI_BASE_URL"] = env["OPENAI_BASE_URL"]
        web, base_url = start_web(env, log_dir)
        processes.append(web)
        processes.append(start_from_procfile("rescuer", env, log_dir, "ready."))
        processes.append(start_from_procfile("beat", env, log_dir, "beat: Starting"))
        worker = start_worker(env, log_dir, WORKER_THREADS)
        processes.append(worker)
        bench = Bench(
            database_url=database_url, env=env, log_dir=log_dir, fake=fake, web=web, base_url=base_url, worker=worker
        )
        bench.processes = processes

        say(f"machine: {machine_description()}; Python {sys.version.split()[0]}; {_server_versions()}")
        say(
            f"stack: PostgreSQL {server_note}, database {DATABASE_NAME}; Redis {REDIS_URL} (broker and cache); "
            f"gunicorn, worker, rescuer and beat from the Procfile; DEBUG=false; API rate limits raised; "
            f"PROVIDER_LIMITS unset; provider openai (SDK) -> fake OpenAI server at {fake.url}"
            f"{'; BENCH_QUICK=1 (short runs)' if QUICK else ''}"
        )
        say(f"logs: {log_dir}")
        for name, measure in FIGURES:
            try:
                bench.ensure_worker()
                measure(bench)
            except Exception as error:  # noqa: BLE001 - one figure failing must not hide the others
                failures += 1
                say(f"{name}: FAILED: {error!r}")
                traceback.print_exc()
                bench.record(name, "failed", "", False)
                try:
                    _clean_up_after_failure(bench)
                except Exception as cleanup_error:  # noqa: BLE001
                    say(f"  could not clean up after it: {cleanup_error!r}")
        _summary(bench.figures, time.monotonic() - started)
    finally:
        for process in reversed(processes):
            process.stop()
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(var_dir, ignore_errors=True)
    return 1 if failures else 0


def _clean_up_after_failure(bench: Bench) -> None:
    from accounts.models import Team

    bench.ensure_worker()
    for team in Team.objects.all():
        drain_team(BenchTeam(team=team, user=None, key=""), timeout=60)
    bench.fake.configure(latency_seconds=0.0, image="small")


def _server_versions() -> str:
    import redis
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    redis_version = redis.Redis.from_url(REDIS_URL).info("server")["redis_version"]
    return f"PostgreSQL {postgres}; Redis {redis_version}"


def _summary(figures: list[Figure], elapsed: float) -> None:
    say(f"summary ({elapsed / 60:.1f} min{', BENCH_QUICK=1' if QUICK else ''}):")
    width = max(len(figure.name) for figure in figures)
    for figure in figures:
        verdict = "met" if figure.met else ("MISSED" if figure.met is False else "")
        say(f"  {figure.name:<{width}}  {figure.value:<28} target {figure.target:<22} {verdict}")


if __name__ == "__main__":
    sys.exit(main())
