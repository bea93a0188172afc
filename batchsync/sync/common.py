"""What the sync's parts share: the retry policy, a pass's statistics, and helpers to fetch from Batch."""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import TypeVar

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
    deadline = time.monotonic() + policy.budget_seconds
    attempt = 0
    while True:
        try:
            return action()
        except Transient as error:
            attempt += 1
            delay = min(policy.max_delay, policy.first_delay * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            delay = max(delay, error.retry_after or 0.0)
            if time.monotonic() + delay > deadline:
                log.warning("%s: giving up after %d attempts: %s", what, attempt, error)
                raise
            log.info("%s: retrying in %.1fs after: %s", what, delay, error)
            time.sleep(delay)


@contextmanager
def gateway_or_own(account: BatchAccount, gateway: BatchGateway | None) -> Iterator[BatchGateway]:
    """The caller's gateway, or one of our own that is closed afterwards."""
    if gateway is not None:
        yield gateway
        return
    with gateway_for(account) as own:
        yield own
