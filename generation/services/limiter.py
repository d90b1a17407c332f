"""Per-provider rate limits, shared by every worker (see docs/architecture.md, "Fair and bounded").

Two limits per provider (and optionally per model), from PROVIDER_LIMITS:
- concurrency: how many of its jobs run at once. The fair scheduler counts running jobs in the
  database at claim time and skips a saturated provider's jobs, so a job never holds a worker
  slot waiting for a provider that another provider's job could use;
- requests per minute: every call (generate, start, poll) takes a turn first (`rate_take`).

The request rate is paced, not bursty: N a minute means one call every 60/N s (GCRA with no
burst: the state is the earliest moment of the next call). Providers enforce their per-minute
limits over shorter periods too (OpenAI: "60,000 requests/minute may be enforced as 1,000
requests/second"), so a minute's worth of calls sent at once would draw 429s even under the
limit. A call under both a model's and its provider's limit waits for both, and takes both.

A 429 that arrives anyway (`rate_slow_down`) slows every worker: no call of that key before the
provider's Retry-After (or one slowed interval), and the interval doubles (at most
MAX_SLOWDOWN times); the slowdown then halves every PROVIDER_LIMIT_RECOVERY_SECONDS. The 429s of
calls that were already on their way when it slowed down do not slow it again.

Where the state lives: Redis when there is one (CACHE_URL, else a redis broker), updated by Lua
scripts on Redis's own clock, so every host agrees; otherwise a row per key in the database
(`ProviderRateState`), updated under a row lock (SQLite's immediate transactions serialize the
processes of the embedded default). A limiter that cannot reach Redis lets calls through and
logs it: the provider's own 429s, retried with backoff, still protect it. Keys without a request
rate cost nothing: no state is read or written for them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

import redis
from django.conf import settings
from django.db import transaction

from generation.models import ProviderRateState

logger = logging.getLogger(__name__)

# A run of 429s cannot slow a key below 1/16 of its configured rate.
MAX_SLOWDOWN = 16.0
# How long rate_blocked's answer is reused in a process: the scheduler asks once per (team,
# provider, model) group of every claim, under the claim lock. A stale answer only means one
# claim too many (its call then waits or hands the job back) or one passed over for a moment.
BLOCKED_ANSWER_SECONDS = 0.1
# A limiter that cannot reach Redis says so at most this often per process.
UNREACHABLE_LOG_SECONDS = 60.0


@dataclass(frozen=True)
class ProviderLimit:
    requests_per_minute: float | None = None
    concurrency: int | None = None


@dataclass(frozen=True)
class PacedKey:
    """A limit with a request rate, as the store keeps it: `name` ("openai/gpt-image-2", or
    "openai/" for the provider's own) and the interval between its calls at the configured rate."""

    name: str
    interval: float


@dataclass(frozen=True)
class RateState:
    """What the shared state says of a key now (for the API's waiting reason, tests, operators)."""

    name: str
    wait_seconds: float  # until its next call may be made; 0 when one may be made now
    slowdown: float  # the interval's multiplier after 429s (1.0: the configured rate)


def limits_for(provider: str, model: str) -> list[tuple[tuple[str, str], ProviderLimit]]:
    """The limits that apply to a call of `model` at `provider`: the model's own and the
    provider's, each with the key it is counted under ((provider, model) or (provider, ""))."""
    found = []
    for key in ((provider, model), (provider, "")):
        configured = settings.PROVIDER_LIMITS.get(key)
        if configured is not None:
            found.append((key, ProviderLimit(*configured)))
    return found


def concurrency_saturated(provider: str, model: str, running: Counter[tuple[str, str]]) -> bool:
    """Whether another job of `model` at `provider` would pass a concurrency limit, given the
    running jobs counted per (provider, model) and per (provider, "")."""
    return any(
        limit.concurrency is not None and running[key] >= limit.concurrency
        for key, limit in limits_for(provider, model)
    )


def paced_keys(provider: str, model: str) -> list[PacedKey]:
    """The limits with a request rate that a call of `model` at `provider` must keep."""
    return [
        PacedKey(name=f"{key[0]}/{key[1]}", interval=60.0 / limit.requests_per_minute)
        for key, limit in limits_for(provider, model)
        if limit.requests_per_minute
    ]


def rate_take(provider: str, model: str, *, store: RateStore | None = None) -> float:
    """Book the next turn for one call of `model` at `provider` and return the seconds until it
    (0.0: now). A turn further off than PROVIDER_LIMIT_MAX_INLINE_WAIT_SECONDS is not booked:
    the caller hands its job back until then. Booking (rather than asking again when the turn
    comes) lines waiting calls up one interval apart, so a queue of calls longer than an inline
    wait shows as `rate_blocked` and the claim passes over the provider's jobs."""
    keys = paced_keys(provider, model)
    if not keys:
        return 0.0
    return (store or rate_store()).take(keys, settings.PROVIDER_LIMIT_MAX_INLINE_WAIT_SECONDS)


def rate_slow_down(provider: str, model: str, *, retry_after: float | None, store: RateStore | None = None) -> bool:
    """A call of `model` at `provider` was answered 429: slow every worker down (see the module's
    docstring). True when the limiter paces this call's turns, so the next turn is the retry's
    wait; False when the job's own backoff must do (no rate configured, or no store reachable)."""
    keys = paced_keys(provider, model)
    if not keys:
        return False
    return (store or rate_store()).slow_down(keys, retry_after)


def rate_blocked(provider: str, model: str, *, store: RateStore | None = None) -> bool:
    """Whether a call of `model` at `provider` would wait longer for its turn than a worker waits
    in its thread (PROVIDER_LIMIT_MAX_INLINE_WAIT_SECONDS): the scheduler then passes over the
    job, whose waiting reason is `provider_limit`. A shorter wait is worth a claim: the call
    waits for it in the worker's thread."""
    keys = paced_keys(provider, model)
    if not keys:
        return False
    return (store or rate_store()).blocked(keys, settings.PROVIDER_LIMIT_MAX_INLINE_WAIT_SECONDS)


def rate_blocked_keys(*, store: RateStore | None = None) -> list[tuple[str, str]]:
    """The limits with a request rate whose next turn is further off than an inline wait, as
    (provider, model), or (provider, "") for a provider's own limit, which holds all its models:
    a job is blocked (`rate_blocked`) exactly when one of its keys is listed. For the claim,
    which leaves these providers' jobs in the queue."""
    blocked = []
    for (provider, model), (rate, _) in settings.PROVIDER_LIMITS.items():
        if not rate:
            continue
        key = PacedKey(name=f"{provider}/{model}", interval=60.0 / rate)
        if (store or rate_store()).blocked([key], settings.PROVIDER_LIMIT_MAX_INLINE_WAIT_SECONDS):
            blocked.append((provider, model))
    return blocked


def rate_state(provider: str, model: str, *, store: RateStore | None = None) -> list[RateState]:
    """What the shared state says now of each rate limit of a call (for operators and tests: it
    does not fail open, an unreachable Redis raises)."""
    keys = paced_keys(provider, model)
    if not keys:
        return []
    return (store or rate_store()).state(keys)


# -- where the state lives ---------------------------------------------------------------------


class RateStore(Protocol):
    def take(self, keys: list[PacedKey], max_wait: float) -> float: ...

    def slow_down(self, keys: list[PacedKey], retry_after: float | None) -> bool: ...

    def blocked(self, keys: list[PacedKey], threshold: float) -> bool: ...

    def state(self, keys: list[PacedKey]) -> list[RateState]: ...


_store: RateStore | None = None
_store_pid: int | None = None
_store_lock = threading.Lock()


def rate_store() -> RateStore:
    """This process's store: Redis of CACHE_URL, else of the broker, else the database."""
    global _store, _store_pid
    with _store_lock:
        if _store is None or _store_pid != os.getpid():
            url = next(
                (url for url in (settings.CACHE_URL, settings.CELERY_BROKER_URL) if _is_redis(url)),
                None,
            )
            _store = RedisRateStore(url) if url else DatabaseRateStore()
            _store_pid = os.getpid()
        return _store


def _is_redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://"))


def _slowdown_now(slowdown: float, slowed_at: float, now: float) -> float:
    """A slowdown halves (its excess over 1) every PROVIDER_LIMIT_RECOVERY_SECONDS."""
    elapsed = max(0.0, now - slowed_at)
    return 1.0 + (slowdown - 1.0) * 0.5 ** (elapsed / settings.PROVIDER_LIMIT_RECOVERY_SECONDS)


def _keep_seconds() -> int:
    """How long a key's state matters once nothing touches it: until a slowdown has all but gone."""
    return int(max(60.0, 10 * settings.PROVIDER_LIMIT_RECOVERY_SECONDS))


class _BlockedAnswers:
    """rate_blocked's answers, reused for BLOCKED_ANSWER_SECONDS in this process; a take or a
    slowdown made here forgets them at once."""

    def __init__(self) -> None:
        self._answers: dict[tuple[tuple[str, ...], float], tuple[float, bool]] = {}
        self._lock = threading.Lock()

    def get(self, keys: list[PacedKey], threshold: float) -> bool | None:
        with self._lock:
            found = self._answers.get((tuple(key.name for key in keys), threshold))
        if found is None or found[0] < time.monotonic():
            return None
        return found[1]

    def put(self, keys: list[PacedKey], threshold: float, blocked: bool) -> bool:
        with self._lock:
            self._answers[(tuple(key.name for key in keys), threshold)] = (
                time.monotonic() + BLOCKED_ANSWER_SECONDS,
                blocked,
            )
        return blocked

    def forget(self) -> None:
        with self._lock:
            self._answers.clear()


# Redis: each script reads and writes every key of a call at once, on Redis's clock. Numbers go
# back as strings (a Lua number would come back truncated to an integer).
_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local recovery = tonumber(ARGV[1])
local keep = tonumber(ARGV[2])
local function slowdown_now(state)
  local slowdown = tonumber(state[2]) or 1
  local slowed_at = tonumber(state[3]) or now
  return 1 + (slowdown - 1) * math.pow(0.5, math.max(0, now - slowed_at) / recovery)
end
"""

# ARGV: recovery, keep, max_wait, then each key's configured interval. Returns the wait until
# the turn; it is booked (each key's next turn moved one interval past it) unless over max_wait.
_TAKE = (
    _NOW
    + """
local max_wait = tonumber(ARGV[3])
local turn = now
local intervals = {}
for i, key in ipairs(KEYS) do
  local state = redis.call('HMGET', key, 'next_call_at', 'slowdown', 'slowed_at')
  intervals[i] = tonumber(ARGV[3 + i]) * slowdown_now(state)
  local next_call_at = tonumber(state[1]) or 0
  if next_call_at > turn then turn = next_call_at end
end
if turn - now > max_wait then return tostring(turn - now) end
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, 'next_call_at', tostring(turn + intervals[i]))
  redis.call('EXPIRE', key, math.ceil(turn - now + intervals[i] + keep))
end
return tostring(turn - now)
"""
)

# ARGV: recovery, keep, retry_after (-1: none), max_slowdown, then each key's interval.
_SLOW_DOWN = (
    _NOW
    + """
local retry_after = tonumber(ARGV[3])
local max_slowdown = tonumber(ARGV[4])
for i, key in ipairs(KEYS) do
  local state = redis.call('HMGET', key, 'next_call_at', 'slowdown', 'slowed_at', 'calm_until')
  local pause = math.max(retry_after, 0)
  if now >= (tonumber(state[4]) or 0) then
    local slowdown = math.min(2 * slowdown_now(state), max_slowdown)
    if retry_after < 0 then pause = tonumber(ARGV[4 + i]) * slowdown end
    redis.call('HSET', key, 'slowdown', tostring(slowdown), 'slowed_at', tostring(now),
               'calm_until', tostring(now + pause))
  end
  if now + pause > (tonumber(state[1]) or 0) then
    redis.call('HSET', key, 'next_call_at', tostring(now + pause))
  end
  redis.call('EXPIRE', key, math.ceil(pause + keep))
end
return 1
"""
)

# ARGV: recovery, keep. Returns, per key, its wait and its slowdown now.
_STATE = (
    _NOW
    + """
local found = {}
for i, key in ipairs(KEYS) do
  local state = redis.call('HMGET', key, 'next_call_at', 'slowdown', 'slowed_at')
  found[2 * i - 1] = tostring(math.max(0, (tonumber(state[1]) or 0) - now))
  found[2 * i] = tostring(slowdown_now(state))
end
return found
"""
)


class RedisRateStore:
    """The state in Redis: a hash per key, `atelier:provider-rate:{provider}/model` (the braces
    keep a provider's keys in one slot of a Redis Cluster, as a script's keys must be)."""

    PREFIX = "atelier:provider-rate:"

    def __init__(self, url: str) -> None:
        # Half a second at most, as for the cache: a Redis that is down or hangs lets calls through.
        self.client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        self._take = self.client.register_script(_TAKE)
        self._slow_down = self.client.register_script(_SLOW_DOWN)
        self._state = self.client.register_script(_STATE)
        self._answers = _BlockedAnswers()
        self._unreachable_logged_at = -UNREACHABLE_LOG_SECONDS

    def take(self, keys: list[PacedKey], max_wait: float) -> float:
        self._answers.forget()
        try:
            wait = self._take(keys=self._names(keys), args=[*self._common(), max_wait, *(key.interval for key in keys)])
        except (redis.RedisError, OSError) as error:
            self._unreachable(error)
            return 0.0
        return float(wait)

    def slow_down(self, keys: list[PacedKey], retry_after: float | None) -> bool:
        self._answers.forget()
        args = [*self._common(), -1 if retry_after is None else retry_after, MAX_SLOWDOWN]
        try:
            self._slow_down(keys=self._names(keys), args=[*args, *(key.interval for key in keys)])
        except (redis.RedisError, OSError) as error:
            self._unreachable(error)
            return False
        return True

    def blocked(self, keys: list[PacedKey], threshold: float) -> bool:
        known = self._answers.get(keys, threshold)
        if known is not None:
            return known
        try:
            waits = [state.wait_seconds for state in self._read(keys)]
        except (redis.RedisError, OSError) as error:
            self._unreachable(error)
            return False
        return self._answers.put(keys, threshold, max(waits) > threshold)

    def state(self, keys: list[PacedKey]) -> list[RateState]:
        return self._read(keys)

    def _read(self, keys: list[PacedKey]) -> list[RateState]:
        found = self._state(keys=self._names(keys), args=self._common())
        return [
            RateState(name=key.name, wait_seconds=float(found[2 * i]), slowdown=float(found[2 * i + 1]))
            for i, key in enumerate(keys)
        ]

    def _names(self, keys: list[PacedKey]) -> list[str]:
        names = []
        for key in keys:
            provider, _, model = key.name.partition("/")
            names.append(f"{self.PREFIX}{{{provider}}}/{model}")
        return names

    def _common(self) -> list[float]:
        return [settings.PROVIDER_LIMIT_RECOVERY_SECONDS, _keep_seconds()]

    def _unreachable(self, error: Exception) -> None:
        now = time.monotonic()
        if now - self._unreachable_logged_at >= UNREACHABLE_LOG_SECONDS:
            self._unreachable_logged_at = now
            logger.warning(
                "provider rate limits: Redis unreachable (%s); calls go through unpaced until it answers "
                "(the providers' own 429s are still retried with backoff)",
                error,
            )


class DatabaseRateStore:
    """The state in the database, a row per key (`ProviderRateState`), for installations without
    Redis (the embedded default: SQLite and the filesystem broker, several processes on one
    machine). Rows are locked in the order of their keys, so two calls cannot deadlock. Database
    errors are not swallowed: like any database trouble in a run, they pause the job."""

    def __init__(self) -> None:
        self._answers = _BlockedAnswers()

    def take(self, keys: list[PacedKey], max_wait: float) -> float:
        self._answers.forget()
        with transaction.atomic():
            rows = self._locked_rows(keys)
            now = time.time()
            turn = max([now, *(row.next_call_at for row in rows.values())])
            if turn - now > max_wait:
                return turn - now  # too far off to book: the job goes back to the queue
            for key in keys:
                row = rows[key.name]
                row.next_call_at = turn + key.interval * _slowdown_now(row.slowdown, row.slowed_at, now)
                row.save(update_fields=["next_call_at"])
        return turn - now

    def slow_down(self, keys: list[PacedKey], retry_after: float | None) -> bool:
        self._answers.forget()
        with transaction.atomic():
            rows = self._locked_rows(keys)
            now = time.time()
            for key in keys:
                row = rows[key.name]
                pause = max(retry_after or 0.0, 0.0)
                if now >= row.calm_until:
                    row.slowdown = min(2 * _slowdown_now(row.slowdown, row.slowed_at, now), MAX_SLOWDOWN)
                    row.slowed_at = now
                    if retry_after is None:
                        pause = key.interval * row.slowdown
                    row.calm_until = now + pause
                row.next_call_at = max(row.next_call_at, now + pause)
                row.save()
        return True

    def blocked(self, keys: list[PacedKey], threshold: float) -> bool:
        known = self._answers.get(keys, threshold)
        if known is not None:
            return known
        waits = [state.wait_seconds for state in self.state(keys)]
        return self._answers.put(keys, threshold, max(waits) > threshold)

    def state(self, keys: list[PacedKey]) -> list[RateState]:
        rows = ProviderRateState.objects.in_bulk([key.name for key in keys])
        now = time.time()
        found = []
        for key in keys:
            row = rows.get(key.name) or ProviderRateState(key=key.name)
            found.append(
                RateState(
                    name=key.name,
                    wait_seconds=max(0.0, row.next_call_at - now),
                    slowdown=_slowdown_now(row.slowdown, row.slowed_at, now),
                )
            )
        return found

    def _locked_rows(self, keys: list[PacedKey]) -> dict[str, ProviderRateState]:
        names = sorted({key.name for key in keys})
        rows = self._select_for_update(names)
        if len(rows) < len(names):
            # A key's first call: its row is made here (or by a concurrent first call).
            ProviderRateState.objects.bulk_create(
                [ProviderRateState(key=name) for name in names if name not in rows], ignore_conflicts=True
            )
            rows = self._select_for_update(names)
        return rows

    @staticmethod
    def _select_for_update(names: list[str]) -> dict[str, ProviderRateState]:
        return {
            row.key: row for row in ProviderRateState.objects.select_for_update().filter(key__in=names).order_by("key")
        }
