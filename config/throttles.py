"""Rate limits on what costs money or storage, kept in the shared cache (settings.CACHES).

DRF's throttles count requests per identity and scope in the cache. When the cache cannot be
reached (Redis down or hung; its client gives up within half a second), a limit lets the
request through and logs it: credits and quotas, which live in the database, still bound
what anyone can spend or store, and an outage of the cache must not stop paying customers.
"""

from __future__ import annotations

import logging
import math
from enum import StrEnum
from typing import Any

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)


class FailOpenRateThrottle(SimpleRateThrottle):
    """DRF's sliding window (at most `num_requests` in any `duration` seconds) that allows the
    request when its cache fails, and keeps its history per second: one (newest time, count)
    pair for each second with requests in the window, newest first.

    DRF keeps one time per request, read and written whole on every request, so what a request
    cost grew with the rate allowed: a key allowed 100,000 requests a minute carried up to
    100,000 times to and from the cache each time. Per second, a minute's window is at most 60
    pairs. A second's requests leave the window with its newest one: never looser than DRF's
    window, at most a second stricter.
    """

    # Not DRF's keys: their histories (a time per request) read differently.
    cache_format = "throttle_s_%(scope)s_%(ident)s"
    num_requests: int | None  # set with the rate (SimpleRateThrottle.parse_rate)
    duration: int | None

    def allow_request(self, request: Any, view: Any) -> bool:
        try:
            return self._allow_request(request, view)
        except Exception as error:  # noqa: BLE001 - any cache failure: the cache client's errors vary
            logger.warning("rate limit %s not checked, cache unavailable: %s", self.scope, error)
            return True

    def _allow_request(self, request: Any, view: Any) -> bool:
        limit, window = self.num_requests, self.duration
        if self.rate is None or limit is None or window is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        self.history = [(newest, count) for newest, count in self.cache.get(self.key, []) if newest > self.now - window]
        if sum(count for _, count in self.history) >= limit:
            return self.throttle_failure()
        if self.history and int(self.history[0][0]) == int(self.now):
            self.history[0] = (self.now, self.history[0][1] + 1)
        else:
            self.history.insert(0, (self.now, 1))
        self.cache.set(self.key, self.history, window)
        return True

    def wait(self) -> float:
        """Seconds until a request is let in again: until the second whose leaving brings the
        window under its limit leaves it (DRF's own estimate spreads the remaining time over the
        requests still allowed, and gives nothing when a rate was lowered). At least a second,
        so Retry-After is set."""
        limit, window = self.num_requests, self.duration
        if limit is None or window is None:
            return 1.0
        in_window = sum(count for _, count in self.history)
        for newest, count in reversed(self.history):  # the oldest second first
            in_window -= count
            if in_window < limit:
                return max(newest + window - self.now, 1.0)
        return 1.0


class RateScope(StrEnum):
    """What an API request spends; each scope has its own rate, `RATE_LIMIT_<SCOPE>` in settings."""

    SUBMIT = "submit"  # new jobs and retries: both hold credits
    ESTIMATE = "estimate"
    UPLOAD = "upload"
    WEBHOOK = "webhook"  # endpoints added or changed (a DNS lookup each) and "send again" (a POST out)
    API = "api"  # every other request
    SIGNUP = "signup"  # sign-ups, new verification links, password resets: each sends a mail


def view_rate_scope(request: Any, view: Any) -> RateScope:
    """The scope an API view gives the request's method (`throttle_scopes = {"POST": RateScope.SUBMIT}`),
    else RateScope.API: one view can answer a read and a spend (GET and POST /api/v1/jobs)."""
    scopes = getattr(view, "throttle_scopes", None) or {}
    return RateScope(scopes.get(request.method, RateScope.API))


class ScopedRateThrottle(FailOpenRateThrottle):
    """A rate per scope, read from settings on each request (so a changed setting, or a test's,
    applies at once: SimpleRateThrottle's THROTTLE_RATES is fixed when DRF is imported).

    API views declare their scopes (view_rate_scope); a Django view passes its scope in. A
    subclass says whose requests are counted together (`identity`).
    """

    def __init__(self, scope: RateScope | None = None) -> None:
        # SimpleRateThrottle reads its rate here; ours depends on the view and method, known
        # only in allow_request.
        self.fixed_scope = scope

    def identity(self, request: Any) -> str | None:
        raise NotImplementedError

    def rate_factor(self) -> int:
        return 1

    def allow_request(self, request: Any, view: Any) -> bool:
        self.rate_scope = self.fixed_scope or view_rate_scope(request, view)
        self.scope = self.rate_scope.value  # names the counter: throttle_<scope>_<ident>
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_rate(self) -> str:
        return str(getattr(settings, f"RATE_LIMIT_{self.rate_scope.name}"))

    def parse_rate(self, rate: str | None) -> tuple[int | None, int | None]:
        requests, duration = super().parse_rate(rate)
        return (requests * self.rate_factor() if requests is not None else None), duration

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        identity = self.identity(request)
        if identity is None:
            return None  # anonymous: the API already answered 401
        return self.cache_format % {"scope": self.scope, "ident": identity}


def _signed_in_user_id(request: Any) -> Any:
    user = getattr(request, "user", None)
    return user.pk if user is not None and user.is_authenticated else None


class PerKeyRateThrottle(ScopedRateThrottle):
    """RATE_LIMIT_<SCOPE> per API key (`key:<ApiKey.id>`), or per person for a browser session
    (`user:<id>`)."""

    def identity(self, request: Any) -> str | None:
        # Only ApiKeyAuthentication sets request.auth (to the key); a session leaves it None.
        key_id = getattr(getattr(request, "auth", None), "pk", None)
        if key_id is not None:
            return f"key:{key_id}"
        user_id = _signed_in_user_id(request)
        return f"user:{user_id}" if user_id is not None else None


class PerUserRateThrottle(ScopedRateThrottle):
    """RATE_LIMIT_USER_FACTOR times RATE_LIMIT_<SCOPE> per person, across all their keys and
    sessions: making more keys does not multiply what one person may send."""

    cache_format = "throttle_s_%(scope)s_all_%(ident)s"

    def identity(self, request: Any) -> str | None:
        user_id = _signed_in_user_id(request)
        return f"user:{user_id}" if user_id is not None else None

    def rate_factor(self) -> int:
        return int(settings.RATE_LIMIT_USER_FACTOR)


def throttles_wait(request: Any, throttles: list[SimpleRateThrottle]) -> int | None:
    """For a Django view: None when the request is within every one of `throttles` (and it is
    counted by each); else the whole seconds to wait, at least one."""
    waits = [throttle.wait() or 1.0 for throttle in throttles if not throttle.allow_request(request, None)]  # type: ignore[arg-type]
    return max(1, math.ceil(max(waits))) if waits else None


def rate_limit_wait(request: Any, scope: RateScope) -> int | None:
    """The studio's Generate and Retry: `scope`'s limits per key or session and per person."""
    return throttles_wait(request, [PerKeyRateThrottle(scope), PerUserRateThrottle(scope)])
