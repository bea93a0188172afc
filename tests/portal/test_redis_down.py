"""Redis stops while a task's log is open: every log page still answers, and the live tail reads Batch directly.

A Redis server of this test's own (the machine's `redis-server`, on a free port) is the portal's cache, so it can
be stopped without touching the Redis other tests and the broker use."""

import shutil
import subprocess
import time

import pytest
import redis
from django.core.cache import cache
from django.urls import reverse

from portal.cache import TolerantRedisCache
from tests.conftest import free_port
from tests.localbatch.helpers import wait_for
from tests.logfiles import add_task, file_size
from tests.portal.test_views_logs import VIEWS, body, task_row

pytestmark = pytest.mark.django_db


@pytest.fixture
def own_redis(tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    wait_for(lambda: _answers(client), message="the test's redis-server answers")
    yield process, port
    process.kill()
    process.wait()


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def redis_cache(own_redis, settings):
    process, port = own_redis
    settings.CACHES = {"default": {"BACKEND": "portal.cache.TolerantRedisCache",
                                   "LOCATION": f"redis://127.0.0.1:{port}/0", "KEY_PREFIX": "down-test",
                                   "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 1}}}
    TolerantRedisCache._down_until = 0.0
    yield process
    TolerantRedisCache._down_until = 0.0


def test_cache_calls_share_one_redis_client(redis_cache):
    """Django's client builds a redis.Redis per call; ours keeps one per connection pool (portal/cache.py)."""
    clients = {id(cache._cache.get_client(write=True)) for _ in range(3)}
    cache.set("k", "v")
    assert cache.get("k") == "v"
    clients |= {id(cache._cache.get_client(write=True))}
    assert len(clients) == 1


def test_a_cache_without_redis_misses_drops_and_hands_the_work_back(redis_cache):
    cache.set("k", "v")
    assert cache.get("k") == "v"
    redis_cache.kill()
    redis_cache.wait()
    assert cache.get("k", "fallback") == "fallback"
    assert cache.add("lock", 1) is True    # the caller computes the value itself
    cache.set("k", "w")                    # dropped, not raised
    assert cache.get_many(["k"]) == {}
    started = time.monotonic()
    for _ in range(50):                    # left alone after the first failure: no connection attempt per call
        cache.get("k")
    assert cache.delete("k") is False
    # Not a timing test: 50 calls that each tried to connect could not finish in under one connect timeout each.
    assert time.monotonic() - started < 50 * 0.5


def test_stopping_redis_while_a_log_is_open_breaks_no_page(redis_cache, signed_in, account, gateway, batch_client,
                                                           batch_job, tmp_path):
    go = tmp_path / "go"
    add_task(batch_client, "redis-down", f"echo one; while [ ! -e {go} ]; do sleep 0.05; done; echo two")
    wait_for(lambda: file_size(gateway, "redis-down") == 4, message="the first line")
    task = task_row(account, "redis-down", state="running")
    tail_url = reverse("task_output_tail", args=[task.pk])
    assert ">one<" in body(signed_in.get(reverse("task_output", args=[task.pk])))

    redis_cache.kill()
    redis_cache.wait()
    go.touch()
    wait_for(lambda: file_size(gateway, "redis-down") == 8, message="the second line")
    # The live tail reads Batch itself now: the new line arrives.
    assert ">two<" in body(signed_in.get(tail_url, {"path": "stdout.txt", "after": 4, "line": 2}))
    for name in VIEWS:
        response = signed_in.get(reverse(name, args=[task.pk]), {"path": "stdout.txt", "q": "two", "after": 0})
        assert response.status_code == 200, (name, response.status_code)
    for name in ("dashboard", "job_list", "failure_triage"):
        assert signed_in.get(reverse(name)).status_code == 200, name
