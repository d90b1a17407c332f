"""Wake-ups of a job's event streams across processes: Redis pub/sub where there is a Redis
(CACHE_URL, else a redis broker), nothing on the embedded default, where streams read the
events table every EVENTS_POLL_SECONDS instead.

A message only says "job X has something new" (and, for previews, what): the events table is
the truth, so a message lost while Redis is away costs a stream at most one poll interval.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "atelier:job-events:"


def channel_for(job_id: str) -> str:
    return f"{CHANNEL_PREFIX}{job_id}"


def redis_url() -> str:
    """The Redis that carries the wake-ups, or "" when there is none."""
    for url in (settings.CACHE_URL, settings.CELERY_BROKER_URL):
        if url.startswith(("redis://", "rediss://")):
            return url
    return ""


@lru_cache(maxsize=1)
def _client(url: str) -> redis.Redis:
    # Bounded: a Redis that is down or hangs costs a publisher half a second, never more.
    return redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)


def publish(job_id: str, message: dict) -> bool:
    """Tell the job's streams (in any process) that something happened; False if it could not."""
    url = redis_url()
    if not url:
        return False
    try:
        _client(url).publish(channel_for(job_id), json.dumps(message))
    except (redis.RedisError, OSError) as error:
        logger.warning("could not announce an event of job %s: %s", job_id, error)
        return False
    return True
