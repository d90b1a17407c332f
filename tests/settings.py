"""Test environment: the project's one settings module, with the test defaults put in its environment.

The same environment is handed to the worker, beat and web processes the tests start, so every
process agrees on the database, the broker, the media folder and the (fast) timings.
"""

import os
import tempfile


def _redis_of_this_test_process(url: str) -> str:
    """The test Redis database of this pytest process. Under pytest-xdist each worker (gw0, gw1,
    …) has a database of its own, counted down from the one given, as pytest-django gives each a
    test database of its own: one worker's broker messages and rate counters are never another's."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker.removeprefix("gw") or 0)
    if not index:
        return url
    base, _, number = url.rpartition("/")
    return f"{base}/{(int(number or 0) - index) % 16}"


# The run's own folder for media, static and the beat schedule; conftest removes it at the end.
TEST_VAR_DIR = tempfile.mkdtemp(prefix="atelier-test-")
_TEST_REDIS_URL = _redis_of_this_test_process(os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
_TEST_DEFAULTS = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/atelier",
    "CELERY_BROKER_URL": _TEST_REDIS_URL,
    # Rate-limit counters live beside the broker, in the same test Redis database.
    "CACHE_URL": _TEST_REDIS_URL,
    "ATELIER_VAR_DIR": TEST_VAR_DIR,
    "LOCAL_PROVIDER_LATENCY_MS": "300",
    "JOB_LEASE_SECONDS": "3",
    "RESCUE_INTERVAL_SECONDS": "1",
    "JOB_REDISPATCH_AFTER_SECONDS": "3",
    "JOB_RETRY_BASE_SECONDS": "0.05",
    "JOB_RETRY_MAX_SECONDS": "0.5",
    "JOB_MAX_IMAGE_RETRIES": "8",
    "LOG_LEVEL": "WARNING",
    # Generous API limits and quotas: suites submit hundreds of jobs from one key (200 at once in
    # test_worker_credits, 50 queued jobs of one team in the chaos drills). The tests of the
    # limits lower them with the `settings` fixture.
    "RATE_LIMIT_SUBMIT": "100000/min",
    "RATE_LIMIT_ESTIMATE": "100000/min",
    "RATE_LIMIT_UPLOAD": "100000/min",
    "RATE_LIMIT_API": "100000/min",
    "RATE_LIMIT_WEBHOOK": "100000/min",
    "QUOTA_ACTIVE_JOBS": "1000",
    # Suites that run many jobs of one team at once; the fairness tests set a team's own cap.
    "TEAM_MAX_RUNNING_JOBS": "1000",
    # Every sign-up in the suite comes from one address; the rate-limit test sets its own limit.
    "RATE_LIMIT_SIGNUP": "10000/hour",
    # Webhook receivers of the tests listen on 127.0.0.1; retries and sweeps in seconds, not hours.
    "WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true",
    "WEBHOOK_RETRY_SCHEDULE": "0.5,1,1,2,2",
    "WEBHOOK_SWEEP_INTERVAL_SECONDS": "1",
    "WEBHOOK_REDISPATCH_AFTER_SECONDS": "3",
    "WEBHOOK_TIMEOUT_SECONDS": "3",
    "EVENTS_POLL_SECONDS": "0.5",
}
# A value given from outside wins; a value this module put in the environment is set again in each
# process that loads it. pytest-xdist's workers inherit the environment of the process that
# started them, where this module already ran: without this they would share its media folder
# and its Redis database.
_SET_HERE = "ATELIER_TEST_DEFAULTS_SET"
_ours = set(filter(None, os.environ.get(_SET_HERE, "").split(",")))
for _name, _value in _TEST_DEFAULTS.items():
    if _name in _ours or _name not in os.environ:
        os.environ[_name] = _value
        _ours.add(_name)
os.environ[_SET_HERE] = ",".join(sorted(_ours))
# prometheus_client's multiprocess files of every process the run starts (generation/metrics.py):
# a folder of the run's own, so it is empty when the first process starts, as the library asks;
# never one given from outside, which could hold an earlier run's counts.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(TEST_VAR_DIR, "prometheus")

from config.settings import *  # noqa: E402,F403

# Hashing passwords slowly only slows the tests.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
