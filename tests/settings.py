"""Test environment: the project's one settings module, with the test defaults put in its environment.

The same environment is handed to the worker, beat and web processes the tests start, so every
process agrees on the database, the broker, the media folder and the (fast) timings.
"""

import os
import tempfile

# The run's own folder for media, static and the beat schedule; conftest removes it at the end.
TEST_VAR_DIR = tempfile.mkdtemp(prefix="atelier-test-")
_TEST_DEFAULTS = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/atelier",
    "CELERY_BROKER_URL": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
    # Rate-limit counters live beside the broker, in the same test Redis database.
    "CACHE_URL": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
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
for _name, _value in _TEST_DEFAULTS.items():
    os.environ.setdefault(_name, _value)
# prometheus_client's multiprocess files of every process the run starts (generation/metrics.py):
# a folder of the run's own, so it is empty when the first process starts, as the library asks;
# never one given from outside, which could hold an earlier run's counts.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(TEST_VAR_DIR, "prometheus")

from config.settings import *  # noqa: E402,F403

# Hashing passwords slowly only slows the tests.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
