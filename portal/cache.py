"""The Redis cache, tolerant: a value that no longer unpickles reads as a miss, and so does a Redis that does not
answer; neither is an error page."""

import logging
import pickle
import time
from collections.abc import Callable
from typing import Any

import redis
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache, RedisCacheClient, RedisSerializer

log = logging.getLogger(__name__)


class TolerantSerializer(RedisSerializer):
    """Cached values are pickles that name their class's module. After a deploy that moves or renames a class
    (or beside another version of the portal on the same Redis) an old entry cannot be loaded; treating it as
    absent lets the page recompute it, where Django's own serializer would answer 500 until the entry expires."""

    # Any, as the base class takes it: Redis hands back an int for counters and bytes for the rest.
    def loads(self, data: Any) -> Any:
        try:
            return super().loads(data)
        except (pickle.UnpicklingError, AttributeError, ImportError, EOFError, TypeError, ValueError) as exc:
            log.warning("a cached value could not be read (%s): treated as a miss", exc.__class__.__name__)
            return None


class ReusedClientRedisCacheClient(RedisCacheClient):
    """Django's client builds a new redis.Redis for every cache call, and with it a table of some 170 response
    callbacks: about half a millisecond of CPU per call, several calls per page. One client per connection pool
    does the same work (a redis.Redis is safe to share; the pool hands out the connections)."""

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)  # type: ignore[attr-defined]
        clients = self.__dict__.setdefault("_clients", {})
        client = clients.get(id(pool))
        if client is None:
            client = clients[id(pool)] = self._client(connection_pool=pool)  # type: ignore[attr-defined]
        return client


class TolerantRedisCache(RedisCache):
    """The shared cache, which the portal uses only to save work (shared tails, searches, rollups): while Redis does
    not answer, a read is a miss, a write is dropped, and `add` says "yours", so whoever asked computes the value
    itself — log pages then read Batch directly instead of answering 500. After a failure Redis is left alone for
    RETRY_SECONDS, so a page does not wait out a connection timeout per cache call."""

    RETRY_SECONDS = 5.0
    _down_until = 0.0  # monotonic time; per process, shared by every cache of the class

    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = ReusedClientRedisCacheClient

    def _tolerant(self, call: Callable[[], Any], fallback: Any) -> Any:
        if time.monotonic() < TolerantRedisCache._down_until:
            return fallback
        try:
            return call()
        except (redis.RedisError, OSError) as exc:
            TolerantRedisCache._down_until = time.monotonic() + self.RETRY_SECONDS
            log.warning("the cache did not answer (%s): working without it for %.0f s", exc.__class__.__name__,
                        self.RETRY_SECONDS)
            return fallback

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return self._tolerant(lambda: super(TolerantRedisCache, self).get(key, default, version), default)

    def get_many(self, keys: Any, version: int | None = None) -> dict[Any, Any]:
        return self._tolerant(lambda: super(TolerantRedisCache, self).get_many(keys, version), {})

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return self._tolerant(lambda: super(TolerantRedisCache, self).has_key(key, version), False)

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return self._tolerant(lambda: super(TolerantRedisCache, self).add(key, value, timeout, version), True)

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        self._tolerant(lambda: super(TolerantRedisCache, self).set(key, value, timeout, version), None)

    def set_many(self, data: dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT,
                 version: int | None = None) -> list[Any]:
        return self._tolerant(lambda: super(TolerantRedisCache, self).set_many(data, timeout, version), list(data))

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return self._tolerant(lambda: super(TolerantRedisCache, self).touch(key, timeout, version), False)

    def delete(self, key: Any, version: int | None = None) -> bool:
        return self._tolerant(lambda: super(TolerantRedisCache, self).delete(key, version), False)

    def delete_many(self, keys: Any, version: int | None = None) -> None:
        self._tolerant(lambda: super(TolerantRedisCache, self).delete_many(keys, version), None)
