"""The bookkeeping add_tasks' request threads share: what was added or refused, when to stop, how long to wait
before trying a request again. BatchGateway.add_tasks (client.py) drives them."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable

from . import convert
from .errors import GatewayError, refusal_words
from .records import TaskFailure
from .specs import TaskSpec


class Stopped(Exception):
    """A chunk of add_tasks gave up because another chunk failed."""


class AddOutcome:
    """What add_tasks' worker threads found out, shared between them."""

    def __init__(self) -> None:
        self.added: list[str] = []
        self.failures: list[TaskFailure] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def add(self, task_id: str) -> None:
        with self._lock:
            self.added.append(task_id)

    def fail(self, failure: TaskFailure) -> None:
        with self._lock:
            self.failures.append(failure)


def settle(results: Iterable[dict], pending: dict[str, TaskSpec], outcome: AddOutcome) -> int:
    """Move the tasks Batch added (or had already) and those it refused out of `pending`; returns how many it
    refused."""
    refused = 0
    for result in results:
        task_id = result.get("taskId")
        if task_id not in pending:
            continue
        status, error = result.get("status"), result.get("error") or {}
        code = error.get("code")
        if convert.enum_equals(status, "success") or code == "TaskExists":
            outcome.add(pending.pop(task_id).id)
        elif convert.enum_equals(status, "clientError"):
            message, _ = refusal_words((error.get("message") or {}).get("value") or "refused by Batch",
                                       [(item.get("key"), item.get("value")) for item in error.get("values") or ()
                                        if isinstance(item, dict)])
            outcome.fail(TaskFailure(pending.pop(task_id).id, code, message))
            refused += 1
        # A ServerError stays pending and is sent again.
    return refused


def sleep_before_retry(attempt: int, retry_after: float | None, deadline: float, stop: threading.Event,
                        error: GatewayError) -> None:
    """Exponential backoff with jitter, at least what Batch asked for; raise `error` instead if that would
    overrun the deadline. Wakes early, and gives up, when another chunk has failed."""
    delay = min(8.0, 0.25 * 2 ** attempt) * random.uniform(0.5, 1.0)
    delay = max(delay, retry_after or 0.0)
    if time.monotonic() + delay >= deadline:
        raise error
    if stop.wait(delay):
        raise Stopped()
