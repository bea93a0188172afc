"""Translation between the SDK's models and ours: specs to SDK options, SDK entities to records."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from enum import Enum
from functools import lru_cache

from azure.batch import models
from azure.batch._utils.model_base import SdkJSONEncoder

from .records import (
    FileRecord,
    JobRecord,
    NodeRecord,
    PoolRecord,
    PrepTaskRecord,
    ReleaseTaskRecord,
    TaskCountsRecord,
    TaskRecord,
)
from .specs import JobSpec, OutputFileSpec, PoolSpec, ResourceFileSpec, TaskSpec

# Batch reports "no limit" as .NET's TimeSpan.MaxValue (about 29,000 years) rather than leaving it out.
_UNLIMITED = timedelta(days=365 * 1000)

# Durations on the wire exactly as the SDK writes them (ISO 8601, e.g. PT05M00S).
_DURATION_ENCODER = SdkJSONEncoder()

# The REST fields TaskRecord is built from; list_tasks asks Batch for these and nothing else.
TASK_RECORD_FIELDS = [
    "id", "displayName", "state", "previousState", "stateTransitionTime", "creationTime", "commandLine",
    "executionInfo", "nodeInfo", "requiredSlots", "environmentSettings", "constraints", "dependsOn",
    "exitConditions",
]
# What changes when a task changes: its state (stateTransitionTime) or, through a task update, its constraints.
TASK_VERSION_FIELDS = ["id", "stateTransitionTime", "constraints"]


# --- specs → SDK ---------------------------------------------------------------------------------

def pool_create_options(spec: PoolSpec) -> models.BatchPoolCreateOptions:
    return models.BatchPoolCreateOptions(id=spec.id, display_name=spec.display_name, **_pool_settings(spec))


def job_create_options(spec: JobSpec) -> models.BatchJobCreateOptions:
    if spec.pool_id is not None:
        pool_info = models.BatchPoolInfo(pool_id=spec.pool_id)
    else:
        auto = spec.auto_pool
        assert auto is not None  # JobSpec.__post_init__: exactly one of pool_id and auto_pool
        pool_info = models.BatchPoolInfo(auto_pool_specification=models.BatchAutoPoolSpecification(
            auto_pool_id_prefix=auto.id, pool_lifetime_option="job", keep_alive=False,
            pool=models.BatchPoolSpecification(display_name=auto.display_name, **_pool_settings(auto))))
    preparation = None
    if spec.preparation_command_line:
        preparation = models.BatchJobPreparationTask(command_line=spec.preparation_command_line)
    return models.BatchJobCreateOptions(
        id=spec.id, display_name=spec.display_name, priority=spec.priority, pool_info=pool_info,
        constraints=models.BatchJobConstraints(max_task_retry_count=spec.max_task_retry_count,
                                               max_wall_clock_time=_duration(spec.max_wall_clock_seconds)),
        job_preparation_task=preparation,
        common_environment_settings=_environment(spec.environment),
        all_tasks_complete_mode=spec.on_all_tasks_complete,
        uses_task_dependencies=spec.uses_task_dependencies,
    )


def task_create_options(spec: TaskSpec) -> models.BatchTaskCreateOptions:
    constraints = None
    if spec.max_task_retry_count is not None or spec.max_wall_clock_seconds is not None:
        constraints = models.BatchTaskConstraints(max_task_retry_count=spec.max_task_retry_count,
                                                  max_wall_clock_time=_duration(spec.max_wall_clock_seconds))
    return models.BatchTaskCreateOptions(
        id=spec.id, command_line=spec.command_line, display_name=spec.display_name,
        environment_settings=_environment(spec.environment),
        resource_files=_resource_files(spec.resource_files),
        output_files=[_output_file(output) for output in spec.output_files] or None,
        constraints=constraints, required_slots=spec.required_slots,
    )


def task_wire(spec: TaskSpec) -> dict:
    """A task as addtaskcollection's JSON has it: the same body `task_create_options` serialises to (a test holds
    them equal), built without the SDK's models, which cost several times the HTTP time on big submissions."""
    task: dict[str, object] = {"id": spec.id, "commandLine": spec.command_line}
    if spec.display_name is not None:
        task["displayName"] = spec.display_name
    if spec.environment:
        task["environmentSettings"] = [{"name": name, "value": value} for name, value in spec.environment.items()]
    if spec.resource_files:
        task["resourceFiles"] = [{"httpUrl": f.http_url, "filePath": f.file_path} for f in spec.resource_files]
    if spec.output_files:
        task["outputFiles"] = [_output_file_wire(output) for output in spec.output_files]
    if spec.max_task_retry_count is not None or spec.max_wall_clock_seconds is not None:
        constraints: dict[str, object] = {}
        if spec.max_task_retry_count is not None:
            constraints["maxTaskRetryCount"] = spec.max_task_retry_count
        if spec.max_wall_clock_seconds is not None:
            constraints["maxWallClockTime"] = _iso_duration(spec.max_wall_clock_seconds)
        task["constraints"] = constraints
    task["requiredSlots"] = spec.required_slots
    return task


@lru_cache(maxsize=64)
def _iso_duration(seconds: int) -> str:
    # Every task of a submission has the same limit: encoded once, not once per task.
    return _DURATION_ENCODER.default(timedelta(seconds=seconds))


def _output_file_wire(spec: OutputFileSpec) -> dict:
    container = {"containerUrl": spec.container_url}
    if spec.path is not None:
        container["path"] = spec.path
    return {"filePattern": spec.file_pattern, "destination": {"container": container},
            "uploadOptions": {"uploadCondition": spec.upload_condition}}


def _pool_settings(spec: PoolSpec) -> dict:
    image = spec.image
    start_task = None
    if spec.start_task_command_line:
        start_task = models.BatchStartTask(command_line=spec.start_task_command_line,
                                           resource_files=_resource_files(spec.start_task_resource_files),
                                           wait_for_success=spec.start_task_wait_for_success)
    return dict(
        vm_size=spec.vm_size,
        virtual_machine_configuration=models.VirtualMachineConfiguration(
            image_reference=models.BatchVmImageReference(publisher=image.publisher, offer=image.offer,
                                                         sku=image.sku, version=image.version),
            node_agent_sku_id=image.node_agent_sku_id),
        target_dedicated_nodes=spec.target_dedicated_nodes,
        target_low_priority_nodes=spec.target_low_priority_nodes,
        task_slots_per_node=spec.task_slots_per_node,
        task_scheduling_policy=models.BatchTaskSchedulingPolicy(node_fill_type=spec.node_fill_type),
        start_task=start_task,
    )


def _environment(environment: Mapping[str, str]) -> list[models.EnvironmentSetting] | None:
    return [models.EnvironmentSetting(name=name, value=value) for name, value in environment.items()] or None


def _resource_files(files: tuple[ResourceFileSpec, ...]) -> list[models.ResourceFile] | None:
    return [models.ResourceFile(http_url=f.http_url, file_path=f.file_path) for f in files] or None


def _output_file(spec: OutputFileSpec) -> models.OutputFile:
    return models.OutputFile(
        file_pattern=spec.file_pattern,
        destination=models.OutputFileDestination(container=models.OutputFileBlobContainerDestination(
            container_url=spec.container_url, path=spec.path)),
        upload_options=models.OutputFileUploadConfiguration(upload_condition=spec.upload_condition))


def _duration(seconds: int | None) -> timedelta | None:
    return None if seconds is None else timedelta(seconds=seconds)


# --- SDK → records -------------------------------------------------------------------------------

def pool_record(pool: models.BatchPool) -> PoolRecord:
    resize_error = _first_resize_error(pool)
    return PoolRecord(
        id=pool.id, display_name=pool.display_name, state=enum_value(pool.state),
        allocation_state=enum_value(pool.allocation_state), vm_size=pool.vm_size,
        target_dedicated_nodes=pool.target_dedicated_nodes, target_low_priority_nodes=pool.target_low_priority_nodes,
        current_dedicated_nodes=pool.current_dedicated_nodes,
        current_low_priority_nodes=pool.current_low_priority_nodes,
        task_slots_per_node=pool.task_slots_per_node,
        node_fill_type=enum_value(pool.task_scheduling_policy.node_fill_type) if pool.task_scheduling_policy else None,
        start_task_command_line=pool.start_task.command_line if pool.start_task else None,
        creation_time=_aware(pool.creation_time), state_transition_time=_aware(pool.state_transition_time),
        last_modified=_aware(pool.last_modified), etag=pool.etag,
        enable_auto_scale=bool(pool.enable_auto_scale), auto_scale_error=_auto_scale_error(pool),
        resize_error_code=resize_error.code if resize_error else None,
        resize_error_message=resize_error.message if resize_error else None,
    )


def _first_resize_error(pool: models.BatchPool) -> models.ResizeError | None:
    return pool.resize_errors[0] if pool.resize_errors else None


def _auto_scale_error(pool: models.BatchPool) -> str | None:
    error = pool.auto_scale_run.error if pool.auto_scale_run else None
    if error is None:
        return None
    return ": ".join(part for part in (error.code, error.message) if part) or "error"


def node_record(pool_id: str, node: models.BatchNode) -> NodeRecord:
    start = node.start_task_info
    failure = start.failure_info if start else None
    return NodeRecord(
        pool_id=pool_id, id=node.id, state=enum_value(node.state), scheduling_state=enum_value(node.scheduling_state),
        is_dedicated=node.is_dedicated, running_tasks_count=node.running_tasks_count,
        running_task_slots_count=node.running_task_slots_count, total_tasks_run=node.total_tasks_run,
        total_tasks_succeeded=node.total_tasks_succeeded,
        start_task_state=enum_value(start.state) if start else None,
        start_task_exit_code=start.exit_code if start else None,
        start_task_result=enum_value(start.result) if start else None,
        start_task_failure_code=failure.code if failure else None,
        start_task_failure_message=failure.message if failure else None,
        state_transition_time=_aware(node.state_transition_time),
    )


def prep_task_record(status: models.BatchJobPreparationAndReleaseTaskStatus) -> PrepTaskRecord:
    info = status.job_preparation_task_execution_info
    failure = info.failure_info if info else None
    root = (info.task_root_directory or "") if info else ""
    return PrepTaskRecord(
        # The SDK types every field optional; Batch always sends the pool and node of a preparation task.
        pool_id=status.pool_id, node_id=status.node_id,  # type: ignore[arg-type]
        state=enum_value(info.state) if info else None, result=enum_value(info.result) if info else None,
        exit_code=info.exit_code if info else None, failure_code=failure.code if failure else None,
        retry_count=info.retry_count if info else None,
        start_time=_aware(info.start_time) if info else None, end_time=_aware(info.end_time) if info else None,
        # Relative to the node root with forward slashes, as node file names are.
        task_root_directory=_node_relative(root),
        release=release_task_record(status.job_release_task_execution_info),
    )


def release_task_record(info: models.BatchJobReleaseTaskExecutionInfo | None) -> ReleaseTaskRecord | None:
    """The release task's run on one node; None until it has started there (it runs when the job ends)."""
    if info is None:
        return None
    failure = info.failure_info
    return ReleaseTaskRecord(
        state=enum_value(info.state), result=enum_value(info.result), exit_code=info.exit_code,
        failure_code=failure.code if failure else None, start_time=_aware(info.start_time),
        end_time=_aware(info.end_time), task_root_directory=_node_relative(info.task_root_directory or ""))


def _node_relative(root: str) -> str | None:
    return root.replace("\\", "/").strip("/") or None


def job_record(job: models.BatchJob) -> JobRecord:
    return job_record_from_wire(job.as_dict())


# What job_record_from_wire reads: list_jobs asks Batch for these only.
JOB_RECORD_FIELDS = ("id", "displayName", "state", "poolInfo", "executionInfo", "priority", "onAllTasksComplete",
                     "creationTime", "stateTransitionTime", "lastModified", "eTag", "maxParallelTasks",
                     "usesTaskDependencies")


def job_record_from_wire(job: dict) -> JobRecord:
    """A job as Batch's JSON has it to our record: list_jobs reads its pages as JSON and comes straight here (the
    SDK's models of a few hundred jobs were a tenth of a sync pass's CPU); get_job goes through the SDK's model and
    `as_dict()`, the same JSON."""
    execution = job.get("executionInfo") or {}
    max_parallel = job.get("maxParallelTasks")
    return JobRecord(
        id=job["id"], display_name=job.get("displayName"), state=enum_value(job.get("state")),
        pool_id=execution.get("poolId") or (job.get("poolInfo") or {}).get("poolId"), priority=job.get("priority"),
        on_all_tasks_complete=enum_value(job.get("onAllTasksComplete")),
        creation_time=wire_time(job.get("creationTime")),
        state_transition_time=wire_time(job.get("stateTransitionTime")),
        start_time=wire_time(execution.get("startTime")), end_time=wire_time(execution.get("endTime")),
        terminate_reason=execution.get("terminateReason"), last_modified=wire_time(job.get("lastModified")),
        etag=job.get("eTag"), max_parallel_tasks=max_parallel if max_parallel is not None else -1,
        uses_task_dependencies=bool(job.get("usesTaskDependencies")),
    )


def task_counts_record_from_wire(result: dict) -> TaskCountsRecord:
    """Batch's task counts answer as its JSON has it (taskCounts, taskSlotCounts) to our record."""
    tasks, slots = result.get("taskCounts") or {}, result.get("taskSlotCounts") or {}
    return TaskCountsRecord(
        active=int(tasks.get("active") or 0), running=int(tasks.get("running") or 0),
        completed=int(tasks.get("completed") or 0), succeeded=int(tasks.get("succeeded") or 0),
        failed=int(tasks.get("failed") or 0), active_slots=int(slots.get("active") or 0),
        running_slots=int(slots.get("running") or 0), completed_slots=int(slots.get("completed") or 0),
        succeeded_slots=int(slots.get("succeeded") or 0), failed_slots=int(slots.get("failed") or 0),
    )


def task_record(job_id: str, task: models.BatchTask) -> TaskRecord:
    return task_record_from_wire(job_id, task.as_dict())


def task_record_from_wire(job_id: str, task: dict) -> TaskRecord:
    """A task as Batch's JSON has it (REST names, ISO 8601 strings) to our record.

    list_tasks reads pages as JSON and comes straight here: on a 100,000-task job the SDK's models cost
    about ten times the HTTP time (bench/sync_tasks.py). get_task goes through the SDK's model and
    `as_dict()`, which is the same JSON, so both paths share this one translation."""
    execution = task.get("executionInfo") or {}
    failure = execution.get("failureInfo") or {}
    node = task.get("nodeInfo") or {}
    constraints = task.get("constraints") or {}
    wall_clock = _wire_duration(constraints.get("maxWallClockTime"))
    return TaskRecord(
        job_id=job_id, id=task["id"], display_name=task.get("displayName"), state=enum_value(task.get("state")),
        previous_state=enum_value(task.get("previousState")),
        state_transition_time=wire_time(task.get("stateTransitionTime")),
        creation_time=wire_time(task.get("creationTime")), command_line=task.get("commandLine"),
        exit_code=execution.get("exitCode"), result=enum_value(execution.get("result")),
        failure_category=enum_value(failure.get("category")), failure_code=failure.get("code"),
        failure_message=failure.get("message"),
        retry_count=execution.get("retryCount"), requeue_count=execution.get("requeueCount"),
        start_time=wire_time(execution.get("startTime")), end_time=wire_time(execution.get("endTime")),
        node_id=node.get("nodeId"), pool_id=node.get("poolId"), required_slots=task.get("requiredSlots"),
        environment=tuple((setting["name"], setting.get("value") or "")
                          for setting in task.get("environmentSettings") or ()),
        max_wall_clock_seconds=(None if wall_clock is None or wall_clock >= _UNLIMITED
                                else int(wall_clock.total_seconds())),
        max_task_retry_count=constraints.get("maxTaskRetryCount"),
        depends_on_ids=tuple((task.get("dependsOn") or {}).get("taskIds") or ()),
        depends_on_ranges=tuple((span["start"], span["end"])
                                for span in (task.get("dependsOn") or {}).get("taskIdRanges") or ()),
        dependency_action=_dependency_action(task, execution, failure),
    )


def _dependency_action(task: dict, execution: dict, failure: dict) -> str | None:
    """What a completed task's outcome does to the tasks depending on it, as Batch decides it from the task's
    exitConditions: its exit code's own options, else "satisfy" for a success and the default's (or "block")
    for anything else. None while the task has not completed."""
    if enum_value(task.get("state")) != "completed":
        return None
    conditions = task.get("exitConditions") or {}
    code = execution.get("exitCode")
    options: dict | None = None
    if enum_value(failure.get("category")) and failure.get("code", "").startswith("FileUpload"):
        options = conditions.get("fileUploadError")
    elif code is None and failure:
        options = conditions.get("preProcessingError")
    if options is None and code is not None:
        options = next((item.get("exitOptions") for item in conditions.get("exitCodes") or ()
                        if item.get("code") == code), None)
        if options is None:
            options = next((item.get("exitOptions") for item in conditions.get("exitCodeRanges") or ()
                            if item.get("start", 0) <= code <= item.get("end", -1)), None)
    if options is None:
        succeeded = enum_value(execution.get("result")) == "success"
        options = {"dependencyAction": "satisfy"} if succeeded else conditions.get("default") or {}
    return enum_value(options.get("dependencyAction")) or (
        "satisfy" if enum_value(execution.get("result")) == "success" else "block")


# Batch writes durations as .NET TimeSpans in ISO 8601: days, hours, minutes, seconds with a fraction.
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def _wire_duration(value: str | None) -> timedelta | None:
    match = _DURATION.match(value) if value else None
    if not match:
        return None
    days, hours, minutes, seconds = (float(part) if part else 0.0 for part in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def wire_time(value: str | None) -> datetime | None:
    """A time as Batch writes it in JSON, in UTC."""
    # Python 3.11 reads Batch's "…T17:51:26.5758910Z" (7 fraction digits, Z) like the SDK: to the microsecond.
    return _aware(datetime.fromisoformat(value)) if value else None


def file_record(file: models.BatchNodeFile) -> FileRecord:
    properties = file.properties
    return FileRecord(
        # The SDK types every field optional; Batch always names a file.
        name=file.name, is_directory=bool(file.is_directory),  # type: ignore[arg-type]
        size=int(properties.content_length) if properties and properties.content_length is not None else None,
        last_modified=_aware(properties.last_modified) if properties else None,
    )


def enum_value(value: Enum | str | None) -> str | None:
    """An enum Batch sent, as our records hold it: lowercase. The real service writes PascalCase ("Active",
    "Success", "Pack") and the SDK hands such values on as plain strings; its enum members hold lowercase."""
    text = value.value if isinstance(value, Enum) else value
    return text.lower() if text else None


def enum_equals(value: Enum | str | None, expected: str) -> bool:
    """Whether an enum Batch sent is `expected`, whatever the casing of either."""
    return enum_value(value) == expected.lower()


def _aware(moment: datetime | None) -> datetime | None:
    """The same moment in UTC (datetime.timezone.utc, whatever tzinfo the SDK's parser attached)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
