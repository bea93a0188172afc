"""A per-account request budget: every request a gateway sends takes a token, at most `rate` a second, and a 429 or
503 that names a Retry-After pauses every request to that account in this process until then.

Batch throttles per account. Without a budget, a pass over a big account (hundreds of concurrent task listings)
could spend the account's whole allowance and have Batch throttle the submissions that share it; with one, the
sync slows down instead, and when Batch says "wait" every thread waits, not only the one that was told."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from .errors import retry_after_seconds

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


_budgets: dict[str, RequestBudget] = {}
_budgets_lock = threading.Lock()


DEFAULT_RATE = 400.0


def budget_for(account_url: str, rate: float | None = None) -> RequestBudget:
    """The budget of the account at `account_url` in this process, created on first use; a `rate` given applies
    from now on."""
    key = account_url.rstrip("/").lower()
    with _budgets_lock:
        budget = _budgets.get(key)
        if budget is None:
            budget = _budgets[key] = RequestBudget(rate or DEFAULT_RATE)
        elif rate:
            budget.rate = rate
        return budget
