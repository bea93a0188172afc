"""Small helpers shared by the localbatch tests: polling, pools, jobs and tasks, and signed raw HTTP."""

import http.client
import json
import time
from datetime import datetime, timezone
from email.utils import format_datetime
from urllib.parse import urlsplit

from azure.batch import models

from localbatch import auth


def wait_for(check, timeout: float = 20.0, interval: float = 0.05, message: str = "condition"):
    """Poll `check()` until it returns something truthy; fail the test with `message` on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}; last value: {last!r}")


def make_pool(client, pool_id: str = "pool-1", nodes: int = 1, slots: int = 1, start_task=None,
              fill: str = "spread", low_priority: int = 0):
    client.create_pool(models.BatchPoolCreateOptions(
        id=pool_id, vm_size="standard_d2s_v3", target_dedicated_nodes=nodes, target_low_priority_nodes=low_priority,
        task_slots_per_node=slots, start_task=start_task,
        task_scheduling_policy=models.BatchTaskSchedulingPolicy(node_fill_type=fill)))
    wait_for(lambda: client.get_pool(pool_id).allocation_state == "steady", message=f"pool {pool_id} steady")
    return pool_id


def make_job(client, job_id: str = "job-1", pool_id: str = "pool-1", **options):
    client.create_job(models.BatchJobCreateOptions(id=job_id, pool_info=models.BatchPoolInfo(pool_id=pool_id),
                                                   **options))
    return job_id


def wait_task_completed(client, job_id: str, task_id: str, timeout: float = 20.0):
    return wait_for(lambda: (t := client.get_task(job_id, task_id)).state == "completed" and t,
                    timeout=timeout, message=f"task {task_id} completed")


def task(task_id: str, command: str, **options) -> models.BatchTaskCreateOptions:
    return models.BatchTaskCreateOptions(id=task_id, command_line=command, **options)


def sh(script: str) -> str:
    """A command line run by a shell, as Batch needs for $VAR expansion and pipes."""
    return f"/bin/sh -c '{script}'"


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (an unreaped zombie is dead for our purposes)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


# -- raw HTTP, for what the SDK would normalise -------------------------------------------------

def http_date(moment: datetime | None = None) -> str:
    return format_datetime(moment or datetime.now(timezone.utc), usegmt=True)


def send(localbatch, method: str, path_and_query: str, headers: dict | None = None, body: bytes = b""):
    """Send one request exactly as given (no normalisation of the path); (status, headers, parsed body)."""
    url = urlsplit(localbatch.endpoint)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        connection.putrequest(method, path_and_query, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders(body or None)
        response = connection.getresponse()
        raw = response.read()
        payload = json.loads(raw) if raw and "json" in (response.getheader("Content-Type") or "") else raw
        return response.status, {k.lower(): v for k, v in response.getheaders()}, payload
    finally:
        connection.close()


def signed_headers(localbatch, method: str, path_and_query: str, body: bytes = b"", date: str | None = None,
                   account: str | None = None, key: str | None = None, extra: dict | None = None) -> dict:
    """Headers the way the SDK builds them, signed with localbatch.auth (account and key overridable)."""
    headers = {"ocp-date": date or http_date(), **(extra or {})}
    if method not in ("GET", "HEAD"):
        headers["content-length"] = str(len(body))
    if body:
        headers["content-type"] = "application/json; odata=minimalmetadata"
    headers["Authorization"] = auth.authorization_header(
        method, path_and_query, headers, account or localbatch.account_name, key or localbatch.account_key)
    return headers


def signed_send(localbatch, method: str, path_and_query: str, body: bytes = b"", **options):
    return send(localbatch, method, path_and_query, signed_headers(localbatch, method, path_and_query, body, **options),
                body)
