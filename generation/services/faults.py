"""Who caused a fault, and what it costs the job (docs/architecture.md, "Faults").

- Our own infrastructure (database, storage, a hung step, a worker killed or restarted): the job
  pauses with backoff and resumes; only the outage budget (time without a new image) bounds it.
- The provider: transient errors are retried per image, permanent ones fail the job.
- The job itself, plausibly: an unexpected error in its own run, or its worker's death while it
  ran alone without delivering an image. Those are counted and JOB_POISON_CRASHES of them fail it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError

from generation.providers.errors import MAX_RETRY_AFTER_SECONDS
from generation.services.bounded import StepTimeout


class InfrastructureFault(Exception):
    """One of our own parts failed under a job: pause it, do not blame it."""

    def __init__(self, part: str, error: BaseException) -> None:
        super().__init__(f"{part}: {error}")
        self.part = part
        self.error = error


# Errors of a database connection or server (dropped connection, server restarting, timeout),
# as opposed to errors of the query itself (IntegrityError, ProgrammingError: bugs or races).
DATABASE_OUTAGE_ERRORS = (OperationalError, InterfaceError)


@contextmanager
def storage_part() -> Iterator[None]:
    """Any failure of a storage call (disk full, unwritable folder, S3 down, a hung write) is ours."""
    try:
        yield
    except InfrastructureFault:
        raise
    except (OSError, StepTimeout) as error:
        raise InfrastructureFault("storage", error) from error
    except Exception as error:  # noqa: BLE001 - boto and django-storages raise their own kinds
        if type(error).__module__.split(".")[0] in {"botocore", "boto3", "storages", "s3transfer"}:
            raise InfrastructureFault("storage", error) from error
        raise


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff, capped, with "equal jitter" (between half and all of the step) so
    that jobs hit by one fault do not all come back at the same moment."""

    base_seconds: float
    max_seconds: float

    @classmethod
    def for_pauses(cls) -> Backoff:
        """Before a paused (or suspect) job runs again."""
        return cls(base_seconds=settings.JOB_PAUSE_BASE_SECONDS, max_seconds=settings.JOB_PAUSE_MAX_SECONDS)

    @classmethod
    def for_provider_retries(cls) -> Backoff:
        """Before an image is asked for again after a transient provider error."""
        return cls(base_seconds=settings.JOB_RETRY_BASE_SECONDS, max_seconds=settings.JOB_RETRY_MAX_SECONDS)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """The wait after `attempt` (0-based) failures. A provider's Retry-After wins, even past
        `max_seconds` (asking sooner only draws another refusal), up to MAX_RETRY_AFTER_SECONDS."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), MAX_RETRY_AFTER_SECONDS)
        ceiling = min(self.max_seconds, self.base_seconds * (2 ** min(attempt, 20)))
        return random.uniform(ceiling / 2, ceiling)


def outage_budget_spent(outage_since: datetime | None, now: datetime) -> bool:
    """Has the job been held up by our infrastructure, without a new image, for longer than allowed?"""
    if outage_since is None:
        return False
    return now - outage_since > timedelta(seconds=settings.JOB_OUTAGE_BUDGET_SECONDS)


def outage_message(part: str) -> str:
    hours = settings.JOB_OUTAGE_BUDGET_SECONDS / 3600
    span = f"{hours:.1f} hours" if hours >= 1 else f"{settings.JOB_OUTAGE_BUDGET_SECONDS:.0f} seconds"
    return (
        f"Atelier's {part} was unavailable and the job could not make progress for over {span}. "
        "Nothing was charged for images it did not make and the ones it made are kept; retry it to make the rest."
    )


def rate_starved_message() -> str:
    hours = settings.JOB_OUTAGE_BUDGET_SECONDS / 3600
    span = f"{hours:.1f} hours" if hours >= 1 else f"{settings.JOB_OUTAGE_BUDGET_SECONDS:.0f} seconds"
    return (
        f"The provider's rate limit left the job no turn for over {span}. Nothing was charged for images "
        "it did not make and the ones it made are kept; retry it later to make the rest."
    )


def poison_message(crashes: int) -> str:
    return (
        f"This job stopped the worker running it {crashes} times in a row before it could deliver an image, "
        "even when it ran on its own, so Atelier stopped trying it to protect everyone else's jobs. "
        "Its inputs (for example a very large or unusual image) are the likely cause. "
        "Credits for the images it did not make were released."
    )
