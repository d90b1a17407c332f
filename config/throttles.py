"""Rate limits on what costs money or storage, kept in the shared cache (settings.CACHES).

DRF's throttles count requests per identity and scope in the cache. When the cache cannot be
reached (Redis down or hung; its client gives up within half a second), a limit lets the
request through and logs it: credits and quotas, which live in the database, still bound
what anyone can spend or store, and an outage of the cache must not stop paying customers.
"""

from __future__ import annotations

import logging
from typing import Any

from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)


class FailOpenRateThrottle(SimpleRateThrottle):
    """A SimpleRateThrottle that allows the request when its cache fails."""

    def allow_request(self, request: Any, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception as error:  # noqa: BLE001 - any cache failure: the cache client's errors vary
            logger.warning("rate limit %s not checked, cache unavailable: %s", self.scope, error)
            return True
