"""What the gateway returns: plain frozen dataclasses with Batch's field names in snake_case.

States and other enums are Batch's lowercase wire strings; datetimes are timezone-aware (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class PoolRecord:
    id: str
    display_name: str | None
    state: str | None
    allocation_state: str | None
    vm_size: str | None
    target_dedicated_nodes: int | None
    target_low_priority_nodes: int | None
    current_dedicated_nodes: int | None
    current_low_priority_nodes: int | None
    task_slots_per_node: int | None
    node_fill_type: str | None
    start_task_command_line: str | None
    creation_time: datetime | None
    state_transition_time: datetime | None
    last_modified: datetime | None
    etag: str | None
    # Autoscale, and why the pool last failed to reach its target (Batch's first resizeError): what the
    # "why is it waiting?" reasons read (an autoscale formula at zero, a used-up core quota).
    enable_auto_scale: bool = False
    auto_scale_error: str | None = None     # "code: message" of the last autoScaleRun's error
    resize_error_code: str | None = None
    resize_error_message: str | None = None


@dataclass(frozen=True)
class NodeRecord:
    pool_id: str
    id: str
    state: str | None
    scheduling_state: str | None
    is_dedicated: bool | None
    running_tasks_count: int | None
    running_task_slots_count: int | None
    total_tasks_run: int | None
    total_tasks_succeeded: int | None
    start_task_state: str | None
    start_task_exit_code: int | None
    start_task_result: str | None
    start_task_failure_code: str | None
    start_task_failure_message: str | None
    state_transition_time: datetime | None


@dataclass(frozen=True)
class JobRecord:
    id: str
    display_name: str | None
    state: str | None
    pool_id: str | None
    priority: int | None
    on_all_tasks_complete: str | None
    creation_time: datetime | None
    state_transition_time: datetime | None
    start_time: datetime | None
    end_time: datetime | None
    terminate_reason: str | None
    last_modified: datetime | None
    etag: str | None
    max_parallel_tasks: int = -1            # -1: no limit
    uses_task_dependencies: bool = False


@dataclass(frozen=True)
class TaskCountsRecord:
    """Task counts of one job, and the same counts weighted by each task's required slots."""
    active: int
    running: int
    completed: int
    succeeded: int
    failed: int
    active_slots: int
    running_slots: int
    completed_slots: int
    succeeded_slots: int
    failed_slots: int


@dataclass(frozen=True)
class TaskRecord:
    job_id: str
    id: str
    display_name: str | None
    state: str | None
    previous_state: str | None
    state_transition_time: datetime | None
    creation_time: datetime | None
    command_line: str | None
    exit_code: int | None
    result: str | None
    failure_category: str | None
    failure_code: str | None
    failure_message: str | None
    retry_count: int | None
    requeue_count: int | None
    start_time: datetime | None
    end_time: datetime | None
    node_id: str | None
    pool_id: str | None
    required_slots: int | None
    environment: tuple[tuple[str, str], ...]
    max_wall_clock_seconds: int | None   # None: unlimited
    max_task_retry_count: int | None     # -1: unlimited
    # dependsOn: the ids it waits for, and id ranges as (start, end), both inclusive.
    depends_on_ids: tuple[str, ...] = ()
    depends_on_ranges: tuple[tuple[int, int], ...] = ()
    # What its completion does to the tasks that depend on it ("satisfy" | "block"), once it has completed.
    dependency_action: str | None = None


@dataclass(frozen=True)
class FileRecord:
    """A task or node file; `name` is relative to the task folder or the node root."""
    name: str
    is_directory: bool
    size: int | None
    last_modified: datetime | None


@dataclass(frozen=True)
class ReleaseTaskRecord:
    """A job release task on one node (it runs there when the job ends): how it ran, and its folder relative to
    the node root, the preparation task's sibling (workitems/<job>/job-1/jobrelease)."""
    state: str | None               # running | completed
    result: str | None              # success | failure
    exit_code: int | None
    failure_code: str | None
    start_time: datetime | None
    end_time: datetime | None
    task_root_directory: str | None


@dataclass(frozen=True)
class PrepTaskRecord:
    """A job preparation task on one node: how it ran there, and its folder relative to the node root (its
    stdout.txt and stderr.txt are node files under it); with the job's release task on that node once it ran
    (Batch reports both in one status row per node)."""
    pool_id: str
    node_id: str
    state: str | None               # running | completed
    result: str | None              # success | failure
    exit_code: int | None
    failure_code: str | None
    retry_count: int | None
    start_time: datetime | None
    end_time: datetime | None
    task_root_directory: str | None
    release: ReleaseTaskRecord | None = None


@dataclass(frozen=True)
class TaskFailure:
    """A task Batch refused to add, with Batch's reason."""
    id: str
    code: str | None
    message: str


@dataclass(frozen=True)
class AddTasksResult:
    added: tuple[str, ...]          # added now, or found already there (a retry of an earlier add)
    failures: tuple[TaskFailure, ...]


@dataclass(frozen=True)
class ReactivateResult:
    """What `reactivate_tasks` did: tasks Batch put back to `active`, tasks it refused (with its code, e.g.
    TaskNotCompleted, TaskSucceeded, TaskNotFound; None when Batch stayed busy), and tasks not tried because the
    time budget ran out."""
    reactivated: tuple[str, ...]
    refused: tuple[TaskFailure, ...]
    not_tried: tuple[str, ...]
