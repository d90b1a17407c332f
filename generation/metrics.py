"""Operators' metrics that only the processes doing the work observe, and the hooks that record them.

Time per image, provider errors, rate-limit waits, rescues and time to start are seen by worker
and rescuer processes, never by the web process that answers the scrape. prometheus_client's
multiprocess mode carries them across: each process writes its counters and histograms to files
of its own in PROMETHEUS_MULTIPROC_DIR, and the scrape (config/metrics_endpoint.py) sums the
files of every process on the machine, dead ones included, so a counter keeps what a finished
process counted. Only counters and histograms are used: they need no `mark_process_dead`, which
only live gauges do. What the database knows (queue depth, running and finished jobs) is read at
scrape time instead (generation/metrics_collector.py).

Every metric has labels, so a process that observes nothing (a web process, a shell) writes no
file. A hook never fails the work it measures: a metric that cannot be written is logged.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from enum import StrEnum
from typing import ParamSpec

from django.conf import settings

# prometheus_client chooses between in-memory and multiprocess values when it is first imported,
# from the environment; reading the settings first puts PROMETHEUS_MULTIPROC_DIR there.
_MULTIPROC_DIR = settings.PROMETHEUS_MULTIPROC_DIR

from prometheus_client import Counter, Histogram, values  # noqa: E402

P = ParamSpec("P")
logger = logging.getLogger(__name__)

if not getattr(values.ValueClass, "_multiprocess", False):
    # Something imported prometheus_client before the settings were loaded: this process keeps
    # its figures in memory, where no scrape sees them. Loud, but not worth stopping jobs for.
    logger.error(
        "prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR (%s) was set: this process's "
        "metrics will not be scraped; load the Django settings before importing it.",
        _MULTIPROC_DIR,
    )

IMAGE_SECONDS = Histogram(
    "atelier_image_seconds",
    "Time to make one image or clip: the provider call with its retries, storing the file and recording it.",
    ["provider", "model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300, 600),
)
PROVIDER_ERRORS = Counter(
    "atelier_provider_errors",
    "Errors answered by providers (or calls that timed out), by the job's stable error code; "
    "transient ones are retried, so one image may count several.",
    ["provider", "code"],
)
RATE_LIMIT_WAIT_SECONDS = Histogram(
    "atelier_rate_limit_wait_seconds",
    "Waits of provider calls for their turn under the provider's request rate (only calls that waited).",
    ["provider"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RESCUES = Counter(
    "atelier_rescues",
    "What the rescuer did: jobs requeued, failed or canceled after a lost lease or a late cancel, "
    "and wake-ups published for jobs whose wake-up was lost (redispatched).",
    ["kind"],
)
TIME_TO_START = Histogram(
    "atelier_job_time_to_start_seconds",
    "From a job's submit to its first start on a worker (a job started again after a pause or a "
    "rescue is not counted twice).",
    ["provider"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600),
)


class RescueKind(StrEnum):
    REQUEUED = "requeued"
    FAILED = "failed"
    CANCELED = "canceled"
    REDISPATCHED = "redispatched"


def _never_fails(hook: Callable[P, None]) -> Callable[P, None]:
    """A metric is worth less than the job it measures: a write that fails (a full disk under
    PROMETHEUS_MULTIPROC_DIR) is logged, not raised into the pipeline."""

    @functools.wraps(hook)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            hook(*args, **kwargs)
        except Exception:  # noqa: BLE001 - see the docstring
            logger.warning("metric %s not recorded", hook.__name__, exc_info=True)

    return guarded


@_never_fails
def observe_image_made(provider: str, seconds: float, *, model: str = "") -> None:
    """One image (or clip) recorded, `seconds` after its worker began making it."""
    IMAGE_SECONDS.labels(provider=provider, model=model).observe(max(0.0, seconds))


@_never_fails
def count_provider_error(provider: str, code: str) -> None:
    PROVIDER_ERRORS.labels(provider=provider, code=code).inc()


@_never_fails
def observe_rate_limit_wait(provider: str, seconds: float) -> None:
    """A provider call waited `seconds` for its turn under a rate limit; a call that did not
    wait is not counted, so the histogram's count is the number of waits."""
    if seconds > 0:
        RATE_LIMIT_WAIT_SECONDS.labels(provider=provider).observe(seconds)


@_never_fails
def count_rescue(kind: RescueKind, n: int) -> None:
    """`n` may be 0: the series then exists (at 0) from the rescuer's first pass."""
    RESCUES.labels(kind=kind.value).inc(max(0, n))


@_never_fails
def observe_job_started(seconds: float, *, provider: str = "") -> None:
    """A job started for the first time, `seconds` after it was submitted."""
    TIME_TO_START.labels(provider=provider).observe(max(0.0, seconds))
