"""The real stack for the benchmarks: a PostgreSQL of the bench's own, Atelier's processes started
from the Procfile's own command lines, the fake OpenAI server, and what /proc says of a process.

Processes are started as tests/processes.py starts them (a log file each, a readiness condition
waited on with a deadline); the logs stay in the run's folder for a look afterwards.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.processes import ManagedProcess, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# -- PostgreSQL ----------------------------------------------------------------------------------


class PrivatePostgres:
    """A PostgreSQL server of the bench's own, in a temporary folder, on a free port.

    Why not the machine's server: a job worker holds one database connection per thread, also
    while it waits on the provider, so the C = 100 figure needs some 120 connections, more than
    a default server allows (max_connections = 100) beside the other processes using it. Apart
    from `max_connections` the server runs with initdb's defaults (fsync and synchronous commit on).
    """

    def __init__(self, log_dir: Path, max_connections: int = 300) -> None:
        self.log_dir = log_dir
        self.max_connections = max_connections
        self.data_dir = Path(tempfile.mkdtemp(prefix="atelier-bench-pg-"))
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.bin_dir = _postgres_bin_dir()
        # PostgreSQL refuses to run as root: then it runs as the `postgres` account.
        self._user = "postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> PrivatePostgres:
        if self._user:
            shutil.chown(self.data_dir, self._user, self._user)
        subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True, user=self._user, group=self._user,
        )  # fmt: skip
        log = open(self.log_dir / "postgres.log", "wb")  # noqa: SIM115 - the server keeps it open
        self.process = subprocess.Popen(
            [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
             "-k", str(self.data_dir), "-c", "listen_addresses=127.0.0.1",
             "-c", f"max_connections={self.max_connections}"],
            stdout=log, stderr=subprocess.STDOUT, user=self._user, group=self._user,
        )  # fmt: skip

        def accepting() -> bool:
            assert self.process is not None and self.process.poll() is None, "the bench's PostgreSQL exited"
            return (
                subprocess.run(
                    [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"], check=False
                ).returncode
                == 0
            )

        wait_until(accepting, timeout=60, interval=0.2, message="the bench's PostgreSQL to accept connections")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown: clients are disconnected
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _postgres_bin_dir() -> Path:
    found = shutil.which("pg_config")
    if found:
        bindir = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        if (Path(bindir) / "initdb").exists():
            return Path(bindir)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        raise RuntimeError("PostgreSQL's initdb was not found; set BENCH_DATABASE_URL to use a running server")
    return Path(candidates[-1]).parent


def database_recreate(url: str) -> None:
    """Drop and create the database `url` names, on its server."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


# -- Atelier's processes, from the Procfile -----------------------------------------------------


def procfile_command(name: str, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The Procfile's command line for process `name`, with its `${VAR:-default}` filled in from
    `env` and its leading `VAR=value` words moved into the environment; the program is the
    virtualenv's. Binding is to 127.0.0.1: the benchmark's traffic stays on this machine."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            command = line.split(":", 1)[1]
            break
    else:
        raise LookupError(f"the Procfile has no {name!r} process")
    expanded = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda match: env.get(match[1]) or match[2], command)
    words = shlex.split(expanded)
    extra: dict[str, str] = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        key, value = words.pop(0).split("=", 1)
        extra[key] = value
    if (BIN / words[0]).exists():
        words[0] = str(BIN / words[0])
    words = [word.replace("0.0.0.0:", "127.0.0.1:") for word in words]  # noqa: S104 - replaced, not bound
    return words, {**env, **extra}


def procfile_line(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise LookupError(name)


def start_from_procfile(name: str, env: dict[str, str], log_dir: Path, ready_log: str) -> ManagedProcess:
    args, child_env = procfile_command(name, env)
    process = ManagedProcess(name, args, child_env, log_dir).start()
    process.wait_for_log(ready_log, timeout=90)
    return process


def start_worker(env: dict[str, str], log_dir: Path, concurrency: int) -> ManagedProcess:
    """The Procfile's job worker with WORKER_CONCURRENCY threads."""
    return start_from_procfile("worker", {**env, "WORKER_CONCURRENCY": str(concurrency)}, log_dir, "ready.")


def start_web(env: dict[str, str], log_dir: Path) -> tuple[ManagedProcess, str]:
    port = free_port()
    args, child_env = procfile_command("web", {**env, "PORT": str(port)})
    web = ManagedProcess("web", args, child_env, log_dir).start()
    base_url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=5) as answer:  # noqa: S310 - loopback
                return answer.status == 200
        except OSError:
            return False

    web.wait_ready(healthy, timeout=90, message="web to answer /healthz")
    # Both gunicorn workers must be up before anything is measured on them.
    web.wait_ready(lambda: len(children(web.pid)) >= 2, timeout=60, message="gunicorn's workers")
    return web, base_url


def start_anchor_worker(env: dict[str, str], log_dir: Path, concurrency: int) -> ManagedProcess:
    """A plain Celery worker for bench/anchor.py's task, with the job worker's pool settings."""
    anchor = ManagedProcess(
        "anchor",
        [str(BIN / "celery"), "-A", "bench.anchor", "worker", "-Q", "anchor", "--pool", "threads",
         "--concurrency", str(concurrency), "--loglevel", "INFO", "--hostname", "anchor@%h"],
        {**env, "ANCHOR_BROKER_URL": env["CELERY_BROKER_URL"]},
        log_dir,
    ).start()  # fmt: skip
    anchor.wait_for_log("ready.", timeout=90)
    return anchor


# -- The fake OpenAI server ---------------------------------------------------------------------


@dataclass
class FakeOpenAI:
    process: ManagedProcess
    url: str

    @classmethod
    def start(cls, env: dict[str, str], log_dir: Path) -> FakeOpenAI:
        port = free_port()
        process = ManagedProcess(
            "fake-openai", [sys.executable, "-m", "bench.fake_openai", "--port", str(port)], env, log_dir
        ).start()
        process.wait_for_log("listening", timeout=30)
        return cls(process=process, url=f"http://127.0.0.1:{port}")

    def _call(self, path: str, body: dict | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method="POST" if data is not None else "GET")
        with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 - loopback
            return json.loads(answer.read())

    def configure(self, *, latency_seconds: float, image: str = "small") -> dict[str, Any]:
        return self._call("/_bench/config", {"latency_seconds": latency_seconds, "image": image})

    def stats(self, reset: bool = False) -> dict[str, Any]:
        return self._call("/_bench/stats/reset", {}) if reset else self._call("/_bench/stats")


# -- What /proc says of a process ---------------------------------------------------------------


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of the process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS  # utime, stime (fields 14, 15)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the process (all its threads) so far."""
    return sum(cpu_split(pid))


@dataclass(frozen=True)
class Memory:
    rss_mb: float
    peak_mb: float  # VmHWM: the most resident memory since the process started or the last reset


def memory(pid: int) -> Memory:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return Memory(rss_mb=values["VmRSS"], peak_mb=values["VmHWM"])


def peak_reset(pid: int) -> None:
    """Start the process's peak resident memory (VmHWM) again from its present size."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def children(pid: int) -> list[int]:
    """The process's direct children (gunicorn's workers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a process that ended meanwhile
        if parent == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


class DatabaseWaits:
    """What the database's sessions are doing, sampled every `interval` s on a connection of its
    own while a figure runs: the mean number of sessions per (state, wait event). A lock that
    serializes the work shows as sessions waiting on it (`Lock:advisory` is the scheduler's claim
    lock, `Lock:tuple` / `Lock:transactionid` row locks), and a lock holder that waits on its own
    process as `idle in transaction` (`Client:ClientRead`)."""

    def __init__(self, database_url: str, interval: float = 0.2) -> None:
        self.database_url = database_url
        self.interval = interval
        self.samples = 0
        self.counts: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="bench-db-waits", daemon=True)

    def __enter__(self) -> DatabaseWaits:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _sample(self) -> None:
        import psycopg

        name = self.database_url.rsplit("/", 1)[1]
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            while not self._stop.wait(self.interval):
                rows = connection.execute(
                    "SELECT state, coalesce(wait_event_type || ':' || wait_event, 'on CPU'), count(*) "
                    "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
                    "AND state IS NOT NULL AND state <> 'idle' GROUP BY 1, 2",
                    [name],
                ).fetchall()
                self.samples += 1
                for state, wait, count in rows:
                    key = f"{wait} ({state})" if state != "active" else wait
                    self.counts[key] = self.counts.get(key, 0) + count

    def summary(self, top: int = 4) -> str:
        if not self.samples:
            return "no samples"
        means = sorted(((count / self.samples, key) for key, count in self.counts.items()), reverse=True)
        shown = [f"{mean:.1f} {key}" for mean, key in means[:top] if mean >= 0.05]
        return f"{', '.join(shown) or 'none busy'} (mean sessions over {self.samples} samples)"


def machine_description() -> str:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    total_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    return f"{os.cpu_count()} cores ({model or 'unknown CPU'}), {total_kb / 1024 / 1024:.0f} GB memory"
