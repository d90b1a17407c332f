"""The web process under event streams (`make bench-sse`, about 3 minutes; BENCH_QUICK=1 shorter).

Two measurements against the real stack (a PostgreSQL of the bench's own unless
BENCH_DATABASE_URL names one, Redis at BENCH_REDIS_URL, the job worker from the Procfile, the
offline `local` provider at LOCAL_PROVIDER_LATENCY_MS = 1000 per image):

1. **Ordinary requests are not slower.** The same requests with `wrk -t2 -c16` against three web
   processes of 2 workers with 4 threads each: the one of before (`gunicorn config.wsgi --threads 4`,
   gthread), the one of the Procfile (gunicorn with uvicorn workers; Django on WEB_THREADS threads
   through config/threaded_wsgi.py, the event streams on the event loop), and the same with
   a2wsgi's `WSGIMiddleware` in place of config/threaded_wsgi.py (bench/a2wsgi_web.py): the status
   poll of a 1-image and a 10-image job (API key), the jobs page (session), an image (~200 KB), its
   first 64 KB (a range request) and the zip of 10 images. Printed: requests per second, mean
   latency and the web's CPU per request, and each one's rate against gthread's.
2. **300 open streams while jobs run.** 30 jobs of 4 images (a team may run them all at once)
   are held queued while 300 streams open (10 per job, from one asyncio client in this process),
   then released; the streams follow them to their end. Printed: the web process's resident
   memory (its gunicorn workers and master) and thread count with no stream, with 300 open, and
   at their peak while the jobs ran; its CPU; the time for all 300 to open; the delay from an
   event's record to its arrival on the streams (p50, p95, max); and whether every stream got
   every event of its job, in order, and its end.

BENCH_SSE_PART=requests (or streams) runs one of the two.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import QUICK, REDIS_URL, BenchTeam, ms, percentile, say  # noqa: E402

DATABASE_NAME = "atelier_bench_sse"
STREAMS = 300
JOBS = 30
IMAGES = 4
LATENCY_SECONDS = 1.0
WRK_SECONDS = 3 if QUICK else 10
WEB_THREADS = 4  # per worker process, in each shape of part 1: gthread's --threads, WEB_THREADS
APP_WITH_A2WSGI = "bench.a2wsgi_web:application"
ROUNDS = 2 if QUICK else 3
PART = os.environ.get("BENCH_SSE_PART", "")  # "requests" or "streams": only that part


# -- processes and /proc ------------------------------------------------------------------------


def process_figures(pid: int) -> tuple[float, int]:
    """Resident memory (MB) and threads of gunicorn's master `pid` and its workers."""
    from bench.stack import children

    rss = 0.0
    threads = 0
    for each in [pid, *children(pid)]:
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key == "VmRSS":
                rss += int(rest.split()[0]) / 1024
            elif key == "Threads":
                threads += int(rest.split()[0])
    return rss, threads


def workers_cpu(pid: int) -> float:
    from bench.stack import children, cpu_seconds

    return sum(cpu_seconds(child) for child in children(pid))


def start_gthread_web(env: dict[str, str], log_dir: Path) -> tuple[Any, str]:
    """The web process as the Procfile had it before the event streams."""
    from bench.stack import BIN

    args = [str(BIN / "gunicorn"), "config.wsgi", "--workers", "2", "--threads", str(WEB_THREADS)]
    return _start_gunicorn("web-gthread", args, env, log_dir)


def start_a2wsgi_web(env: dict[str, str], log_dir: Path) -> tuple[Any, str]:
    """The Procfile's web process with a2wsgi's WSGIMiddleware in place of ThreadedWSGI."""
    from bench.stack import procfile_command

    args, child_env = procfile_command("web", {**env, "WEB_THREADS": str(WEB_THREADS)})
    args = [APP_WITH_A2WSGI if word == "config.asgi:application" else word for word in args]
    assert APP_WITH_A2WSGI in args, "the Procfile's web process should serve config.asgi:application"
    args = _without_bind(args)
    return _start_gunicorn("web-a2wsgi", args, child_env, log_dir)


def start_procfile_web(env: dict[str, str], log_dir: Path) -> tuple[Any, str]:
    from bench.stack import start_web

    return start_web({**env, "WEB_THREADS": str(WEB_THREADS)}, log_dir)


def _without_bind(args: list[str]) -> list[str]:
    """The words of a gunicorn command line without its `--bind ADDRESS`."""
    if "--bind" not in args:
        return args
    at = args.index("--bind")
    return args[:at] + args[at + 2 :]


def _start_gunicorn(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> tuple[Any, str]:
    from bench.stack import children
    from tests.processes import ManagedProcess, free_port

    port = free_port()
    web = ManagedProcess(
        name, [*args, "--bind", f"127.0.0.1:{port}"], {**env, "DATABASE_APPLICATION_NAME": "atelier-web"}, log_dir
    ).start()
    base_url = f"http://127.0.0.1:{port}"
    web.wait_ready(lambda: _healthy(base_url), timeout=90, message=f"{name} to answer /healthz")
    web.wait_ready(lambda: len(children(web.pid)) >= 2, timeout=60, message="gunicorn's workers")
    return web, base_url


def _healthy(base_url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{base_url}/healthz", timeout=5) as answer:  # noqa: S310 - loopback
            return answer.status == 200
    except OSError:
        return False


# -- 1. ordinary requests -----------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    rate: float
    latency: str
    errors: int
    cpu_per_request: float


def wrk(web_pid: int, url: str, headers: dict[str, str], seconds: int = WRK_SECONDS) -> Run:
    args = ["wrk", "-t2", "-c16", f"-d{seconds}s"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    before = workers_cpu(web_pid)
    output = subprocess.run([*args, url], capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    cpu = workers_cpu(web_pid) - before
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    latency = re.search(r"Latency\s+(\S+)", output)
    requests_done = re.search(r"(\d+) requests in", output)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if rate is None or requests_done is None:
        raise RuntimeError(f"wrk printed no rate:\n{output}")
    return Run(
        rate=float(rate[1]),
        latency=latency[1] if latency else "?",
        errors=int(errors[1]) if errors else 0,
        cpu_per_request=cpu / max(1, int(requests_done[1])),
    )


def submit(team: BenchTeam, count: int, images: int, prompt: str) -> list[str]:
    from generation.services.submit import JobSpec, job_submit

    spec = JobSpec(prompt=prompt, provider="local", count=images)
    return [str(job_submit(team=team.team, user=team.user, spec=spec).job.id) for _ in range(count)]


def ordinary_requests(env: dict[str, str], log_dir: Path, team: BenchTeam) -> None:
    from django.test import Client

    from bench.harness import wait_for_jobs
    from bench.stack import procfile_line

    one, ten = submit(team, 1, 1, "poll one"), submit(team, 1, 10, "poll ten")
    wait_for_jobs(one + ten, timeout=120, what="the polled jobs")
    browser = Client()
    browser.force_login(team.user)
    session = {"Cookie": f"sessionid={browser.cookies['sessionid'].value}"}
    requests_to_make = [
        ("status poll, 1-image job", f"/api/v1/jobs/{one[0]}", team.headers),
        ("status poll, 10-image job", f"/api/v1/jobs/{ten[0]}", team.headers),
        ("jobs page (session)", "/jobs/", session),
        ("an image (~200 KB)", f"/api/v1/jobs/{one[0]}/outputs/1", team.headers),
        (
            "an image's first 64 KB (Range)",
            f"/api/v1/jobs/{one[0]}/outputs/1",
            {**team.headers, "Range": "bytes=0-65535"},
        ),
        ("the zip of 10 images", f"/api/v1/jobs/{ten[0]}/download", team.headers),
    ]
    procfile_web = procfile_line("web").split(" ", 1)[1]
    shapes = {
        "gthread": (f"gunicorn config.wsgi --workers 2 --threads {WEB_THREADS}", start_gthread_web),
        "ThreadedWSGI": (f"{procfile_web} (WEB_THREADS {WEB_THREADS})", start_procfile_web),
        "a2wsgi": (f"the same, {APP_WITH_A2WSGI} (WSGIMiddleware, workers={WEB_THREADS})", start_a2wsgi_web),
    }
    if importlib.util.find_spec("a2wsgi") is None:  # not a dependency: `pip install a2wsgi` to compare
        say("a2wsgi is not installed: its shape is left out")
        del shapes["a2wsgi"]
    # All three run side by side (idle but for the one measured) and take turns on each request,
    # ROUNDS times, so that what else the machine does weighs on each alike; a shape's figure is
    # its best round.
    webs = {name: start(env, log_dir) for name, (_, start) in shapes.items()}
    runs: dict[tuple[str, str], list[Run]] = {}
    try:
        for name, (command, _) in shapes.items():
            say(f"web process {name}: {command}")
            for _, path, headers in requests_to_make:  # warm: the first requests of a worker load code
                wrk(webs[name][0].pid, webs[name][1] + path, headers, seconds=1)
        for what, path, headers in requests_to_make:
            for _ in range(ROUNDS):
                for name, (web, base_url) in webs.items():
                    runs.setdefault((name, what), []).append(wrk(web.pid, base_url + path, headers))
    finally:
        for web, _ in webs.values():
            web.stop()
    say(f"wrk -t2 -c16 -d{WRK_SECONDS}s on each, best of {ROUNDS} rounds taken in turn:")
    for what, _, _ in requests_to_make:
        best = {name: max(runs[name, what], key=lambda run: run.rate) for name in shapes}
        say(
            f"{what}: "
            + ", ".join(
                f"{name} {run.rate:.0f} req/s (mean {run.latency}, CPU {ms(run.cpu_per_request)}/req{_errors(run)}"
                + (f", {run.rate / best['gthread'].rate:.2f}x gthread)" if name != "gthread" else ")")
                for name, run in best.items()
            )
        )


def _errors(run: Run) -> str:
    return f", {run.errors} errors" if run.errors else ""


# -- 2. 300 streams -----------------------------------------------------------------------------


@dataclass
class StreamLog:
    job_id: str
    status: int = 0
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    events: list[tuple[int, str, float]] = field(default_factory=list)  # id, type, wall-clock arrival
    ended: bool = False
    error: str = ""


async def follow(host: str, port: int, key: str, log: StreamLog) -> None:
    """One stream, read with h11 on a plain connection, until the server ends it."""
    import h11

    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as error:
        log.error = repr(error)
        log.opened.set()
        return
    connection = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="GET",
        target=f"/api/v1/jobs/{log.job_id}/events",
        headers=[("Host", f"{host}:{port}"), ("Authorization", f"Bearer {key}"), ("Accept", "text/event-stream")],
    )
    writer.write(connection.send(request) + connection.send(h11.EndOfMessage()))
    buffer = b""
    try:
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Response):
                log.status = event.status_code
            elif isinstance(event, h11.Data):
                buffer += bytes(event.data)
                while b"\n\n" in buffer:
                    block, buffer = buffer.split(b"\n\n", 1)
                    _message(block.decode(), log)
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                log.ended = True
                return
    except (h11.ProtocolError, OSError) as error:
        log.error = repr(error)
    finally:
        log.opened.set()
        writer.close()


def _message(block: str, log: StreamLog) -> None:
    fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
    if fields.get("event") == "state":
        log.opened.set()
    elif "id" in fields:
        log.events.append((int(fields["id"]), fields["event"], time.time()))


class Sampler:
    """The web process's memory and threads, every 0.2 s, while a phase runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.most_rss = 0.0
        self.most_threads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            rss, threads = process_figures(self.pid)
            self.most_rss, self.most_threads = max(self.most_rss, rss), max(self.most_threads, threads)


def many_streams(env: dict[str, str], log_dir: Path, team: BenchTeam) -> bool:
    from accounts.models import Team
    from bench.harness import wait_for_jobs
    from bench.stack import start_web
    from generation.models import JobEvent
    from generation.services.dispatch import job_dispatch

    web, base_url = start_web(env, log_dir)
    try:
        host, port = base_url.removeprefix("http://").split(":")
        Team.objects.filter(id=team.team.id).update(quota_running_jobs=0)  # held until the streams are open
        job_ids = submit(team, JOBS, IMAGES, "streamed")
        idle_rss, idle_threads = process_figures(web.pid)
        cpu_before = workers_cpu(web.pid)

        def release() -> None:
            Team.objects.filter(id=team.team.id).update(quota_running_jobs=JOBS)
            for job_id in job_ids:
                job_dispatch(job_id)

        async def run() -> tuple[list[StreamLog], float, tuple[float, int], Sampler]:
            logs = [StreamLog(job_id=job_ids[n % JOBS]) for n in range(STREAMS)]
            begin = time.monotonic()
            tasks = [asyncio.ensure_future(follow(host, int(port), team.key, log)) for log in logs]
            await asyncio.wait_for(asyncio.gather(*(log.opened.wait() for log in logs)), timeout=120)
            opened_in = time.monotonic() - begin
            await asyncio.sleep(1.0)  # settled
            open_figures = process_figures(web.pid)
            with Sampler(web.pid) as sampler:
                await asyncio.to_thread(release)
                await asyncio.wait_for(asyncio.gather(*tasks), timeout=300)
            return logs, opened_in, open_figures, sampler

        logs, opened_in, (open_rss, open_threads), sampler = asyncio.run(run())
        cpu = workers_cpu(web.pid) - cpu_before
        wait_for_jobs(job_ids, timeout=60, what="the streamed jobs")
    finally:
        web.stop()

    recorded: dict[str, list[tuple[int, str, float]]] = {job_id: [] for job_id in job_ids}
    for event_id, job_id, kind, created in JobEvent.objects.filter(job_id__in=job_ids).values_list(
        "id", "job_id", "type", "created_at"
    ):
        recorded[str(job_id)].append((event_id, kind, created.timestamp()))
    complete = [
        log
        for log in logs
        if log.status == 200
        and log.ended
        and not log.error
        and [(event_id, kind) for event_id, kind, _ in log.events]
        == [(event_id, kind) for event_id, kind, _ in sorted(recorded[log.job_id])]
    ]
    created_at = {event_id: created for events in recorded.values() for event_id, _, created in events}
    delays = [arrived - created_at[event_id] for log in logs for event_id, _, arrived in log.events]
    events_per_stream = 2 + IMAGES
    say(
        f"{STREAMS} streams ({STREAMS // JOBS} per job) on {JOBS} jobs of {IMAGES} images (provider latency "
        f"{LATENCY_SECONDS:.0f} s, the team's cap at {JOBS}), web process from the Procfile (2 uvicorn workers)"
    )
    say(f"  all {STREAMS} streams open in {opened_in:.2f} s")
    say(f"  web process (master + 2 workers), no stream open: {idle_rss:.0f} MB resident, {idle_threads} threads")
    say(
        f"  with {STREAMS} streams open, jobs queued: {open_rss:.0f} MB resident "
        f"(+{(open_rss - idle_rss) * 1024 / STREAMS:.0f} KB per stream), {open_threads} threads"
    )
    say(f"  while the jobs ran (peak): {sampler.most_rss:.0f} MB resident, {sampler.most_threads} threads")
    say(
        f"  web CPU from the first connect to the last stream's end: {cpu:.1f} s "
        f"({ms(cpu / max(1, len(delays)))} per event delivered)"
    )
    if delays:
        say(
            f"  event recorded -> arrived on a stream: p50 {ms(percentile(delays, 0.5))}, "
            f"p95 {ms(percentile(delays, 0.95))}, max {ms(max(delays))} over {len(delays)} deliveries"
        )
    failures = [log for log in logs if log not in complete]
    say(
        f"  streams that got every event of their job in order ({events_per_stream} each) and their end: "
        f"{len(complete)} of {STREAMS}"
        + (f"; e.g. {failures[0].job_id}: status {failures[0].status}, {failures[0].error}" if failures else "")
    )
    return not failures


# -- the run ------------------------------------------------------------------------------------


def main() -> int:
    from bench.run import environment
    from bench.stack import PrivatePostgres, database_recreate, machine_description

    run_dir = Path(tempfile.mkdtemp(prefix="atelier-bench-sse-"))
    log_dir, var_dir = run_dir / "logs", run_dir / "var"
    log_dir.mkdir()
    postgres: PrivatePostgres | None = None
    given_url = os.environ.get("BENCH_DATABASE_URL", "")
    if given_url:
        server_url = given_url.rsplit("/", 1)[0]
    else:
        postgres = PrivatePostgres(log_dir).start()
        server_url = postgres.url.rsplit("/", 1)[0]
    database_url = f"{server_url}/{DATABASE_NAME}"
    processes: list = []
    ok = False
    try:
        database_recreate(database_url)
        env = environment(var_dir, database_url)
        os.environ.clear()
        os.environ.update(env, LOG_LEVEL="WARNING")
        import django

        django.setup()
        import redis
        from django.core.management import call_command

        from bench.stack import start_worker

        call_command("migrate", verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)  # pages need the manifest (DEBUG off)
        redis.Redis.from_url(REDIS_URL).flushdb()
        env["LOCAL_PROVIDER_LATENCY_MS"] = str(int(LATENCY_SECONDS * 1000))
        processes.append(start_worker(env, log_dir, 2 * JOBS))
        say(f"machine: {machine_description()}; Python {sys.version.split()[0]}")
        say(f"logs: {log_dir}")
        team = _team()
        ok = True
        if PART in ("", "requests"):
            ordinary_requests(env, log_dir, team)
        if PART in ("", "streams"):
            ok = many_streams(env, log_dir, team)
    finally:
        for process in reversed(processes):
            process.stop()
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(var_dir, ignore_errors=True)
    return 0 if ok else 1


def _team() -> BenchTeam:
    from accounts.models import Team
    from accounts.services import api_key_create, user_create
    from credits.services import credits_grant

    user = user_create(email=f"sse-{secrets.token_hex(4)}@bench.local", password=None, team_name="sse")
    team = user.personal_team
    credits_grant(team=team, amount=1_000_000, idempotency_key=f"bench:{team.id}", actor=None, memo="benchmark")
    Team.objects.filter(id=team.id).update(quota_active_jobs=10_000)
    team.refresh_from_db()
    return BenchTeam(team=team, user=user, key=api_key_create(team=team, created_by=user, name="bench").raw_key)


if __name__ == "__main__":
    sys.exit(main())
