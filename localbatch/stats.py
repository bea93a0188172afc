"""The `stats` objects of pools, jobs, job schedules and tasks, added to what is read with `$expand=stats`."""

import time
from typing import TYPE_CHECKING, Callable

from . import errors
from .state import AccountState, key_of
from .timeutil import format_duration, iso_to_epoch, now_iso

if TYPE_CHECKING:
    from .service import BatchService

ZERO = "PT0S"


def wanted(query: dict[str, str]) -> bool:
    """Whether `$expand` asks for stats; anything else in it is refused, as the service refuses it."""
    expand = query.get("$expand")
    if not expand:
        return False
    names = [name.strip() for name in expand.split(",")]
    for name in names:
        if name.lower() != "stats":
            raise errors.invalid_query("$expand", expand, f"'{name}' cannot be expanded: only stats can.")
    return True


def expanded(query: dict[str, str], present: Callable[[dict], dict], stats_of: Callable[[dict], dict]):
    """`present` that adds the entity's stats when the request asks for them (checked once, up front)."""
    if not wanted(query):
        return present
    return lambda entity: dict(present(entity), stats=stats_of(entity))


def _seconds(start: str | None, end: str | None = None) -> float:
    if not start:
        return 0.0
    return max(0.0, (iso_to_epoch(end) if end else time.time()) - iso_to_epoch(start))


def _duration(seconds: float) -> str:
    return format_duration(round(seconds, 3)) if seconds > 0 else ZERO


def _io() -> dict:
    # localbatch does not measure I/O: the counters the service keeps are zero here (int64 as strings, as sent).
    return {"readIOps": "0", "writeIOps": "0", "readIOGiB": "0.0", "writeIOGiB": "0.0"}


def task(stored: dict, url: str) -> dict:
    info = stored.get("executionInfo") or {}
    return {"url": url, "startTime": stored["creationTime"], "lastUpdateTime": now_iso(),
            "userCPUTime": ZERO, "kernelCPUTime": ZERO,
            "wallClockTime": _duration(_seconds(info.get("startTime"), info.get("endTime"))),
            **_io(), "waitTime": _duration(_seconds(stored["creationTime"], info.get("startTime"))
                                           if info.get("startTime") else 0.0)}


def _jobs(state: AccountState, jobs: list[dict]) -> dict:
    """Totals over the tasks of some jobs: succeeded, failed, retries, wall clock and wait time."""
    succeeded = failed = retries = 0
    wall_clock = wait = 0.0
    for job in jobs:
        counts = state.task_counts[key_of(job["id"])]
        succeeded += counts["success"]
        failed += counts["failure"]
        for stored in state.tasks.get(key_of(job["id"]), {}).values():
            info = stored.get("executionInfo") or {}
            retries += info.get("retryCount", 0)
            if info.get("startTime"):
                wall_clock += _seconds(info["startTime"], info.get("endTime"))
                wait += _seconds(stored["creationTime"], info["startTime"])
    return {"userCPUTime": ZERO, "kernelCPUTime": ZERO, "wallClockTime": _duration(wall_clock), **_io(),
            "numSucceededTasks": str(succeeded), "numFailedTasks": str(failed), "numTaskRetries": str(retries),
            "waitTime": _duration(wait)}


def job(state: AccountState, stored: dict, url: str) -> dict:
    return {"url": url, "startTime": stored["creationTime"], "lastUpdateTime": now_iso(), **_jobs(state, [stored])}


def job_schedule(state: AccountState, stored: dict, jobs: list[dict], url: str) -> dict:
    return {"url": url, "startTime": stored["creationTime"], "lastUpdateTime": now_iso(), **_jobs(state, jobs)}


def pool(state: AccountState, stored: dict, url: str) -> dict:
    """Usage only: the node time of the pool's dedicated nodes, one core each (localbatch does not measure
    CPU, memory, disk or network, so there are no resourceStats)."""
    now = now_iso()
    nodes = state.nodes.get(key_of(stored["id"]), {}).values()
    core_seconds = sum(_seconds(node.get("allocationTime")) for node in nodes if node.get("isDedicated"))
    return {"url": url, "startTime": stored["creationTime"], "lastUpdateTime": now,
            "usageStats": {"startTime": stored["creationTime"], "lastUpdateTime": now,
                           "dedicatedCoreTime": _duration(core_seconds)}}


# -- what the routes present, with stats when asked for -------------------------------------------

def pool_presenter(query: dict[str, str], service: "BatchService") -> Callable[[dict], dict]:
    return expanded(query, service.present_pool,
                    lambda p: pool(service.state, p, f"{service.account_url}/pools/{p['id']}"))


def job_presenter(query: dict[str, str], service: "BatchService") -> Callable[[dict], dict]:
    return expanded(query, service.present_job,
                    lambda j: job(service.state, j, f"{service.account_url}/jobs/{j['id']}"))


def task_presenter(query: dict[str, str], service: "BatchService", parent: dict) -> Callable[[dict], dict]:
    return expanded(query, lambda t: service.present_task(parent, t),
                    lambda t: task(t, f"{service.account_url}/jobs/{parent['id']}/tasks/{t['id']}"))
