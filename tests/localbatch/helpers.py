"""Small helpers shared by the localbatch tests (polling, the SDK's models)."""

import time

from azure.batch import models


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
    client.create_job(models.BatchJobCreateOptions(id=job_id, pool_info=models.BatchPoolInfo(pool_id=pool_id), **options))
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
