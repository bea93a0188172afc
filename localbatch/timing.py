"""The service's own clocks: autoscale evaluations and samples, job schedule recurrences. `Timers` runs
them on one thread; `Timing.scale` lets tests run them faster than the service does."""

import threading
import time
import traceback
from dataclasses import dataclass
from typing import Callable

from .state import AccountState

LONGEST_SLEEP = 0.5


@dataclass
class Timing:
    """`scale` is how many real seconds one service second takes: 1 by default; 0.01 makes a 5-minute
    autoscale interval (the service's minimum) pass in 3 s. Set it through PUT /_localbatch/timing."""
    scale: float = 1.0

    def real(self, service_seconds: float) -> float:
        return service_seconds * self.scale

    def as_dict(self) -> dict:
        return {"timeScale": self.scale}


Tick = Callable[[float], float]   # called under the account lock with time.time(); returns when it is next due


class Timers:
    """One thread that calls each tick when it is due, inside one account transaction."""

    def __init__(self, state: AccountState, ticks: list[Tick]):
        self.state = state
        self.ticks = ticks
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="localbatch-timers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        next_due = time.time()
        while not self._stopping.is_set():
            self._wake.wait(timeout=min(LONGEST_SLEEP, max(0.005, next_due - time.time())))
            self._wake.clear()
            if self._stopping.is_set():
                break
            now = time.time()
            next_due = now + LONGEST_SLEEP
            try:
                with self.state.tx():
                    for tick in self.ticks:
                        next_due = min(next_due, tick(now))
            except Exception:  # noqa: BLE001 - one bad tick must not stop the clocks; the error is printed
                traceback.print_exc()
