"""Batch's records as the mirror's rows (pools, nodes, jobs, tasks), and what of each the upserts write and compare."""

from __future__ import annotations

from datetime import datetime

from portal.models import (
    AllocationState,
    BatchAccount,
    Job,
    JobState,
    Node,
    NodeState,
    Pool,
    PoolState,
    Task,
    TaskResult,
    TaskState,
)

from ..gateway import JobRecord, NodeRecord, PoolRecord, TaskRecord

POOL_FIELDS = ["display_name", "state", "allocation_state", "vm_size", "target_dedicated_nodes",
               "target_low_priority_nodes", "current_dedicated_nodes", "current_low_priority_nodes",
               "task_slots_per_node", "node_fill_type", "start_task_command_line", "enable_auto_scale",
               "auto_scale_error", "resize_error_code", "resize_error_message", "creation_time",
               "state_transition_time", "last_modified", "etag", "last_synced_at", "gone_at"]
NODE_FIELDS = ["state", "scheduling_state", "is_dedicated", "running_tasks_count", "running_task_slots_count",
               "total_tasks_run", "total_tasks_succeeded", "start_task_state", "start_task_exit_code",
               "start_task_result", "start_task_failure_code", "start_task_failure_message",
               "state_transition_time", "last_synced_at", "gone_at"]
JOB_FIELDS = ["display_name", "state", "pool_id", "priority", "on_all_tasks_complete", "creation_time",
              "state_transition_time", "start_time", "end_time", "terminate_reason", "last_modified", "etag",
              "max_parallel_tasks", "uses_task_dependencies", "last_synced_at", "gone_at"]
TASK_FIELDS = ["display_name", "state", "previous_state", "state_transition_time", "creation_time", "command_line",
               "exit_code", "result", "failure_category", "failure_code", "failure_message", "retry_count",
               "requeue_count", "start_time", "end_time", "duration_seconds", "node_id", "pool_id",
               "required_slots", "environment", "max_wall_clock_seconds", "max_task_retry_count",
               "depends_on", "dependency_action", "last_synced_at", "gone_at"]
# A job's etag changes with every change to the job itself; its state changes move stateTransitionTime.
JOB_COMPARE = ("etag", "last_modified")
# A task row with the same stateTransitionTime is rewritten only if one of these differs: they are the
# only fields Batch changes without a state transition (through a task update).
TASK_COMPARE = ("max_wall_clock_seconds", "max_task_retry_count")

_POOL_STATES = frozenset(PoolState.values)
_ALLOCATION_STATES = frozenset(AllocationState.values)
_NODE_STATES = frozenset(NodeState.values)
_JOB_STATES = frozenset(JobState.values)
_TASK_STATES = frozenset(TaskState.values)
_TASK_RESULTS = frozenset(TaskResult.values)


def _choice(value: str | None, known: frozenset[str], unknown: str = "unknown") -> str:
    return value if value in known else unknown


def _text(value: str | None, limit: int | None = None) -> str:
    # Limits guard the columns whose length Batch does not document (codes, reasons).
    return (value or "")[:limit] if limit else (value or "")


def pool_row(account: BatchAccount, r: PoolRecord, now: datetime) -> Pool:
    return Pool(
        account_id=account.pk, pool_id=r.id, display_name=_text(r.display_name, 1024),
        state=_choice(r.state, _POOL_STATES), allocation_state=_choice(r.allocation_state, _ALLOCATION_STATES),
        vm_size=_text(r.vm_size, 100), target_dedicated_nodes=r.target_dedicated_nodes or 0,
        target_low_priority_nodes=r.target_low_priority_nodes or 0,
        current_dedicated_nodes=r.current_dedicated_nodes or 0,
        current_low_priority_nodes=r.current_low_priority_nodes or 0,
        task_slots_per_node=r.task_slots_per_node or 1, node_fill_type=_text(r.node_fill_type, 20),
        start_task_command_line=_text(r.start_task_command_line), enable_auto_scale=r.enable_auto_scale,
        auto_scale_error=_text(r.auto_scale_error), resize_error_code=_text(r.resize_error_code, 100),
        resize_error_message=_text(r.resize_error_message), creation_time=r.creation_time,
        state_transition_time=r.state_transition_time, last_modified=r.last_modified, etag=_text(r.etag, 100),
        last_synced_at=now, gone_at=None)


def node_row(pool: Pool, r: NodeRecord, now: datetime) -> Node:
    return Node(
        pool_id=pool.pk, node_id=r.id, state=_choice(r.state, _NODE_STATES),
        scheduling_state=_text(r.scheduling_state, 20), is_dedicated=r.is_dedicated is not False,
        running_tasks_count=r.running_tasks_count or 0, running_task_slots_count=r.running_task_slots_count or 0,
        total_tasks_run=r.total_tasks_run or 0, total_tasks_succeeded=r.total_tasks_succeeded or 0,
        start_task_state=_text(r.start_task_state, 20), start_task_exit_code=r.start_task_exit_code,
        start_task_result=_text(r.start_task_result, 20), start_task_failure_code=_text(r.start_task_failure_code, 100),
        start_task_failure_message=_text(r.start_task_failure_message), state_transition_time=r.state_transition_time,
        last_synced_at=now, gone_at=None)


def job_row(account: BatchAccount, r: JobRecord, now: datetime) -> Job:
    return Job(
        account_id=account.pk, job_id=r.id, display_name=_text(r.display_name, 1024),
        state=_choice(r.state, _JOB_STATES), pool_id=_text(r.pool_id, 64), priority=r.priority or 0,
        on_all_tasks_complete=_text(r.on_all_tasks_complete, 20), creation_time=r.creation_time,
        state_transition_time=r.state_transition_time, start_time=r.start_time, end_time=r.end_time,
        terminate_reason=_text(r.terminate_reason, 100), last_modified=r.last_modified, etag=_text(r.etag, 100),
        max_parallel_tasks=r.max_parallel_tasks, uses_task_dependencies=r.uses_task_dependencies,
        last_synced_at=now, gone_at=None)


def task_row(job: Job, r: TaskRecord, now: datetime) -> Task:
    start, end = r.start_time, r.end_time
    return Task(
        job_id=job.pk, task_id=r.id, display_name=r.display_name or "", state=_choice(r.state, _TASK_STATES),
        previous_state=_text(r.previous_state, 20), state_transition_time=r.state_transition_time,
        creation_time=r.creation_time, command_line=r.command_line or "", exit_code=r.exit_code,
        result=_choice(r.result, _TASK_RESULTS, ""), failure_category=_text(r.failure_category, 20),
        failure_code=_text(r.failure_code, 100), failure_message=r.failure_message or "",
        retry_count=r.retry_count or 0, requeue_count=r.requeue_count or 0, start_time=start, end_time=end,
        duration_seconds=(end - start).total_seconds() if start and end else None,
        node_id=r.node_id or "", pool_id=r.pool_id or "", required_slots=r.required_slots or 1,
        # Batch's own shape for environmentSettings.
        environment=[{"name": name, "value": value} for name, value in r.environment],
        max_wall_clock_seconds=r.max_wall_clock_seconds, max_task_retry_count=r.max_task_retry_count,
        depends_on=_depends_on(r), dependency_action=_text(r.dependency_action, 10),
        last_synced_at=now, gone_at=None)


def _depends_on(r: TaskRecord) -> dict:
    depends: dict[str, list] = {}
    if r.depends_on_ids:
        depends["taskIds"] = list(r.depends_on_ids)
    if r.depends_on_ranges:
        depends["taskIdRanges"] = [list(span) for span in r.depends_on_ranges]
    return depends


def task_version(record: TaskRecord) -> tuple:
    """What of a task record tells whether the mirror holds the same: its state's time and what a task update
    changes without a state transition (TASK_COMPARE)."""
    return record.state_transition_time, record.max_wall_clock_seconds, record.max_task_retry_count
