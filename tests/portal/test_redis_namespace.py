"""Everything the portal keeps in Redis carries REDIS_KEY_PREFIX, so two installations (or a test run beside
`make dev`) sharing one Redis never read each other's queues, locks or cached tails."""

import pickle
import sys
import types
import uuid

from django.conf import settings
from django.core.cache import cache

from batchsync.celery import app


def test_this_test_run_has_a_namespace_of_its_own():
    assert settings.REDIS_KEY_PREFIX.startswith("test-")


def test_cached_values_live_under_the_prefix(real_redis):
    key = f"namespace-{uuid.uuid4().hex}"
    cache.set(key, "value", 60)
    try:
        assert real_redis.keys(f"{settings.REDIS_KEY_PREFIX}portal:*:{key}")
        assert not real_redis.keys(f"portal:*:{key}"), "a key outside the namespace"
    finally:
        cache.delete(key)


def test_queued_messages_live_under_the_prefix(real_redis):
    queue = f"namespace-{uuid.uuid4().hex}"
    with app.connection_for_write() as connection:
        simple = connection.SimpleQueue(queue)
        try:
            simple.put({"hello": "world"})
            assert real_redis.exists(f"{settings.REDIS_KEY_PREFIX}{queue}")
            assert not real_redis.exists(queue), "a queue outside the namespace"
            assert simple.get(timeout=5).payload == {"hello": "world"}
        finally:
            simple.clear()
            simple.close()


class Moved:
    """Stands for a class a deploy has since moved: pickled under a module name that does not exist."""


Moved.__module__ = "portal.moved_away"


def test_a_cached_value_whose_class_moved_reads_as_a_miss(real_redis):
    key = f"moved-{uuid.uuid4().hex}"
    sys.modules["portal.moved_away"] = types.ModuleType("portal.moved_away")
    sys.modules["portal.moved_away"].Moved = Moved  # type: ignore[attr-defined]
    try:
        stale = pickle.dumps(Moved())
    finally:
        del sys.modules["portal.moved_away"]
    real_redis.set(cache.make_key(key), stale, ex=60)
    try:
        assert cache.get(key) is None, "an entry that no longer loads is a miss"
        cache.set(key, {"fresh": True}, 60)
        assert cache.get(key) == {"fresh": True}
    finally:
        cache.delete(key)
