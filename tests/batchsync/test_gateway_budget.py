"""The per-account request budget shared through Redis (batchsync.gateway.budget.SharedBudget): separate processes
take from one bucket, a Retry-After answered to one pauses the others (through localbatch and the real SDK), and a
Redis that does not answer leaves each process its own budget instead of failing the sync."""

import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from batchsync.accounts import gateway_for, request_budget
from batchsync.gateway import BatchGateway, SharedBudget, budget_for
from batchsync.gateway import budget as budget_module
from localbatch.server import Faults
from tests.batchsync.test_sync import account  # noqa: F401 - fixture
from tests.localbatch.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
DEAD_REDIS = "redis://127.0.0.1:1/0"   # nothing listens on port 1: connections are refused at once

# A process of its own: takes tokens from the shared budget of an account as fast as it is given them, from a
# start time given by the test (so the processes run side by side), for `duration` seconds; prints when each take
# began and ended.
TAKER = """
import json, sys, time
from batchsync.gateway import budget_for
redis_url, prefix, account_url, rate, start, duration = sys.argv[1:]
budget = budget_for(account_url, float(rate), redis_url=redis_url, key_prefix=prefix)
time.sleep(max(0.0, float(start) - time.time()))
takes = []
while time.time() < float(start) + float(duration):
    before = time.time()
    budget.take()
    takes.append((before, time.time()))
print(json.dumps(takes))
"""

# A process of its own: a budgeted gateway to the account lists its jobs; prints the pause it found on arriving and
# how long its request waited.
LISTER = """
import json, os, sys
from batchsync.gateway import BatchGateway, budget_for
redis_url, prefix, account_url, account_name = sys.argv[1:]
budget = budget_for(account_url, 400, redis_url=redis_url, key_prefix=prefix)
paused_for = budget.paused_for()
with BatchGateway(account_url, account_name, os.environ["LISTER_KEY"], budget=budget) as gateway:
    gateway.list_jobs()
print(json.dumps({"paused_for": paused_for}))
"""


def run_python(code: str, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def output_of(process: subprocess.Popen) -> object:
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, f"the child process failed (exit {process.returncode})"
    return json.loads(out)


@pytest.fixture
def account_url(real_redis):
    """An account URL of this test's own, and its keys removed after."""
    url = f"https://budget-{uuid.uuid4().hex[:8]}.westeurope.batch.azure.com"
    yield url
    keys = real_redis.keys(f"{settings.REDIS_KEY_PREFIX}{budget_module.KEY_PREFIX}{url}:*")
    if keys:
        real_redis.delete(*keys)


def test_two_processes_take_no_more_from_an_accounts_budget_together_than_it_allows(account_url):
    rate, duration = 20, 1.5
    start = time.time() + 2.0   # both children are up by then, even on a loaded machine
    children = [run_python(TAKER, settings.REDIS_URL, settings.REDIS_KEY_PREFIX, account_url, str(rate), str(start),
                           str(duration)) for _ in range(2)]
    takes = [output_of(child) for child in children]

    assert all(takes), "both processes were given tokens"
    every = [take for child in takes for take in child]
    # From the first take's start to the last take's end the bucket gave at most its fill (`rate`) plus what it
    # refills meanwhile. Each process alone would take that much: two budgets of their own would take it twice.
    span = max(end for _, end in every) - min(began for began, _ in every)
    assert len(every) <= rate + rate * span + 1, (len(every), span)


@pytest.mark.django_db
def test_a_retry_after_answered_to_one_process_pauses_the_requests_of_another(account, localbatch, real_redis,  # noqa: F811
                                                                              settings):
    settings.BATCH_REQUESTS_PER_SECOND = 400
    localbatch.app.faults = Faults(rate=1.0, status=429, retry_after=2, path_pattern=r"^/pools$", count=1)
    pause_key = f"{settings.REDIS_KEY_PREFIX}{budget_module.KEY_PREFIX}{account.account_url.rstrip('/').lower()}:pause"
    real_redis.delete(pause_key)

    with gateway_for(account, budgeted=True) as gateway:
        assert isinstance(gateway.budget, SharedBudget)
        # This process is told to wait (the SDK waits out the Retry-After itself, then retries).
        here = threading.Thread(target=gateway.list_pools)
        here.start()
        wait_for(lambda: real_redis.pttl(pause_key) > 0, message="the pause to reach Redis")
        # Meanwhile another process sends a request to the same account.
        there = run_python(LISTER, settings.REDIS_URL, settings.REDIS_KEY_PREFIX, account.account_url,
                           account.account_name, env={"LISTER_KEY": localbatch.account_key})
        report = output_of(there)
        here.join(timeout=30)

    served = list(localbatch.app.served)
    throttled = next(s for s in served if s.status == 429)
    listed = [s for s in served if s.path == "/jobs" and s.method == "GET"]
    assert report["paused_for"] > 0, "the other process found the account paused"
    assert listed and listed[0].status == 200
    # localbatch logs the 429 before answering it, so the pause began after `throttled.at`.
    assert listed[0].at >= throttled.at + 2, "the other process's request waited out the Retry-After"
    assert request_budget(account).pauses >= 1


def test_without_redis_each_process_keeps_its_own_budget_and_says_so_once(localbatch, caplog):
    budget = budget_for(localbatch.endpoint + f"/{uuid.uuid4().hex[:8]}", 5, redis_url=DEAD_REDIS,
                        key_prefix=settings.REDIS_KEY_PREFIX)
    caplog.set_level(logging.WARNING, logger=budget_module.__name__)

    with BatchGateway(localbatch.endpoint, localbatch.account_name, localbatch.account_key, budget=budget) as gateway:
        for _ in range(3):
            gateway.list_pools()
    for _ in range(4):
        budget.take()

    assert budget.requests == 7, "every request was let through, by this process's own bucket"
    warnings = [r for r in caplog.records if "Redis does not answer" in r.getMessage()]
    assert len(warnings) == 1, "said once, not per request"
    budget.pause(0.5)
    assert budget.paused_for() > 0, "a Retry-After still pauses this process"


def test_the_budget_is_shared_again_once_redis_answers(account_url, real_redis, monkeypatch):
    budget = budget_for(account_url, 400, redis_url=settings.REDIS_URL, key_prefix=settings.REDIS_KEY_PREFIX)
    assert isinstance(budget, SharedBudget)
    monkeypatch.setattr(budget_module, "RETRY_REDIS_EVERY", 0.0)
    # Another process was told to wait a minute.
    real_redis.set(f"{settings.REDIS_KEY_PREFIX}{budget_module.KEY_PREFIX}{account_url}:pause", "1", px=60_000)
    working = budget._client
    budget._client = budget_module._client(DEAD_REDIS)

    assert budget.paused_for() == 0, "without Redis, only this process's own pause counts"

    budget._client = working
    assert budget.paused_for() > 30, "with Redis back, the shared pause holds here too"
