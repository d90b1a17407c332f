"""The rate limit on the account pages that send mail: sign-up, verification resends, password resets."""

from __future__ import annotations

from typing import Any

from accounts.lockout import client_address
from config.throttles import RateScope, ScopedRateThrottle, throttles_wait


class PerAddressRateThrottle(ScopedRateThrottle):
    """RATE_LIMIT_<SCOPE> per client address: the address the login lockout counts
    (TRUSTED_PROXY_COUNT; an IPv6 client by its /64), for pages anyone may use signed out."""

    def identity(self, request: Any) -> str | None:
        # No usable address at all still shares one counter rather than escaping the limit.
        return client_address(request) or "unknown"


def signup_throttle_wait(request: Any) -> int | None:
    """RATE_LIMIT_SIGNUP per client address, shared by the pages that send mail: each sign-up may
    create an account and every one sends a mail, so a script from one address can neither mint
    accounts nor flood someone's inbox. None when the request may go on (and is counted); else
    the seconds to wait."""
    return throttles_wait(request, [PerAddressRateThrottle(RateScope.SIGNUP)])
