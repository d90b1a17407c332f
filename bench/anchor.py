"""The anchor of the overhead figure: a bare Celery task on the same broker as Atelier's jobs.

A plain Celery app (no Django) with Atelier's delivery settings (config/settings.py: late acks,
prefetch 1, JSON, no results, the same Redis transport options), run by a plain worker with the
same pool as the Procfile's job worker:

    ANCHOR_BROKER_URL=redis://127.0.0.1:6379/14 .venv/bin/celery -A bench.anchor worker -Q anchor \
        --pool threads --concurrency 16 --loglevel INFO --hostname anchor@%h

Its one task does the least a task can do and still be counted: one INCR of a Redis counter, by
which the benchmark knows when all its tasks have run.
"""

from __future__ import annotations

import logging.config
import os

import redis
from celery import Celery
from celery.signals import setup_logging

BROKER_URL = os.environ.get("ANCHOR_BROKER_URL", "redis://127.0.0.1:6379/14")
QUEUE = "anchor"
COUNTER_KEY = "bench:anchor:done"

app = Celery("anchor", broker=BROKER_URL)
app.conf.update(
    task_ignore_result=True,
    result_backend=None,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": 3600, "socket_connect_timeout": 3, "socket_timeout": 5},
    task_default_queue=QUEUE,
    worker_hijack_root_logger=False,
    timezone="UTC",
)


@setup_logging.connect
def same_logging_as_atelier(**_: object) -> None:
    """The worker logs as Atelier's processes do (config/settings.py: LOGGING, LOG_LEVEL INFO),
    so both workers pay the same for Celery's per-task log lines."""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
            "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
            "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
        }
    )


_counter = redis.Redis.from_url(BROKER_URL)


@app.task(name="bench.anchor.trivial", ignore_result=True)
def trivial() -> None:
    _counter.incr(COUNTER_KEY)
