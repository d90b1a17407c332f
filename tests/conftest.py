from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from playwright.sync_api import Browser
from rest_framework.test import APIClient

from accounts.models import Team, User
from accounts.services import api_key_create, membership_ensure
from credits.services import credits_grant
from generation.models import GenerationJob
from tests.browser import running_chromium
from tests.factories import UserFactory
from tests.processes import (
    ManagedProcess,
    child_environment,
    start_beat,
    start_quarantine,
    start_rescuer,
    start_worker,
    wait_until,
)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the run's temporary folder (images, zips, uploads) unless it was given from outside."""
    from django.conf import settings

    made_here = getattr(settings, "TEST_VAR_DIR", None)
    if made_here and str(settings.VAR_DIR) == made_here:
        shutil.rmtree(made_here, ignore_errors=True)


# Tests that start real processes (Celery worker, beat, gunicorn, Chromium) ask for one of these
# fixtures or carry the `worker` mark.
_PROCESS_FIXTURES = frozenset({"make_stack", "browser", "live_server", "log_dir"})
PROCESSES_GROUP = "processes"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Groups for pytest-xdist (`--dist loadgroup`, as `make test` runs): every test that starts
    processes is in one group, run one after another on one xdist worker, first; every other module
    is a group of its own, spread over the other workers. Two stacks never run at once (each
    would take the machine's two cores from the other's timing), while the tests that need only
    the database run beside them."""

    def starts_processes(item: pytest.Item) -> bool:
        return item.get_closest_marker("worker") is not None or bool(
            _PROCESS_FIXTURES & set(getattr(item, "fixturenames", ()))
        )

    grouped = [(starts_processes(item), item) for item in items]
    for starts, item in grouped:
        item.add_marker(pytest.mark.xdist_group(PROCESSES_GROUP if starts else item.nodeid.split("::")[0]))
    if config.getoption("dist", "no") != "no":
        # xdist hands out groups in the order of their first test: the longest group goes first.
        items[:] = [item for starts, item in grouped if starts] + [item for starts, item in grouped if not starts]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for a test module; each test opens its own context in it."""
    with running_chromium() as chromium:
        yield chromium


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    """Each test starts with no request counted against any rate limit. The counters share the
    test Redis database with the broker: only their keys go (DRF's `throttle_<scope>_<ident>`)."""
    location = settings.CACHES["default"].get("LOCATION", "")
    if not str(location).startswith("redis"):
        cache.clear()  # a file or memory cache holds nothing but the counters
        return
    with redis.Redis.from_url(location) as client:
        stale = list(client.scan_iter(match=cache.make_key("throttle_*"), count=1000))
        if stale:
            client.delete(*stale)


@dataclass
class Person:
    user: User
    team: Team
    api_key: str
    client: APIClient  # authenticated with the API key, acting for `team`


STARTING_CREDITS = 1000


def _person(user: User, team: Team, credits: int = STARTING_CREDITS) -> Person:
    if credits:
        credits_grant(team=team, amount=credits, idempotency_key=f"test-grant:{team.id}", actor=None, memo="test")
    issued = api_key_create(team=team, created_by=user, name="test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")
    return Person(user=user, team=team, api_key=issued.raw_key, client=client)


@pytest.fixture
def alice(db) -> Person:  # noqa: ARG001 - needs the database
    user = UserFactory(email="alice@example.com")
    return _person(user, user.personal_team)


@pytest.fixture
def bob(alice: Person) -> Person:
    """A member of Alice's team."""
    user = UserFactory(email="bob@example.com")
    membership_ensure(team=alice.team, user=user)
    return _person(user, alice.team, credits=0)


@pytest.fixture
def charlie() -> Person:
    """An outsider: a team of his own, nothing to do with Alice's."""
    user = UserFactory(email="charlie@example.com")
    return _person(user, user.personal_team)


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("process-logs")


@dataclass
class Stack:
    worker: ManagedProcess
    quarantine: ManagedProcess
    rescuer: ManagedProcess
    beat: ManagedProcess
    env: dict[str, str]
    log_dir: Path

    def restart_worker(self) -> None:
        self.worker = start_worker(self.env, self.log_dir)


@pytest.fixture(scope="module")
def make_stack(django_db_setup, django_db_blocker, log_dir: Path) -> Iterator[Callable[..., Stack]]:  # noqa: ARG001
    """Starts a real worker and beat against the test database and broker; stops them after the module."""
    started: list[ManagedProcess] = []
    stacks: list[Stack] = []

    def make(**overrides: str) -> Stack:
        with django_db_blocker.unblock():
            env = child_environment(**overrides)
        # Messages left by an earlier module (their jobs are gone) would only add noise.
        redis.Redis.from_url(env["CELERY_BROKER_URL"]).flushdb()

        def keep(process: ManagedProcess) -> ManagedProcess:
            # Noted before anything else may fail, so a stack that fails halfway is stopped too
            # (a stray worker would hold the test database open and break the next run).
            started.append(process)
            return process

        stack = Stack(
            worker=keep(start_worker(env, log_dir)),
            quarantine=keep(start_quarantine(env, log_dir)),
            rescuer=keep(start_rescuer(env, log_dir)),
            beat=keep(start_beat(env, log_dir)),
            env=env,
            log_dir=log_dir,
        )
        stacks.append(stack)
        return stack

    try:
        yield make
    finally:
        # The processes each stack has now (a test may have restarted its worker) and all those
        # ever started: a worker left running would take the next modules' jobs.
        current = [part for stack in stacks for part in (stack.worker, stack.quarantine, stack.rescuer, stack.beat)]
        for process in [*current, *started]:
            process.stop()


def job_state(job_id: object) -> GenerationJob:
    return GenerationJob.objects.get(id=job_id)


def wait_for_job(job_id: object, condition: Callable[[GenerationJob], bool], timeout: float = 30) -> GenerationJob:
    """The job as soon as `condition` holds for it; fails at the deadline."""

    def check() -> GenerationJob | None:
        job = job_state(job_id)
        return job if condition(job) else None

    return wait_until(check, timeout=timeout, message=f"job {job_id}")  # type: ignore[return-value]


def wait_for_finish(job_id: object, timeout: float = 30) -> GenerationJob:
    return wait_for_job(job_id, lambda job: job.is_finished, timeout=timeout)
