"""The in-memory model of one Batch account, guarded by one lock and written through to the Store.

Entities are dicts in the REST shape (camelCase). Keys starting with "_" are localbatch's own
bookkeeping: persisted, never sent to clients."""

import itertools
import threading
import time
from bisect import bisect_left, insort
from collections import Counter, defaultdict
from contextlib import contextmanager
from datetime import datetime

from .odata import parse_datetime
from .store import Store
from .timeutil import now_iso

TASK_STATES = ("active", "preparing", "running", "completed")
DOTNET_EPOCH_TICKS = 621355968000000000   # 1970-01-01 in .NET ticks


def public(entity: dict) -> dict:
    return {k: v for k, v in entity.items() if not k.startswith("_")}


def key_of(ident: str) -> str:
    # Batch ids are case-preserving but unique without regard to case.
    return ident.lower()


class AccountState:
    def __init__(self, store: Store):
        self.store = store
        self.lock = threading.RLock()
        self._depth = 0
        self.listeners: list = []   # called after a transaction wrote something (wakes the scheduler)
        self.pools: dict[str, dict] = {}
        self.nodes: dict[str, dict[str, dict]] = defaultdict(dict)   # pool key -> node id -> node
        self.jobs: dict[str, dict] = {}
        self.job_schedules: dict[str, dict] = {}
        self.tasks: dict[str, dict[str, dict]] = defaultdict(dict)   # job key -> task key -> task (creation order)
        # Derived, rebuilt at load: counts of tasks per job by state and by result, in tasks and in slots.
        self.task_counts: dict[str, Counter] = defaultdict(Counter)
        self.active: dict[str, dict[str, None]] = defaultdict(dict)  # job key -> ordered set of active task keys
        # Job key -> (stateTransitionTime, task key) in time order, so a listing of what changed since a moment (the
        # portal's sync asks for that on every pass) reads those tasks, not all of a big job's. An entry outlives its
        # task's next transition or removal (`tasks_since` looks at the tasks themselves) until the list is rebuilt.
        self.transitions: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
        # ETags as the service makes them: "0x" and the time in .NET ticks (100 ns since year 1), 15 hex
        # digits; a counter from the start time keeps them unique and increasing.
        self._etag = itertools.count(int(time.time() * 1e7) + DOTNET_EPOCH_TICKS)
        self._seq = itertools.count(1)
        self._load()

    # -- transactions -------------------------------------------------------------------------
    @contextmanager
    def tx(self):
        """Hold the lock; on leaving the outermost block, write changes and wake the scheduler."""
        with self.lock:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self.store.flush():
                    for listener in self.listeners:
                        listener()

    def touch(self, entity: dict) -> None:
        """A client-visible change: new eTag and lastModified."""
        entity["eTag"] = f"0x{next(self._etag):X}"
        entity["lastModified"] = now_iso()

    def next_seq(self) -> int:
        return next(self._seq)

    # -- persistence --------------------------------------------------------------------------
    # A worker thread may finish after its pool, node, job or task was deleted: saving only what is
    # still in the model keeps such late writes from bringing a deleted entity back after a restart.
    def save_pool(self, pool: dict) -> None:
        if self.pools.get(key_of(pool["id"])) is pool:
            self.store.put("pool", key_of(pool["id"]), pool)

    def save_node(self, pool_key: str, node: dict) -> None:
        if self.nodes.get(pool_key, {}).get(node["id"]) is node:
            self.store.put("node", f"{pool_key}/{node['id']}", node)

    def save_job(self, job: dict) -> None:
        if self.jobs.get(key_of(job["id"])) is job:
            self.store.put("job", key_of(job["id"]), job)

    def save_job_schedule(self, schedule: dict) -> None:
        if self.job_schedules.get(key_of(schedule["id"])) is schedule:
            self.store.put("jobschedule", key_of(schedule["id"]), schedule)

    def save_task(self, job_key: str, task: dict) -> None:
        if self.tasks.get(job_key, {}).get(key_of(task["id"])) is task:
            self.store.put("task", f"{job_key}/{key_of(task['id'])}", task)

    def _load(self) -> None:
        for pool in self.store.load("pool"):
            self.pools[key_of(pool["id"])] = pool
        for node in sorted(self.store.load("node"), key=lambda n: n.get("_seq", 0)):
            self.nodes[node["_pool"]][node["id"]] = node
        for job in self.store.load("job"):
            self.jobs[key_of(job["id"])] = job
        for schedule in sorted(self.store.load("jobschedule"), key=lambda s: s.get("_seq", 0)):
            self.job_schedules[key_of(schedule["id"])] = schedule
        max_seq = 0
        for task in sorted(self.store.load("task"), key=lambda t: t["_seq"]):
            job_key = task["_job"]
            self.tasks[job_key][key_of(task["id"])] = task
            self._count(job_key, task, +1)
            max_seq = max(max_seq, task["_seq"])
        for job_key in self.tasks:
            self._index_transitions(job_key)
        for entity in itertools.chain(self.pools.values(), self.jobs.values(), self.job_schedules.values()):
            max_seq = max(max_seq, entity.get("_seq", 0))
        self._seq = itertools.count(max_seq + 1)

    # -- tasks --------------------------------------------------------------------------------
    def _count(self, job_key: str, task: dict, sign: int) -> None:
        counts = self.task_counts[job_key]
        slots = task.get("requiredSlots") or 1
        state = task["state"]
        counts[state] += sign
        counts["slots:" + state] += sign * slots
        if state == "active":
            if sign > 0:
                self.active[job_key][key_of(task["id"])] = None
            else:
                self.active[job_key].pop(key_of(task["id"]), None)
        if state == "completed":
            result = (task.get("executionInfo") or {}).get("result") or "success"
            counts[result] += sign
            counts["slots:" + result] += sign * slots

    def add_task(self, job_key: str, task: dict) -> None:
        task["_job"] = job_key
        task["_seq"] = self.next_seq()
        self.tasks[job_key][key_of(task["id"])] = task
        self._count(job_key, task, +1)
        self._note_transition(job_key, task)
        self.save_task(job_key, task)

    def remove_task(self, job_key: str, task: dict) -> None:
        self._count(job_key, task, -1)
        del self.tasks[job_key][key_of(task["id"])]
        self.store.delete("task", f"{job_key}/{key_of(task['id'])}")

    def update_task(self, task: dict, state: str | None = None, **execution_info) -> None:
        """The one place a task's state or result changes, so the per-job counts stay right."""
        job_key = task["_job"]
        self._count(job_key, task, -1)
        if state and state != task["state"]:
            # One clock read: a completed task's endTime equals its stateTransitionTime, as on Batch.
            now = execution_info.get("endTime") or execution_info.get("startTime") or now_iso()
            task["previousState"] = task["state"]
            task["previousStateTransitionTime"] = task["stateTransitionTime"]
            task["state"] = state
            task["stateTransitionTime"] = now
            self._note_transition(job_key, task)
        if execution_info:
            info = task.setdefault("executionInfo", {"retryCount": 0, "requeueCount": 0})
            for name, value in execution_info.items():
                if value is None:
                    info.pop(name, None)
                else:
                    info[name] = value
        self._count(job_key, task, +1)
        self.touch(task)
        self.save_task(job_key, task)

    def tasks_since(self, job_key: str, moment: datetime) -> dict[str, dict]:
        """The job's tasks, by key, whose stateTransitionTime is `moment` or later: what a listing filtered on that
        time needs to look at (the filter still decides about each)."""
        tasks = self.tasks.get(job_key, {})
        entries = self.transitions.get(job_key, [])
        found: dict[str, dict] = {}
        for _, key in entries[bisect_left(entries, (moment,)):]:
            task = tasks.get(key)
            if task is not None:
                found[key] = task
        return found

    def _note_transition(self, job_key: str, task: dict) -> None:
        entries = self.transitions[job_key]
        insort(entries, (parse_datetime(task["stateTransitionTime"]), key_of(task["id"])))
        # Entries left by earlier transitions and removed tasks: dropped once they outnumber the tasks.
        if len(entries) > 2 * len(self.tasks[job_key]) + 64:
            self._index_transitions(job_key)

    def _index_transitions(self, job_key: str) -> None:
        self.transitions[job_key] = sorted((parse_datetime(task["stateTransitionTime"]), key)
                                           for key, task in self.tasks[job_key].items())

    def remove_job(self, job_key: str) -> None:
        for task in list(self.tasks.get(job_key, {}).values()):
            self.store.delete("task", f"{job_key}/{key_of(task['id'])}")
        self.tasks.pop(job_key, None)
        self.task_counts.pop(job_key, None)
        self.active.pop(job_key, None)
        self.transitions.pop(job_key, None)
        self.jobs.pop(job_key, None)
        self.store.delete("job", job_key)

    def remove_pool(self, pool_key: str) -> None:
        for node_id in list(self.nodes.get(pool_key, {})):
            self.store.delete("node", f"{pool_key}/{node_id}")
        self.nodes.pop(pool_key, None)
        self.pools.pop(pool_key, None)
        self.store.delete("pool", pool_key)
