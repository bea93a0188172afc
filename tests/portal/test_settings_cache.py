"""The cache setting: Redis (shared by every web process) whenever it is configured, a per-process memory cache only
in DEBUG when no Redis answers; and a running task's tail read by one process serves viewers in another."""

import json
import subprocess
import sys
import uuid

import pytest
import redis
from django.conf import settings

from portal.logs import tail
from portal.settings import cache_settings
from tests.localbatch.helpers import wait_for
from tests.logfiles import KEY_VARIABLE, CountingGateway, add_task, file_size

# Fixtures, imported so pytest finds them here.

REDIS_CACHE = "portal.cache.TolerantRedisCache"
DEAD_REDIS = "redis://127.0.0.1:9/0"          # the discard port: nothing answers there


def test_redis_is_chosen_whenever_it_answers_and_whenever_debug_is_off():
    for debug in (True, False):
        caches, reason = cache_settings(settings.REDIS_URL, debug=debug)
        assert caches["default"]["BACKEND"] == REDIS_CACHE and caches["default"]["LOCATION"] == settings.REDIS_URL
    # Production never falls back: processes with private caches would each read every live tail themselves.
    caches, reason = cache_settings(DEAD_REDIS, debug=False)
    assert caches["default"]["BACKEND"] == REDIS_CACHE and "without a fallback" in reason


def test_only_debug_falls_back_to_a_memory_cache_and_says_why():
    caches, reason = cache_settings(DEAD_REDIS, debug=True)
    assert caches["default"]["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"
    assert "no Redis answers at redis://127.0.0.1:9/0" in reason and "each web process" in reason


def test_the_settings_of_this_run_use_redis_since_it_answers_here():
    redis.Redis.from_url(settings.REDIS_URL).ping()      # fails the test where no Redis runs
    assert settings.CACHES["default"]["BACKEND"] == REDIS_CACHE


CHILD = """
import json, os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
from django.conf import settings
settings.CACHES = json.loads(sys.argv[1])
import django
django.setup()
from portal.logs import tail
from batchsync.gateway import BatchGateway
from portal.models import BatchAccount
tail.SHARED_TAIL_SECONDS = 600
account = BatchAccount(pk=int(sys.argv[2]), name="logs")
with BatchGateway(sys.argv[3], sys.argv[4], os.environ[sys.argv[5]]) as gateway:
    window = tail.shared_tail(account, "logs-job", "shared", "stdout.txt", gateway=gateway)
print(json.dumps({"text": window.text, "end": window.end}))
"""


@pytest.mark.django_db
def test_a_tail_read_by_one_web_process_serves_the_viewers_of_another(
        account, gateway, localbatch, batch_client, batch_job, settings, monkeypatch, tmp_path):
    prefix = f"test-{uuid.uuid4().hex}"
    caches = {"default": {"BACKEND": REDIS_CACHE, "LOCATION": settings.REDIS_URL, "KEY_PREFIX": prefix}}
    settings.CACHES = caches
    # Long enough that the child's read is still fresh whenever this process asks: no timing in the test.
    monkeypatch.setattr(tail, "SHARED_TAIL_SECONDS", 600)
    go = tmp_path / "go"
    add_task(batch_client, "shared", f"seq 1 300; while [ ! -e {go} ]; do sleep 0.05; done")
    wait_for(lambda: file_size(gateway, "shared") == 1092, message="300 lines")
    try:
        child = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(caches), str(account.pk), localbatch.endpoint,
             localbatch.account_name, KEY_VARIABLE],
            capture_output=True, text=True, timeout=60, cwd=settings.BASE_DIR, check=False)
        assert child.returncode == 0, child.stderr[-2000:]
        theirs = json.loads(child.stdout.strip().splitlines()[-1])
        counting = CountingGateway(gateway)

        ours = tail.shared_tail(account, "logs-job", "shared", "stdout.txt", gateway=counting)

        assert counting.calls == 0            # answered from the other process's read, through Redis
        assert (ours.text, ours.end) == (theirs["text"], theirs["end"]) and ours.lines[-1] == "300"
    finally:
        go.touch()
        client = redis.Redis.from_url(settings.REDIS_URL)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
