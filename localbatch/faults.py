"""Opt-in failure injection, so clients can be tested against a service that misbehaves."""

import random
import re
import threading
import time
from dataclasses import dataclass, field

from . import errors


@dataclass
class Faults:
    rate: float = 0.0            # share of requests answered with `status`
    status: int = 503            # 503 ServerBusy or 429 TooManyRequests
    retry_after: int = 1         # seconds, sent with 429/503 only
    delay_ms: int = 0            # added to every request
    path_pattern: str = ""       # only requests whose path matches this regex (empty: all)
    count: int = -1              # fault only this many more requests (-1: no limit), for tests that need exactly N
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def as_dict(self) -> dict:
        return {"rate": self.rate, "status": self.status, "retryAfter": self.retry_after,
                "delayMs": self.delay_ms, "pathPattern": self.path_pattern, "count": self.count}

    def inject(self, path: str) -> None:
        """Delay the request, and raise the configured error for the chosen share of requests."""
        if self.delay_ms:
            time.sleep(self.delay_ms / 1000)
        if self.rate and (not self.path_pattern or re.search(self.path_pattern, path)) \
                and not path.startswith("/_localbatch") and random.random() < self.rate and self._take():
            if self.status == 429:
                raise errors.BatchError(429, "TooManyRequests", "The request was throttled (injected fault).",
                                        retry_after=self.retry_after)
            raise errors.BatchError(self.status, "ServerBusy", "The server is busy (injected fault).",
                                    retry_after=self.retry_after if self.status in (429, 503) else None)

    def _take(self) -> bool:
        with self._lock:
            if self.count == 0:
                return False
            if self.count > 0:
                self.count -= 1
            return True
