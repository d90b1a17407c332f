"""The Redis cache backend (CACHE_URL), with one Redis client per connection pool.

Django's RedisCacheClient builds a new `redis.Redis` for every operation, and redis-py fills
about 170 response callbacks into each one it builds: every API request reads and writes two
rate-limit counters, so that was a third of a millisecond per request spent making clients.
A client is only a facade over its pool (redis-py's clients are thread-safe; Django also keeps
a cache backend per thread), so one per pool serves every operation.
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends import redis as django_redis


class ReusedClientRedisCacheClient(django_redis.RedisCacheClient):
    _client: Any  # redis.Redis, set by Django's __init__ (the stubs do not declare it)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)  # type: ignore[attr-defined]  # kept for good in self._pools
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class RedisCache(django_redis.RedisCache):
    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = ReusedClientRedisCacheClient
