"""The rate limit on the account pages that send mail: sign-up, verification resends, password resets."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from accounts.lockout import client_address
from config.throttles import FailOpenRateThrottle, throttles_wait


class SignupRateThrottle(FailOpenRateThrottle):
    """RATE_LIMIT_SIGNUP per client address, shared by the pages that send mail: each sign-up
    may create an account and every one sends a mail, so a script from one address can neither
    mint accounts nor flood someone's inbox."""

    scope = "signup"

    def get_rate(self) -> str:
        # Read when the throttle is made (for each request), so a changed setting applies at once.
        return settings.RATE_LIMIT_SIGNUP

    def get_cache_key(self, request: Any, view: Any) -> str:
        # The same address the login lockout counts (TRUSTED_PROXY_COUNT).
        return self.cache_format % {"scope": self.scope, "ident": client_address(request)}


def signup_throttle_wait(request: Any) -> int | None:
    """None when the request may go on (and is counted); else the seconds to wait."""
    return throttles_wait(request, [SignupRateThrottle()])
