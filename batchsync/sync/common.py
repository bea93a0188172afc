"""What the sync's parts share: the retry policy, a pass's statistics, and helpers to fetch from Batch."""

from __future__ import annotations

import concurrent.futures
import gc
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from django.conf import settings

from portal.models import BatchAccount

from ..accounts import gateway_for
from ..gateway import BatchGateway, Transient

log = logging.getLogger("batchsync.sync")

T = TypeVar("T")

@dataclass(frozen=True)
class RetryPolicy:
    """Transient errors are retried with exponential backoff and jitter until `budget_seconds` is spent."""
    budget_seconds: float = 30.0
    first_delay: float = 0.5
    max_delay: float = 8.0


DEFAULT_RETRY = RetryPolicy()


@dataclass
class SyncStats:
    """What a pass did. `tasks` counts rows written; unchanged rows are listed but not written."""
    pools: int = 0
    nodes: int = 0
    jobs: int = 0
    tasks: int = 0
    tasks_listed: int = 0
    gone: int = 0
    busy: list[str] = field(default_factory=list)    # skipped: another sync held their lock
    quiet: int = 0          # jobs whose tasks were not listed: nothing about them changed since the last pass
    failed: list[str] = field(default_factory=list)  # jobs Batch did not answer for within the retry budget
    requests: int = 0       # requests sent through the account's budget during the pass (0 with a caller's gateway)
    seconds: float = 0.0

    def __iadd__(self, other: SyncStats) -> SyncStats:
        for f in fields(self):
            if f.name != "seconds":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


_DONE = object()


def read_ahead(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Yield what `items` yields, produced in a background thread up to `depth` items ahead.

    An exception raised by `items` is raised here, in the consumer, at the point it occurred; if the
    consumer stops early the producer is told to stop and is waited for, so nothing outlives the call."""
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        handoff.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put((_DONE, None))
        except BaseException as error:   # handed to the consumer, which raises it
            handoff.put((_DONE, error))

    producer = threading.Thread(target=produce, name="sync-read-ahead", daemon=True)
    producer.start()
    try:
        while True:
            item, error = handoff.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        while producer.is_alive():
            try:   # unblock a producer waiting to hand over its last item
                handoff.get_nowait()
            except queue.Empty:
                pass
            producer.join(timeout=0.1)


def retrying(action: Callable[[], T], what: str, policy: RetryPolicy) -> T:
    """Run `action`, again after a Transient error, with exponential backoff and jitter (at least what
    Batch asked for in Retry-After), until the policy's time budget would be overrun."""
    backoff = Backoff(policy, what)
    while True:
        try:
            return action()
        except Transient as error:
            backoff.wait(error)


class Backoff:
    """The waits between the attempts of one action: exponential with jitter, at least Batch's Retry-After, and
    none that would overrun the policy's time budget."""

    def __init__(self, policy: RetryPolicy, what: str):
        self.policy, self.what = policy, what
        self.deadline = time.monotonic() + policy.budget_seconds
        self.attempt = 0

    def wait(self, error: Transient) -> None:
        """Sleep before the next attempt; raise `error` instead if that would overrun the budget."""
        self.attempt += 1
        policy = self.policy
        delay = min(policy.max_delay, policy.first_delay * 2 ** (self.attempt - 1)) * random.uniform(0.5, 1.0)
        delay = max(delay, error.retry_after or 0.0)
        if time.monotonic() + delay > self.deadline:
            log.warning("%s: giving up after %d attempts: %s", self.what, self.attempt, error)
            raise error
        log.info("%s: retrying in %.1fs after: %s", self.what, delay, error)
        time.sleep(delay)


class Fetcher:
    """Runs Batch requests on at most `size` threads and hands each answer to its handler on the caller's thread,
    the one that writes the database (Django's connections belong to their thread)."""

    def __init__(self, size: int):
        self._pool = _threads(max(1, size))
        self._handlers: dict[Future[Any], Callable[[Future[Any]], None]] = {}
        self._started: list[Future[Any]] = []
        # Done futures arrive here in the order they finish: one hand-over each, where waiting on all the pending
        # ones (concurrent.futures.wait) would cost a pass of hundreds of requests time squared in the number.
        self._done: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()

    def fetch(self, action: Callable[[], T], then: Callable[[Future[T]], None]) -> None:
        """Start `action` on a thread; `then(future)` runs on the caller's thread, in `run`, once it is done."""
        future = self._pool.submit(action)
        self._started.append(future)
        self._handlers[future] = then
        future.add_done_callback(self._done.put)

    def run(self, idle: Callable[[], None] | None = None, linger: float = 0.0) -> None:
        """Handle answers as they arrive (a handler may fetch more) until none is pending. A handler's exception
        cancels what has not started and is raised.

        `idle()` runs when no answer is waiting to be handled and either nothing is pending or `linger` seconds
        passed since it last ran (and once more before returning); it may fetch more. Handlers leave work there to
        be done for every answer that arrived meanwhile at once. Answers trickle in when Batch is slow: without
        `linger` each would be written on its own, the per-answer cost batching is meant to save."""
        last = time.monotonic()
        try:
            while True:
                try:
                    future = self._done.get_nowait()
                except queue.Empty:
                    wait = linger - (time.monotonic() - last)
                    if idle is not None and (wait <= 0 or not self._handlers):
                        idle()
                        last = time.monotonic()
                        if not self._handlers:
                            return   # idle fetched nothing more: the run is over
                        continue
                    if not self._handlers:
                        return
                    try:
                        future = self._done.get(timeout=wait if idle is not None else None)
                    except queue.Empty:
                        continue
                self._handlers.pop(future)(future)
        finally:
            for future in self._handlers:
                future.cancel()
            self._handlers.clear()

    def close(self) -> None:
        """Cancel what has not started and wait for what has: nothing of this fetcher outlives it."""
        for future in self._started:
            future.cancel()
        concurrent.futures.wait(self._started)
        self._started.clear()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# The cyclic collector's thresholds while a pass runs (Python's default: 700, 10, 10). A pass allocates fast (every
# answer's JSON, records, rows), so the default ran a young collection every few hundred microseconds of work and,
# now and then, a full one over the whole process (Django, the SDKs): 100 ms or more with every thread stopped, in a
# pass of 1-2 s. Nearly all of a pass's garbage is freed by reference counting; what is cyclic waits for the
# collections after it.
PASS_GC_THRESHOLDS = (20_000, 20, 1_000)
_gc_lock = threading.Lock()
_gc_passes = 0
_gc_saved: tuple[int, int, int] = (0, 0, 0)


@contextmanager
def fewer_collections() -> Iterator[None]:
    """The cyclic garbage collector at PASS_GC_THRESHOLDS for the block (the process's own back once the last pass
    running in it ends); left alone if it is off."""
    global _gc_passes, _gc_saved
    with _gc_lock:
        if _gc_passes == 0:
            _gc_saved = gc.get_threshold()
            if _gc_saved[0] > 0:
                gc.set_threshold(*PASS_GC_THRESHOLDS)
        _gc_passes += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_passes -= 1
            if _gc_passes == 0 and _gc_saved[0] > 0:
                gc.set_threshold(*_gc_saved)


_thread_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}
_thread_pools_lock = threading.Lock()


def _threads(size: int) -> ThreadPoolExecutor:
    """This process's threads for fetchers of `size`, kept from one pass to the next: starting 32 threads on every
    pass, each waiting for the interpreter's lock while the others work, cost a busy pass a good part of a second.
    Passes running at once in one process share them (and so their bound)."""
    key = (os.getpid(), size)   # a forked worker starts its own
    with _thread_pools_lock:
        pool = _thread_pools.get(key)
        if pool is None:
            pool = _thread_pools[key] = ThreadPoolExecutor(max_workers=size, thread_name_prefix="sync-fetch")
        return pool


def concurrency() -> int:
    """Requests of one pass in flight at once (settings.SYNC_CONCURRENCY)."""
    return max(1, int(getattr(settings, "SYNC_CONCURRENCY", 32)))


@contextmanager
def gateway_or_own(account: BatchAccount, gateway: BatchGateway | None) -> Iterator[BatchGateway]:
    """The caller's gateway, or one of our own (within the account's request budget, with a connection for each
    concurrent request) that is closed afterwards."""
    if gateway is not None:
        yield gateway
        return
    with gateway_for(account, budgeted=True, connections=concurrency()) as own:
        yield own
