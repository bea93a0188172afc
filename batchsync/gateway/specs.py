"""What the portal asks the gateway to create: pools, jobs and tasks, with only the settings it uses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ImageSpec:
    publisher: str
    offer: str
    sku: str
    node_agent_sku_id: str
    version: str = "latest"


@dataclass(frozen=True)
class ResourceFileSpec:
    """A file downloaded into the task's working directory before its command runs."""
    http_url: str
    file_path: str


@dataclass(frozen=True)
class OutputFileSpec:
    """Files uploaded to a blob container (a SAS URL) after the task exits."""
    file_pattern: str
    container_url: str
    path: str | None = None
    upload_condition: str = "taskcompletion"   # or "tasksuccess", "taskfailure"


@dataclass(frozen=True)
class PoolSpec:
    id: str
    vm_size: str
    image: ImageSpec
    display_name: str | None = None
    target_dedicated_nodes: int = 0
    target_low_priority_nodes: int = 0
    task_slots_per_node: int = 1
    node_fill_type: str = "spread"             # or "pack"
    start_task_command_line: str | None = None
    start_task_resource_files: tuple[ResourceFileSpec, ...] = ()
    start_task_wait_for_success: bool = True


@dataclass(frozen=True)
class JobSpec:
    """A job on an existing pool (`pool_id`) or on a pool of its own that lives as long as the job (`auto_pool`)."""
    id: str
    pool_id: str | None = None
    auto_pool: PoolSpec | None = None          # its id becomes the auto pool's id prefix
    display_name: str | None = None
    priority: int = 0
    max_task_retry_count: int = 0
    max_wall_clock_seconds: int | None = None
    preparation_command_line: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    # A job with no tasks yet counts as "all complete": create it with "noaction", add the
    # tasks, then call BatchGateway.set_terminate_on_complete.
    on_all_tasks_complete: str = "noaction"
    uses_task_dependencies: bool = False

    def __post_init__(self) -> None:
        if (self.pool_id is None) == (self.auto_pool is None):
            raise ValueError(f"job {self.id}: give exactly one of pool_id and auto_pool")


@dataclass(frozen=True)
class TaskSpec:
    id: str
    command_line: str
    display_name: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    resource_files: tuple[ResourceFileSpec, ...] = ()
    output_files: tuple[OutputFileSpec, ...] = ()
    max_task_retry_count: int | None = None    # None: the job's default
    max_wall_clock_seconds: int | None = None  # None: unlimited
    required_slots: int = 1
