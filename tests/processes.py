"""Real processes for the tests: Celery worker and beat, a web server, a private Redis.

Each is started from the project's own command line (as in the Procfile), with the test
environment, logs to a file, and a readiness condition waited on with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def wait_until(condition: Callable[[], object], *, timeout: float, interval: float = 0.05, message: str = "") -> object:
    """Poll `condition` until it returns something truthy; fail with `message` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or condition}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_environment(**overrides: str) -> dict[str, str]:
    """The test environment, pointed at the test database pytest-django created."""
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    db = settings.DATABASES["default"]
    env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{connection.settings_dict['NAME']}"
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


class ManagedProcess:
    def __init__(
        self, name: str, args: list[str], env: dict[str, str], log_dir: Path, max_file_bytes: int | None = None
    ) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log_dir / f"{name}-{time.monotonic_ns()}.log"
        self.process: subprocess.Popen | None = None
        # RLIMIT_FSIZE of the child: a write past it fails with EFBIG, a real storage failure.
        self.max_file_bytes = max_file_bytes

    def start(self) -> ManagedProcess:
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child keeps it open
        limit = self.max_file_bytes

        def limit_file_size() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        # A process group of its own: gunicorn's workers (and anything else a process forks) are
        # stopped with it, never left running against the tests' database.
        self.process = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit_file_size,
            start_new_session=True,
        )  # fmt: skip
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(sig)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 30) -> None:
        def ready() -> bool:
            assert self.process is not None and self.process.poll() is None, f"{self.name} exited:\n{self.log()}"
            return text in self.log()

        self.wait_ready(ready, timeout=timeout, message=f"{self.name} to log {text!r}")

    def wait_ready(self, condition: Callable[[], object], *, timeout: float, message: str) -> None:
        """Wait for `condition`; a process that never gets ready is stopped, not left behind."""
        try:
            wait_until(condition, timeout=timeout, interval=0.1, message=message)
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL to the process and all it forked: no shutdown handler runs, as when a machine
        or container dies."""
        if self.process and self.process.poll() is None:
            self._kill_group()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM to the process (its own graceful shutdown), SIGKILL after 15 s; then whatever
        it forked and left behind goes too."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process:
            self._kill_group()

    def _kill_group(self) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


def start_worker(
    env: dict[str, str],
    log_dir: Path,
    concurrency: int = 4,
    name: str = "worker",
    max_file_bytes: int | None = None,
    wait: bool = True,
) -> ManagedProcess:
    """A job worker as in the Procfile: thread pool, the `jobs` queue."""
    env = {**env, "DATABASE_APPLICATION_NAME": f"atelier-{name}"}
    worker = ManagedProcess(
        name,
        [str(BIN / "celery"), "-A", "config", "worker", "-Q", "jobs", "--pool", "threads",
         "--concurrency", str(concurrency), "--loglevel", "INFO", "--without-gossip", "--without-mingle",
         "--hostname", f"{name}-{time.monotonic_ns()}@%h"],
        env,
        log_dir,
        max_file_bytes=max_file_bytes,
    ).start()  # fmt: skip
    if wait:
        worker.wait_for_log("ready.")
    return worker


def start_quarantine(env: dict[str, str], log_dir: Path, wait: bool = True) -> ManagedProcess:
    """The quarantine worker, as in the Procfile: suspects, one job at a time."""
    quarantine = ManagedProcess(
        "quarantine",
        [str(BIN / "celery"), "-A", "config", "worker", "-Q", "suspects", "--pool", "threads", "--concurrency", "1",
         "--loglevel", "INFO", "--without-gossip", "--without-mingle",
         "--hostname", f"quarantine-{time.monotonic_ns()}@%h"],
        {**env, "DATABASE_APPLICATION_NAME": "atelier-quarantine"},
        log_dir,
    ).start()  # fmt: skip
    if wait:
        quarantine.wait_for_log("ready.")
    return quarantine


def start_rescuer(env: dict[str, str], log_dir: Path) -> ManagedProcess:
    """The rescuer's own process, as in the Procfile: one solo worker on the `rescue` queue."""
    rescuer = ManagedProcess(
        "rescuer",
        [str(BIN / "celery"), "-A", "config", "worker", "-Q", "rescue", "--pool", "solo", "--loglevel", "INFO",
         "--without-gossip", "--without-mingle", "--hostname", f"rescuer-{time.monotonic_ns()}@%h"],
        env,
        log_dir,
    ).start()  # fmt: skip
    rescuer.wait_for_log("ready.")
    return rescuer


def start_webhooks(env: dict[str, str], log_dir: Path, concurrency: int = 4, wait: bool = True) -> ManagedProcess:
    """The webhook senders' process, as in the Procfile: the `webhooks` and `maintenance` queues,
    a thread pool."""
    webhooks = ManagedProcess(
        "webhooks",
        [str(BIN / "celery"), "-A", "config", "worker", "-Q", "webhooks,maintenance", "--pool", "threads",
         "--concurrency", str(concurrency), "--loglevel", "INFO", "--without-gossip", "--without-mingle",
         "--hostname", f"webhooks-{time.monotonic_ns()}@%h"],
        {**env, "DATABASE_APPLICATION_NAME": "atelier-webhooks"},
        log_dir,
    ).start()  # fmt: skip
    if wait:
        webhooks.wait_for_log("ready.")
    return webhooks


def start_beat(env: dict[str, str], log_dir: Path) -> ManagedProcess:
    schedule = log_dir / f"beat-schedule-{time.monotonic_ns()}"
    beat = ManagedProcess(
        "beat",
        [str(BIN / "celery"), "-A", "config", "beat", "--loglevel", "INFO", "--schedule", str(schedule)],
        env,
        log_dir,
    ).start()
    beat.wait_for_log("beat: Starting")
    return beat


def start_web(env: dict[str, str], log_dir: Path) -> tuple[ManagedProcess, str]:
    """The web process as in the Procfile: gunicorn with uvicorn workers (config/asgi.py), each
    with WEB_THREADS threads for pages and the API and its event loop for the event streams."""
    env = {"WEB_THREADS": "8", **env, "DATABASE_APPLICATION_NAME": "atelier-web"}
    port = free_port()
    web = ManagedProcess(
        "web",
        [str(BIN / "gunicorn"), "config.asgi:application", "--worker-class", "config.web_worker.WebWorker",
         "--bind", f"127.0.0.1:{port}", "--workers", "2"],
        env,
        log_dir,
    ).start()  # fmt: skip
    web.wait_for_log("Booting worker")
    base_url = f"http://127.0.0.1:{port}"
    import requests

    def healthy() -> bool:
        try:
            return requests.get(f"{base_url}/healthz", timeout=5).status_code == 200
        except requests.RequestException:  # not listening yet, or still booting
            return False

    web.wait_ready(healthy, timeout=60, message="web to answer /healthz")
    return web, base_url


def start_redis(log_dir: Path, port: int | None = None) -> tuple[ManagedProcess, int]:
    """A Redis of the test's own, for a test that must stop the broker without stopping the machine's."""
    port = port or free_port()
    redis_server = shutil.which("redis-server") or "/usr/bin/redis-server"
    redis = ManagedProcess(
        f"redis-{port}",
        [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        dict(os.environ),
        log_dir,
    ).start()
    redis.wait_for_log("Ready to accept connections")
    return redis, port
