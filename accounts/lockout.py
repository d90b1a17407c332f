"""Login lockout with django-axes: the hooks config/settings.py names (AXES_*).

Axes counts failed logins in its AccessAttempt table, separately per account (the lower-cased
email) and per client address, and refuses logins past LOGIN_FAILURE_LIMIT for
LOGIN_COOLOFF_MINUTES. Operators read and clear the counters in the admin (Axes's pages) or with
`manage.py axes_reset`, `axes_reset_username EMAIL`, `axes_reset_ip ADDRESS`.
"""

from __future__ import annotations

import ipaddress
import math
from datetime import timedelta
from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_cool_off, get_failure_limit, get_lockout_parameters
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from rest_framework.throttling import BaseThrottle

# How much of an IPv6 address is one client: the /64 a subscriber or host is usually given.
IPV6_CLIENT_PREFIX = 64
# AccessAttempt.username holds at most this many characters.
USERNAME_MAX_LENGTH = 255


class LockoutBackend(AxesStandaloneBackend):
    """Axes's lockout check, which must come first in AUTHENTICATION_BACKENDS.

    A call without a request (Django's test client `login()`, a shell) has no client to count
    failures for; every login form and the admin pass their request, so those are all checked.
    """

    def authenticate(  # type: ignore[override]
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def client_address(request: HttpRequest) -> str | None:
    """The client's address, read as DRF's throttles read it: REST_FRAMEWORK NUM_PROXIES (from
    TRUSTED_PROXY_COUNT) hops from the right of X-Forwarded-For, or REMOTE_ADDR without proxies.

    An IPv6 client is its /64 network, given as the network's address ("2001:db8:1:2::"): one
    subscriber or host usually holds a whole /64, and rotating addresses inside it must not escape
    the sign-up limit or the lockout. An IPv4 address is itself. Something that is not an address
    (a forged header when more proxies are trusted than there are) falls back to REMOTE_ADDR:
    axes stores the result in an address column, which a network address fits.
    """
    # get_ident reads only headers and META, which a Django request has as DRF's does.
    ident = BaseThrottle().get_ident(request) or ""  # type: ignore[arg-type]
    for candidate in (ident, request.META.get("REMOTE_ADDR") or ""):
        try:
            address = ipaddress.ip_address(candidate.strip())
        except ValueError:
            continue
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:  # ::ffff:192.0.2.1 is that IPv4 client
                return str(address.ipv4_mapped)
            return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False).network_address)
        return str(address)
    return None


def login_username(request: HttpRequest, credentials: dict[str, Any] | None = None) -> str | None:
    """The account a login is for: the email typed into the form's "username" field, lower-cased
    as accounts are stored, so "Alice@x" and "alice@x" count together."""
    source = credentials if credentials is not None else request.POST
    username = source.get("username")
    if not isinstance(username, str):
        return None
    return username.strip().lower()[:USERNAME_MAX_LENGTH] or None


def lockout_remaining(request: HttpRequest, credentials: dict[str, Any] | None) -> tuple[timedelta, bool]:
    """How long the lockout of this login still lasts, and whether it is the account's (else the
    address's).

    Axes sums the failures of the attempts (one row per account, address and browser, stamped with
    its latest failure) newer than the cool-off, per lockout parameter. Rows leave that window
    oldest first, so a counter unlocks when the row that brought it, counting from the newest, up
    to the limit leaves it.
    """
    cool_off = get_cool_off(request) or timedelta(0)
    limit = get_failure_limit(request, credentials)
    handler = AxesProxyHandler.get_implementation()
    now = timezone.now()
    remaining = timedelta(0)
    account_locked = False
    # One queryset of attempts per entry of AXES_LOCKOUT_PARAMETERS, in its order.
    parameters = get_lockout_parameters(request, credentials)
    for parameter, attempts in zip(parameters, handler.get_user_attempts(request, credentials), strict=True):
        failures = 0
        for attempt_time, count in attempts.order_by("-attempt_time").values_list(
            "attempt_time", "failures_since_start"
        ):
            failures += count
            if failures >= limit:
                remaining = max(remaining, attempt_time + cool_off - now)
                account_locked = account_locked or parameter == "username"
                break
    return (remaining if remaining > timedelta(0) else cool_off), account_locked


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict[str, Any] | None = None
) -> HttpResponse:
    """The page for a refused login: 429, what is locked and for how long, and Retry-After."""
    remaining, account_locked = lockout_remaining(request, credentials)
    seconds = max(1, math.ceil(remaining.total_seconds()))
    response = render(
        request,
        "registration/locked_out.html",
        {"minutes": math.ceil(seconds / 60), "account_locked": account_locked},
        status=429,
    )
    response["Retry-After"] = str(seconds)
    return response


def lockout_lift_for_account(user: Any) -> int:
    """Forget the failed logins against `user`'s account: they just proved they read its mail by
    setting a new password through the reset link. Axes keeps one row per account and address,
    so those failures no longer count against the addresses they came from either."""
    from axes.utils import reset

    return reset(username=user.email.lower())
