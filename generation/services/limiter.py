"""Per-provider rate limits, shared by every worker (see docs/architecture.md, "Fair and bounded").

Two limits per provider (and optionally per model), from PROVIDER_LIMITS:
- concurrency: how many of its jobs run at once. The fair scheduler counts running jobs in the
  database at claim time and skips a saturated provider's jobs, so a job never holds a worker
  slot waiting for a provider that another provider's job could use;
- requests per minute: a token bucket the worker takes from before every call.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class ProviderLimit:
    requests_per_minute: float | None = None
    concurrency: int | None = None


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


def rate_blocked(provider: str, model: str) -> bool:
    """Whether a call of `model` at `provider` would have to wait for its rate now."""
    return False
