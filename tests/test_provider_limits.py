"""Provider rate limits shared by every worker (generation/services/limiter.py).

The limiter itself on both of its stores (Redis, and the database of installations without
Redis); the pipeline handing a job back to the queue when its turn is far off; and, on a real
worker with the real `openai` provider against a fake OpenAI that enforces a rate of its own,
that calls stay under the limit, that a 429 slows every worker down and the rate then recovers,
and that a long wait frees the worker's slot for another provider's job.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from itertools import pairwise

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from credits.models import LedgerEntry
from generation.models import GenerationJob, ProviderRateState
from generation.selectors import WaitingReason, queue_snapshot
from generation.services.lifeline import Lifeline
from generation.services.limiter import (
    DatabaseRateStore,
    RateStore,
    RedisRateStore,
    paced_keys,
    rate_blocked,
    rate_slow_down,
    rate_state,
    rate_take,
)
from generation.services.pipeline import RunOutcome, job_run
from generation.services.recovery import Interruption, RequeueOutcome, job_requeue
from generation.services.submit import JobSpec, job_submit
from tests.conftest import Person, wait_for_finish, wait_for_job
from tests.fakes.openai_server import GENERATIONS, FakeOpenAI, rate_limited
from tests.fakes.server import Answer, Recorded
from tests.processes import free_port, start_worker, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

# A key's state in Redis; every test starts without any.
REDIS_KEYS = f"{RedisRateStore.PREFIX}*"


@pytest.fixture(autouse=True)
def _no_rate_state() -> None:
    with redis.Redis.from_url(django_settings.CACHE_URL) as client:
        stale = list(client.scan_iter(match=REDIS_KEYS))
        if stale:
            client.delete(*stale)


def set_limits(settings, rates: dict[str, float]) -> None:
    """PROVIDER_LIMITS of this process, as requests a minute per "provider" or "provider/model"."""
    settings.PROVIDER_LIMITS = {tuple(key.partition("/")[::2]): (rate, None) for key, rate in rates.items()}


# -- the limiter on both stores ---------------------------------------------------------------


@pytest.fixture(params=["redis", "database"])
def store(request) -> RateStore:
    if request.param == "redis":
        return RedisRateStore(django_settings.CACHE_URL)
    return DatabaseRateStore()


def test_a_limited_provider_is_paced_one_interval_between_calls(settings, store):
    set_limits(settings, {"openai": 60})  # one call a second

    assert rate_take("openai", "gpt-image-2", store=store) == 0.0
    wait = rate_take("openai", "gpt-image-2", store=store)

    assert 0.5 < wait <= 1.0  # the next turn is a second after the first call, not a minute's burst
    # That turn is booked for the second call: the next one free is a second later again.
    [state] = rate_state("openai", "gpt-image-2", store=store)
    assert state.name == "openai/" and 1.5 < state.wait_seconds <= 2.0 and state.slowdown == 1.0


def test_callers_racing_for_a_turn_get_one_turn_per_interval(settings, store):
    set_limits(settings, {"openai": 1})
    start = threading.Barrier(8)
    waits: list[float] = []

    def take() -> None:
        start.wait()
        try:
            waits.append(rate_take("openai", "gpt-image-2", store=store))
        finally:
            connection.close()

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(waits)[0] == 0.0
    assert all(wait > 50 for wait in sorted(waits)[1:])  # seven are told to come back in a minute


def test_a_call_keeps_both_its_models_limit_and_its_providers(settings, store):
    set_limits(settings, {"openai/gpt-image-2": 60, "openai": 6})

    assert rate_take("openai", "gpt-image-2", store=store) == 0.0
    # Another model of the provider waits for the provider's turn, 10 s at 6 a minute...
    assert 9 < rate_take("openai", "gpt-image-1.5", store=store) <= 10
    # ...and the first model for the later of its own turn and the provider's.
    assert 9 < rate_take("openai", "gpt-image-2", store=store) <= 10
    assert [state.name for state in rate_state("openai", "gpt-image-2", store=store)] == [
        "openai/gpt-image-2",
        "openai/",
    ]


class Untouchable:
    """A store that fails the test if it is used at all."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the store was used ({name}) for a provider without a rate")


def test_a_provider_without_a_rate_is_neither_waited_for_nor_stored(settings):
    settings.PROVIDER_LIMITS = {("openai", ""): (60.0, None), ("gemini", ""): (None, 4)}
    untouchable = Untouchable()

    for provider in ("local", "gemini"):  # gemini has a concurrency limit only
        assert rate_take(provider, "any-model", store=untouchable) == 0.0  # type: ignore[arg-type]
        assert rate_blocked(provider, "any-model", store=untouchable) is False  # type: ignore[arg-type]
        assert rate_slow_down(provider, "any-model", retry_after=5, store=untouchable) is False  # type: ignore[arg-type]
        assert paced_keys(provider, "any-model") == []


def test_the_scheduler_is_told_blocked_only_for_a_wait_longer_than_an_inline_wait(settings, store):
    settings.PROVIDER_LIMIT_MAX_INLINE_WAIT_SECONDS = 2.0
    set_limits(settings, {"openai/gpt-image-2": 60, "openai/gpt-image-1.5": 6})

    for model in ("gpt-image-2", "gpt-image-1.5"):
        assert rate_blocked("openai", model, store=store) is False
        assert rate_take("openai", model, store=store) == 0.0
    # One second to the next turn is waited in the worker's thread: worth a claim.
    assert rate_blocked("openai", "gpt-image-2", store=store) is False
    # Ten seconds are not: the scheduler passes over the job.
    assert rate_blocked("openai", "gpt-image-1.5", store=store) is True


def test_a_429_stops_every_caller_until_its_retry_after_and_halves_the_rate(settings, store):
    set_limits(settings, {"openai": 60})
    assert rate_take("openai", "gpt-image-2", store=store) == 0.0

    assert rate_slow_down("openai", "gpt-image-2", retry_after=5, store=store) is True

    [state] = rate_state("openai", "gpt-image-2", store=store)
    assert 4.5 < state.wait_seconds <= 5 and state.slowdown > 1.9
    assert 4.5 < rate_take("openai", "gpt-image-1.5", store=store) <= 5  # any model of the provider
    assert rate_blocked("openai", "gpt-image-2", store=store) is True


def test_a_429_without_retry_after_pauses_one_slowed_interval(settings, store):
    set_limits(settings, {"openai": 60})

    rate_slow_down("openai", "gpt-image-2", retry_after=None, store=store)

    [state] = rate_state("openai", "gpt-image-2", store=store)
    assert 1.5 < state.wait_seconds <= 2.0  # the interval, doubled


def test_429s_of_calls_already_on_their_way_do_not_slow_down_again(settings, store):
    set_limits(settings, {"openai": 60})

    for _ in range(4):  # four calls sent at the old rate, all refused together
        rate_slow_down("openai", "gpt-image-2", retry_after=3, store=store)

    [state] = rate_state("openai", "gpt-image-2", store=store)
    assert 1.9 < state.slowdown <= 2.0  # halved once, not to a sixteenth


def test_the_slowdown_recovers_gradually_to_the_configured_rate(settings, store):
    set_limits(settings, {"openai": 600})  # a call every 0.1 s
    settings.PROVIDER_LIMIT_RECOVERY_SECONDS = 0.5
    rate_slow_down("openai", "gpt-image-2", retry_after=0, store=store)
    seen: list[float] = []

    def recovered() -> bool:
        [state] = rate_state("openai", "gpt-image-2", store=store)
        seen.append(state.slowdown)
        return state.slowdown < 1.02

    wait_until(recovered, timeout=10, interval=0.02, message="the slowdown to wear off")

    assert seen[0] > 1.5 and seen == sorted(seen, reverse=True)  # down step by step, not at once
    assert len({round(slowdown, 2) for slowdown in seen}) > 3
    assert rate_take("openai", "gpt-image-2", store=store) == 0.0
    [state] = rate_state("openai", "gpt-image-2", store=store)
    assert state.wait_seconds <= 0.1 * 1.02  # the configured interval again


def test_a_limiter_that_cannot_reach_redis_lets_calls_through_and_says_so(settings, caplog):
    set_limits(settings, {"openai": 1})
    unreachable = RedisRateStore(f"redis://127.0.0.1:{free_port()}/0")

    with caplog.at_level(logging.WARNING, logger="generation.services.limiter"):
        for _ in range(3):
            assert rate_take("openai", "gpt-image-2", store=unreachable) == 0.0
        assert rate_blocked("openai", "gpt-image-2", store=unreachable) is False
        # The job's own backoff must handle a 429 then.
        assert rate_slow_down("openai", "gpt-image-2", retry_after=1, store=unreachable) is False

    said = [record.getMessage() for record in caplog.records if "Redis unreachable" in record.getMessage()]
    assert len(said) == 1  # once, not once per call


def test_the_database_store_keeps_a_row_per_limited_key(settings):
    set_limits(settings, {"openai/gpt-image-2": 60, "openai": 120})

    rate_take("openai", "gpt-image-2", store=DatabaseRateStore())
    rate_slow_down("openai", "gpt-image-2", retry_after=2, store=DatabaseRateStore())

    rows = {row.key: row for row in ProviderRateState.objects.all()}
    assert set(rows) == {"openai/gpt-image-2", "openai/"}
    assert all(row.slowdown == 2.0 and row.calm_until > row.slowed_at for row in rows.values())


# -- the pipeline, in this process ------------------------------------------------------------


def local_job(person: Person, count: int, prompt: str = "paced nails") -> GenerationJob:
    return job_submit(team=person.team, user=person.user, spec=JobSpec(prompt=prompt, count=count)).job


def test_a_short_wait_for_a_turn_is_waited_in_the_worker(settings, alice):
    settings.LOCAL_PROVIDER_LATENCY_MS = 0
    set_limits(settings, {"local": 120})  # a turn every half second: under the 2 s inline wait
    job = local_job(alice, count=3)

    assert job_run(job_id=job.id) is RunOutcome.SUCCEEDED

    job.refresh_from_db()
    assert (job.completed_outputs, job.attempts, job.run_after) == (3, 1, None)


def test_a_long_wait_for_a_turn_hands_the_job_back_for_its_turn_at_no_cost(settings, alice):
    settings.LOCAL_PROVIDER_LATENCY_MS = 0
    set_limits(settings, {"local": 6})  # a turn every 10 s
    job = local_job(alice, count=2)
    started = timezone.now()

    assert job_run(job_id=job.id) is RunOutcome.RATE_LIMITED

    job.refresh_from_db()
    assert (job.status, job.completed_outputs, job.lease_owner) == ("queued", 1, "")
    assert 8 < (job.run_after - started).total_seconds() <= 10.5  # queued until its turn
    # Nobody's fault: no attempt, no pause, no suspicion.
    assert (job.attempts, job.pauses, job.crashes_alone, job.suspect_crashes) == (0, 0, 0, 0)
    assert queue_snapshot().place(job).waiting_reason is WaitingReason.PROVIDER_LIMIT
    assert job_run(job_id=job.id) is RunOutcome.NOT_CLAIMED  # not before its turn


def test_a_job_left_without_a_turn_for_the_outage_budget_fails_without_charge(settings, alice):
    settings.JOB_OUTAGE_BUDGET_SECONDS = 60
    job = local_job(alice, count=2)
    held = Lifeline.current().claim(job_id=job.id)
    assert held is not None
    # It started long ago and has made nothing since; the provider still has no turn for it.
    GenerationJob.objects.filter(id=job.id).update(started_at=timezone.now() - timedelta(minutes=5))

    outcome = job_requeue(
        job_id=job.id, fence=Q(lease_owner=held.token), interruption=Interruption.RATE_LIMITED, wait_seconds=30
    )
    Lifeline.current().release(held)

    job.refresh_from_db()
    assert outcome is RequeueOutcome.FAILED
    assert (job.status, job.error_code) == ("failed", "RATE_LIMITED")
    assert "no turn" in job.error_message
    assert LedgerEntry.objects.filter(job_id=job.id, kind="capture").count() == 0


# -- a real worker, the real openai provider, a fake OpenAI that enforces its own rate -----------

API_KEY = "test-key"
JOBS = "/api/v1/jobs"
# Per model, so each test has a limit of its own: 30 a minute is a call every 2 s.
STEADY_MODEL, SLOWED_MODEL, SPARSE_MODEL = "gpt-image-2", "gpt-image-1.5", "gpt-image-1-mini"
WORKER_LIMITS = {f"openai/{STEADY_MODEL}": 30, f"openai/{SLOWED_MODEL}": 30, f"openai/{SPARSE_MODEL}": 12}
RECOVERY_SECONDS = 2.0
# How much sooner than the interval the fake still lets a call through: the path from the
# limiter's grant to the fake's socket (a thread, the SDK, a connection) does not take the
# same time twice, least of all on a busy machine of 2 cores.
JITTER_SECONDS = 0.5


def interval(model: str) -> float:
    return 60 / WORKER_LIMITS[f"openai/{model}"]


class PacedFakeOpenAI(FakeOpenAI):
    """The fake, enforcing a rate as OpenAI says it may enforce its per-minute limits: over
    shorter periods, so N a minute is one call every 60/N s. A call sooner than `min_gap` after
    the last one it let through is answered 429 and noted in `refused`."""

    def __init__(self) -> None:
        super().__init__()
        self.min_gap = 0.0
        self.refused: list[Recorded] = []
        self._last_let_through: float | None = None

    def _answer(self, request: Recorded) -> Answer:
        now = time.monotonic()
        with self._lock:
            too_soon = self._last_let_through is not None and now - self._last_let_through < self.min_gap
            if too_soon:
                self.refused.append(request)
            else:
                self._last_let_through = now
        if too_soon:
            return rate_limited("1").answer
        return super()._answer(request)

    def forget(self) -> None:
        super().forget()
        with self._lock:
            self.refused.clear()
            self._last_let_through = None
            self.min_gap = 0.0


@pytest.fixture(scope="module")
def fake():
    server = PacedFakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(make_stack, fake):
    return make_stack(
        OPENAI_API_KEY=API_KEY,
        OPENAI_BASE_URL=f"{fake.url}/v1",
        PROVIDER_TIMEOUT_SECONDS="5",
        PROVIDER_LIMITS=",".join(f"{key}={rate}/min" for key, rate in WORKER_LIMITS.items()),
        PROVIDER_LIMIT_RECOVERY_SECONDS=str(RECOVERY_SECONDS),
    )


@pytest.fixture
def paced(settings, fake, stack):
    """This process (the API, the test's reads of the shared state) sees the worker's limits."""
    fake.forget()
    settings.OPENAI_API_KEY = API_KEY
    settings.PROVIDER_LIMIT_RECOVERY_SECONDS = RECOVERY_SECONDS
    set_limits(settings, WORKER_LIMITS)
    return stack


def use_worker(stack, threads: int) -> None:
    stack.worker.stop()
    stack.worker = start_worker(stack.env, stack.log_dir, concurrency=threads)


def submit(person: Person, model: str, prompt: str, count: int) -> str:
    body = {"prompt": prompt, "provider": "openai", "model": model, "count": count}
    response = person.client.post(JOBS, body, format="json")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def most_in_window(arrivals: list[float], window: float) -> int:
    """The most arrivals within any `window` seconds."""
    arrivals = sorted(arrivals)
    return max((sum(1 for later in arrivals[i:] if later - at < window) for i, at in enumerate(arrivals)), default=0)


def captures(job_id: str) -> int:
    return LedgerEntry.objects.filter(job_id=job_id, kind=LedgerEntry.Kind.CAPTURE).count()


def assert_made_at_no_cost(job_id: str, images: int) -> None:
    job = GenerationJob.objects.get(id=job_id)
    assert (job.status, job.completed_outputs) == ("succeeded", images)
    assert captures(job_id) == images
    # Waiting for a turn, in the worker or in the queue, is nobody's fault.
    assert (job.attempts, job.pauses, job.crashes_alone, job.suspect_crashes) == (1, 0, 0, 0)


@pytest.mark.worker
def test_calls_from_many_threads_stay_under_the_limit_and_draw_no_429(paced, alice, charlie, fake):
    fake.min_gap = interval(STEADY_MODEL) - JITTER_SECONDS
    jobs = [submit(alice, STEADY_MODEL, f"steady {n}", count=2) for n in range(2)]
    jobs.append(submit(charlie, STEADY_MODEL, "steady other team", count=2))

    for job_id in jobs:
        wait_for_finish(job_id, timeout=60)

    arrivals = fake.arrivals(GENERATIONS)
    assert len(arrivals) == 6 and fake.refused == []
    assert most_in_window(arrivals, 60) <= WORKER_LIMITS[f"openai/{STEADY_MODEL}"]
    assert most_in_window(arrivals, fake.min_gap) == 1  # one call every 2 s, as the provider enforces
    closest = min(later - earlier for earlier, later in pairwise(sorted(arrivals)))
    print(
        f"[figure] calls {interval(STEADY_MODEL):.1f} s apart by the limit; the closest two came {closest:.3f} s apart"
    )
    for job_id in jobs:
        assert_made_at_no_cost(job_id, images=2)


@pytest.mark.worker
def test_a_429_slows_every_worker_down_and_the_rate_then_recovers(paced, alice, fake):
    retry_after = 2.0
    fake.min_gap = interval(SLOWED_MODEL) - JITTER_SECONDS
    fake.script(GENERATIONS, rate_limited(f"{retry_after:.0f}"))
    first, second = (submit(alice, SLOWED_MODEL, prompt, count=2) for prompt in ("first job", "second job"))

    # Every worker sees the rate halved as soon as the refused call's worker has read the 429.
    wait_until(lambda: rate_state("openai", SLOWED_MODEL)[0].slowdown > 1.5, timeout=30, message="the slowdown")
    for job_id in (first, second):
        wait_for_finish(job_id, timeout=60)

    received = fake.received(GENERATIONS)
    arrivals = fake.arrivals(GENERATIONS)
    refused_at = arrivals[0]
    assert len(received) == 5 and fake.refused == []  # the scripted 429, then four images
    refused_job = "first job" if "first job" in received[0].json()["prompt"] else "second job"
    other_job = "second job" if refused_job == "first job" else "first job"
    calls_of_other = [
        at for request, at in zip(received, arrivals, strict=True) if other_job in request.json()["prompt"]
    ]
    # Nothing reached the provider before its Retry-After: not the refused job, not the other one.
    assert min(arrivals[1:]) >= refused_at + retry_after - JITTER_SECONDS
    assert len(calls_of_other) == 2 and min(calls_of_other) > refused_at
    # Then the calls came slower than the configured interval: at the end of the pause the
    # slowdown had worn off to 1 + 0.5 ** (2 / RECOVERY_SECONDS) = 1.5 times it.
    resumed = sorted(arrivals[1:])
    assert resumed[1] - resumed[0] >= 1.5 * interval(SLOWED_MODEL) - JITTER_SECONDS
    # The slowdown wears off for everyone, and jobs are paced at the configured rate again.
    wait_until(lambda: rate_state("openai", SLOWED_MODEL)[0].slowdown < 1.05, timeout=30, message="recovery")
    third = submit(alice, SLOWED_MODEL, "after recovery", count=2)
    wait_for_finish(third, timeout=30)
    assert fake.refused == []
    for job_id in (first, second, third):
        assert_made_at_no_cost(job_id, images=2)


@pytest.mark.worker
def test_a_long_wait_frees_the_worker_slot_for_another_providers_job(paced, alice, fake):
    use_worker(paced, threads=1)
    fake.min_gap = interval(SPARSE_MODEL) - JITTER_SECONDS
    waiting_for_openai = submit(alice, SPARSE_MODEL, "sparse", count=2)  # a turn every 5 s
    local = job_submit(team=alice.team, user=alice.user, spec=JobSpec(prompt="local meanwhile", count=1)).job

    handed_back = wait_for_job(
        waiting_for_openai, lambda job: job.status == "queued" and job.completed_outputs == 1, timeout=30
    )
    reason = alice.client.get(f"{JOBS}/{waiting_for_openai}").json()["waiting_reason"]
    openai_job = wait_for_finish(waiting_for_openai, timeout=30)
    local_job_done = wait_for_finish(local.id, timeout=5)

    assert handed_back.run_after is not None
    assert reason == WaitingReason.PROVIDER_LIMIT
    assert len(fake.received(GENERATIONS)) == 2 and fake.refused == []
    # The one thread ran the local job while the openai job waited for its turn in the queue.
    assert local_job_done.status == "succeeded"
    assert local_job_done.finished_at < openai_job.outputs.get(index=1).created_at
    assert_made_at_no_cost(waiting_for_openai, images=2)
