"""A per-account request budget: every request a gateway sends takes a token, at most `rate` a second, and a 429 or
503 that names a Retry-After pauses every request to that account until then — in this process (RequestBudget), or
in every process that shares one Redis (SharedBudget).

Batch throttles per account. Without a budget, a pass over a big account (hundreds of concurrent task listings)
could spend the account's whole allowance and have Batch throttle the submissions that share it; with one, the
sync slows down instead, and when Batch says "wait" every thread waits, not only the one that was told. Celery
runs several worker processes, each with its own threads: a budget per process would multiply by their number,
and a Retry-After seen by one would be ignored by the rest, so the portal's budgets live in Redis."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .errors import retry_after_seconds

log = logging.getLogger(__name__)

# Statuses after which Batch's Retry-After applies to the whole account, not only to the request it answered.
_PAUSING_STATUSES = frozenset({429, 503})
# The longest pause one answer may impose: a wrong header must not stall the sync for an hour.
MAX_PAUSE = 60.0


class RequestBudget:
    """A token bucket (`rate` tokens a second, `rate` at most in hand) and a pause shared by the gateways of one
    account in this process. Thread-safe."""

    def __init__(self, rate: float):
        if rate <= 0:
            raise ValueError("a request budget needs a rate above zero")
        self.rate = rate
        self._tokens = rate
        self._refilled = time.monotonic()
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self.requests = 0        # sent through this budget, for the benchmark and the log
        self.pauses = 0          # Retry-After answers that paused the account

    def take(self) -> float:
        """Wait until a request may be sent; returns how long this caller waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                delay = self._paused_until - now
                if delay <= 0:
                    self._tokens = min(self.rate, self._tokens + (now - self._refilled) * self.rate)
                    self._refilled = now
                    if self._tokens >= 1:
                        self._tokens -= 1
                        self.requests += 1
                        return waited
                    delay = (1 - self._tokens) / self.rate
            time.sleep(delay)
            waited += delay

    def pause(self, seconds: float) -> None:
        """No request to the account leaves before `seconds` from now (a longer pause already set stays)."""
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + min(seconds, MAX_PAUSE))
            self.pauses += 1

    def paused_for(self) -> float:
        """Seconds left of the current pause (0 when requests may go)."""
        with self._lock:
            return max(0.0, self._paused_until - time.monotonic())

    # --- azure-core's CustomHookPolicy calls these for every attempt, retries of the SDK's own included ---

    def before_request(self, request: Any) -> None:
        self.take()

    def after_response(self, response: Any) -> None:
        answer = response.http_response
        if answer.status_code in _PAUSING_STATUSES:
            headers: Mapping[str, str] = answer.headers
            seconds = retry_after_seconds(headers)
            if seconds:
                self.pause(seconds)


# GCRA (the token bucket as one timestamp): KEYS[1] holds the account's "theoretical arrival time" in µs of Redis's
# clock, KEYS[2] the pause. The pause, the bucket and the update are one script, so a request costs one round trip
# and two processes never take the same token. Unless the account is paused ({0, µs of the pause}), the caller is
# given the next ARGV[3] free slots at once and told when the first is due, in µs from now ({1, µs}; the k-th is due
# k intervals later, and any that are due already may go now): callers queue in Redis rather than all asking again
# each time a token comes free. Redis's clock, not the callers': their machines' may disagree.
_TAKE = """
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return {0, paused * 1000} end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local count = tonumber(ARGV[3]) or 1
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local first = tat - tolerance - now
tat = tat + interval * count
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return {1, math.ceil(first)}
"""
# A pause only ever grows: a shorter Retry-After must not cut a longer one another process was given.
_PAUSE = """
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then redis.call('SET', KEYS[1], '1', 'PX', ms) end
return 1
"""
# After Redis failed to answer, how long the budget stays in-process before it asks Redis again: a dead Redis costs
# one connection attempt per this many seconds, not one per request.
RETRY_REDIS_EVERY = 5.0
# At most this many slots are taken from Redis at once, as many as this process's callers took in the last LEASE_KEPT
# and at most as many as the rate gives in LEASE_KEPT; a slot not used within LEASE_KEPT after it was due is given up.
LEASE = 8
LEASE_KEPT = 0.02
KEY_PREFIX = "batchsync:budget:"


class SharedBudget(RequestBudget):
    """The budget of one account shared through Redis by every process that uses the same keys: one token bucket
    (`rate` tokens a second, `rate` at most in hand) and one pause. When Redis does not answer, it falls back to
    the in-process budget it inherits (said once in the log) and asks Redis again every RETRY_REDIS_EVERY seconds:
    a dead Redis slows nothing down and fails nothing. `requests` and `pauses` count this process's only."""

    def __init__(self, rate: float, client: redis.Redis, key: str):
        super().__init__(rate)
        self._client = client
        self._keys = [f"{key}:tat", f"{key}:pause"]
        self._take_script = client.register_script(_TAKE)
        self._pause_script = client.register_script(_PAUSE)
        self._redis_down_until = 0.0   # time.monotonic() before which Redis is not asked again
        self._redis_lock = threading.Lock()
        # Slots Redis gave this process ahead of their callers (when each is due), when callers took slots lately,
        # and how many slots are being asked for.
        self._leases = threading.Lock()
        self._leased: deque[float] = deque()
        self._recent: deque[float] = deque()
        self._asked = 0

    def take(self) -> float:
        waited = 0.0
        while True:
            local_pause = super().paused_for()   # one told while Redis was away still holds
            if local_pause > 0:
                time.sleep(local_pause)
                waited += local_pause
                continue
            if not self._redis_usable():
                return waited + super().take()
            try:
                due = self._slot()
            except redis.RedisError as exc:
                self._redis_failed(exc)
                return waited + super().take()
            self._redis_answered()
            if due < 0:   # the account was paused: ask again once the pause is over
                time.sleep(-due)
                waited -= due
                continue
            delay = max(0.0, due - time.monotonic())
            if delay:
                time.sleep(delay)
                waited += delay
            # A Retry-After given to anyone while this caller waited for its slot holds it back too; the slot is
            # given up (one token less, never one request too many).
            if delay and self.paused_for() > 0:
                continue
            with self._lock:
                self.requests += 1
            return waited

    def _slot(self) -> float:
        """When (time.monotonic()) this caller's slot is due: one this process was given already, or from Redis,
        which is asked for more when callers keep coming: as many as were taken in the last LEASE_KEPT, less those
        being asked for, up to LEASE. A pass of hundreds of requests asks Redis a fraction of as many times (each
        round trip a share of a request's CPU on both sides). A slot is used within LEASE_KEPT of being due, so a
        Retry-After another process was given is missed by a few requests at most. Negative: the account is paused
        for that many seconds."""
        with self._leases:
            now = time.monotonic()
            # A slot not taken soon after it was due is given up (a token less, never a request too many).
            while self._leased and self._leased[0] + LEASE_KEPT < now:
                self._leased.popleft()
            while self._recent and self._recent[0] + LEASE_KEPT < now:
                self._recent.popleft()
            self._recent.append(now)
            if self._leased:
                return self._leased.popleft()
            cap = max(1, min(LEASE, int(self.rate * LEASE_KEPT)))
            count = max(1, min(cap, len(self._recent) - self._asked))
            self._asked += count
        slots: list[float] = []
        try:
            # The interval and tolerance go with each call, so a changed rate applies from the next request on.
            interval = 1_000_000 / self.rate
            slotted, first_us = self._take_script(keys=self._keys,
                                                  args=[interval, (max(self.rate, 1) - 1) * interval, count])
            now = time.monotonic()
            if not slotted:
                return -max(int(first_us) / 1_000_000, 1e-6)
            slots = [now + max(0, int(first_us) + k * interval) / 1_000_000 for k in range(count)]
            return slots[0]
        finally:
            with self._leases:
                self._asked -= count
                self._leased.extend(slots[1:])

    def pause(self, seconds: float) -> None:
        super().pause(seconds)
        with self._leases:
            self._leased.clear()   # given before Batch said to wait
        if not self._redis_usable():
            return
        try:
            self._pause_script(keys=self._keys[1:], args=[max(1, round(min(seconds, MAX_PAUSE) * 1000))])
        except redis.RedisError as exc:
            self._redis_failed(exc)
        else:
            self._redis_answered()

    def paused_for(self) -> float:
        local = super().paused_for()
        if not self._redis_usable():
            return local
        try:
            shared = int(self._client.pttl(self._keys[1]))
        except redis.RedisError as exc:
            self._redis_failed(exc)
            return local
        self._redis_answered()
        return max(local, shared / 1000)

    def _redis_usable(self) -> bool:
        return time.monotonic() >= self._redis_down_until

    def _redis_failed(self, exc: redis.RedisError) -> None:
        with self._redis_lock:
            was_up = self._redis_down_until == 0.0
            self._redis_down_until = time.monotonic() + RETRY_REDIS_EVERY
        if was_up:
            # Once per outage, not per request: a sync pass sends hundreds.
            log.warning("request budget %s: Redis does not answer (%s: %s); this process keeps its own budget "
                        "until it does", self._keys[0].rsplit(":", 1)[0], exc.__class__.__name__, exc)

    def _redis_answered(self) -> None:
        if self._redis_down_until:
            with self._redis_lock:
                if self._redis_down_until:
                    self._redis_down_until = 0.0
                    log.info("request budget %s: Redis answers again; the budget is shared again",
                             self._keys[0].rsplit(":", 1)[0])


_budgets: dict[tuple[str, str | None, str], RequestBudget] = {}
_budgets_lock = threading.Lock()


DEFAULT_RATE = 400.0


def budget_for(account_url: str, rate: float | None = None, *, redis_url: str | None = None,
               key_prefix: str = "") -> RequestBudget:
    """The budget of the account at `account_url`, created on first use; a `rate` given applies from now on.
    Without `redis_url` it is this process's own; with one, it is shared by every process that uses the same Redis
    and `key_prefix` (the installation's namespace in Redis)."""
    account = account_url.rstrip("/").lower()
    with _budgets_lock:
        budget = _budgets.get((account, redis_url, key_prefix))
        if budget is None:
            if redis_url is None:
                budget = RequestBudget(rate or DEFAULT_RATE)
            else:
                budget = SharedBudget(rate or DEFAULT_RATE, _client(redis_url), f"{key_prefix}{KEY_PREFIX}{account}")
            _budgets[(account, redis_url, key_prefix)] = budget
        elif rate:
            budget.rate = rate
        return budget


@functools.lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    # Short timeouts and one retry without backoff (redis-py's default retries thrice with backoff): every request to
    # Batch asks Redis first, and a Redis that hangs must cost the sync a second or two at most before the budget
    # falls back to this process's own; the one retry replaces a connection Redis closed while it sat in the pool.
    # (A forked worker gets fresh connections: redis-py's pool notices the new process id.)
    return redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1.0, retry=Retry(NoBackoff(), 1))
