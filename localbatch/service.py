"""The Batch operations: each checks its input and the entity's state, then changes the model.

Every operation runs inside `state.tx()` (the HTTP layer opens it), so a request either applies
whole or, when it raises BatchError before changing anything, leaves the account as it was."""

import copy
import os
import shutil
import uuid
from collections import Counter
from typing import TYPE_CHECKING

from . import errors, validate, wire
from .odata import BOOLEAN, DATETIME, ENUM, INTEGER, STRING
from .scheduler import Scheduler

if TYPE_CHECKING:
    from .autoscale import Autoscaler
from .state import AccountState, key_of
from .timeutil import UNLIMITED, format_duration, now_iso

TASK_FILTER_FIELDS = {
    "id": STRING, "displayName": STRING, "state": ENUM, "previousState": ENUM, "stateTransitionTime": DATETIME,
    "creationTime": DATETIME, "lastModified": DATETIME, "commandLine": STRING, "requiredSlots": INTEGER,
    "executionInfo/exitCode": INTEGER, "executionInfo/result": ENUM, "executionInfo/startTime": DATETIME,
    "executionInfo/endTime": DATETIME, "executionInfo/retryCount": INTEGER, "executionInfo/requeueCount": INTEGER,
    "executionInfo/failureInfo/code": STRING, "executionInfo/failureInfo/category": ENUM,
    "nodeInfo/nodeId": STRING, "nodeInfo/poolId": STRING,
}
JOB_FILTER_FIELDS = {
    "id": STRING, "displayName": STRING, "state": ENUM, "previousState": ENUM, "stateTransitionTime": DATETIME,
    "creationTime": DATETIME, "lastModified": DATETIME, "priority": INTEGER, "poolInfo/poolId": STRING,
    "executionInfo/poolId": STRING, "executionInfo/startTime": DATETIME, "executionInfo/endTime": DATETIME,
    "executionInfo/terminateReason": STRING, "onAllTasksComplete": ENUM, "onTaskFailure": ENUM,
}
POOL_FILTER_FIELDS = {
    "id": STRING, "displayName": STRING, "state": ENUM, "allocationState": ENUM, "stateTransitionTime": DATETIME,
    "allocationStateTransitionTime": DATETIME, "creationTime": DATETIME, "lastModified": DATETIME, "vmSize": STRING,
    "currentDedicatedNodes": INTEGER, "currentLowPriorityNodes": INTEGER, "targetDedicatedNodes": INTEGER,
    "targetLowPriorityNodes": INTEGER, "taskSlotsPerNode": INTEGER,
}
NODE_FILTER_FIELDS = {
    "id": STRING, "state": ENUM, "schedulingState": ENUM, "stateTransitionTime": DATETIME, "lastBootTime": DATETIME,
    "allocationTime": DATETIME, "isDedicated": BOOLEAN, "startTaskInfo/state": ENUM, "startTaskInfo/result": ENUM,
    "startTaskInfo/exitCode": INTEGER, "startTaskInfo/startTime": DATETIME, "startTaskInfo/endTime": DATETIME,
    "runningTasksCount": INTEGER, "totalTasksRun": INTEGER,
}
PREP_STATUS_FILTER_FIELDS = {
    "nodeId": STRING, "poolId": STRING, "jobPreparationTaskExecutionInfo/state": ENUM,
    "jobPreparationTaskExecutionInfo/result": ENUM, "jobReleaseTaskExecutionInfo/state": ENUM,
}
NODE_COUNT_STATES = ("creating", "idle", "offline", "preempted", "rebooting", "reimaging", "running", "starting",
                     "startTaskFailed", "leavingPool", "unknown", "unusable", "waitingForStartTask", "deallocated",
                     "deallocating", "upgradingOS")
MAX_TASKS_PER_COLLECTION = 100
MAX_COLLECTION_BYTES = 1024 * 1024


class BatchService:
    def __init__(self, state: AccountState, scheduler: Scheduler, account_url: str,
                 autoscaler: "Autoscaler | None" = None):
        self.state = state
        self.scheduler = scheduler
        self.account_url = account_url
        self.autoscaler = autoscaler

    # -- lookups ------------------------------------------------------------------------------
    def pool(self, pool_id: str) -> dict:
        pool = self.state.pools.get(key_of(pool_id))
        if not pool:
            raise errors.not_found("Pool", pool_id)
        return pool

    def node(self, pool_id: str, node_id: str) -> dict:
        pool = self.pool(pool_id)
        node = self.state.nodes[key_of(pool["id"])].get(node_id)
        if not node:
            raise errors.not_found("Node", node_id)
        return node

    def job(self, job_id: str) -> dict:
        job = self.state.jobs.get(key_of(job_id))
        if not job:
            raise errors.not_found("Job", job_id)
        return job

    def task(self, job_id: str, task_id: str) -> dict:
        job = self.job(job_id)
        task = self.state.tasks[key_of(job["id"])].get(key_of(task_id))
        if not task:
            raise errors.not_found("Task", task_id)
        return task

    # -- presentation (the wire format itself is in wire.py) ----------------------------------
    def present_pool(self, pool: dict) -> dict:
        nodes = [n for n in self.state.nodes.get(key_of(pool["id"]), {}).values() if n["state"] != "leavingpool"]
        dedicated = sum(1 for n in nodes if n["isDedicated"])
        return wire.pool(pool, f"{self.account_url}/pools/{pool['id']}", dedicated, len(nodes) - dedicated)

    def present_node(self, pool: dict, node: dict) -> dict:
        return wire.node(node, pool, f"{self.account_url}/pools/{pool['id']}/nodes/{node['id']}")

    def present_job(self, job: dict) -> dict:
        return wire.job(job, f"{self.account_url}/jobs/{job['id']}")

    def present_task(self, job: dict, task: dict) -> dict:
        return wire.task(task, f"{self.account_url}/jobs/{job['id']}/tasks/{task['id']}")

    # -- pools --------------------------------------------------------------------------------
    def create_pool(self, body) -> dict:
        pool = validate.pool_create(body)
        if key_of(pool["id"]) in self.state.pools:
            raise errors.exists("Pool")
        return self._add_pool(pool)

    def _add_pool(self, pool: dict) -> dict:
        now = now_iso()
        pool.update(state="active", stateTransitionTime=now, creationTime=now, allocationState="resizing",
                    allocationStateTransitionTime=now, resizeErrors=[], _seq=self.state.next_seq())
        self.state.touch(pool)
        self.state.pools[key_of(pool["id"])] = pool
        if pool.get("enableAutoScale") and self.autoscaler:
            self.autoscaler.first_run(pool)
        self.state.save_pool(pool)
        return pool

    def delete_pool(self, pool_id: str) -> None:
        pool = self.pool(pool_id)
        if pool["state"] == "deleting":
            return
        pool["state"], pool["stateTransitionTime"] = "deleting", now_iso()
        self.state.touch(pool)
        self.state.save_pool(pool)

    def _active_pool(self, pool_id: str) -> dict:
        pool = self.pool(pool_id)
        if pool["state"] == "deleting":
            raise errors.conflict("PoolBeingDeleted", "The specified pool is being deleted.")
        return pool

    def resize_pool(self, pool_id: str, body) -> None:
        pool = self._active_pool(pool_id)
        validate.check_object(body, "body")
        dedicated = validate.check_int(body.get("targetDedicatedNodes", pool["targetDedicatedNodes"]),
                                       "targetDedicatedNodes", 0, 1000)
        low = validate.check_int(body.get("targetLowPriorityNodes", pool["targetLowPriorityNodes"]),
                                 "targetLowPriorityNodes", 0, 1000)
        timeout = validate.check_duration(body.get("resizeTimeout", "PT15M"), "resizeTimeout", 300)
        option = validate.check_enum(body.get("nodeDeallocationOption", "requeue"), "nodeDeallocationOption",
                                     ("requeue", "terminate", "taskcompletion", "retaineddata"))
        if pool.get("enableAutoScale"):
            raise errors.conflict("OperationInvalidForCurrentState", "The pool's size is set by its autoscale formula: "
                                  "disable autoscale before resizing it.")
        if pool["allocationState"] != "steady":
            raise errors.conflict("PoolBeingResized", "The pool is already resizing; wait until it is steady.")
        pool.update(targetDedicatedNodes=dedicated, targetLowPriorityNodes=low, resizeTimeout=format_duration(timeout),
                    allocationState="resizing", allocationStateTransitionTime=now_iso(), _deallocation=option)
        self.state.touch(pool)
        self.state.save_pool(pool)

    def stop_resize(self, pool_id: str) -> None:
        pool = self._active_pool(pool_id)
        if pool["allocationState"] != "resizing":
            return
        nodes = [n for n in self.state.nodes[key_of(pool["id"])].values() if n["state"] != "leavingpool"]
        pool["targetDedicatedNodes"] = sum(1 for n in nodes if n["isDedicated"])
        pool["targetLowPriorityNodes"] = sum(1 for n in nodes if not n["isDedicated"])
        pool["allocationState"], pool["allocationStateTransitionTime"] = "stopping", now_iso()
        self.state.touch(pool)
        self.state.save_pool(pool)

    def update_pool(self, pool_id: str, body, replace: bool) -> None:
        """PATCH (replace=False) changes what is given; updateproperties (replace=True) resets what is not."""
        pool = self._active_pool(pool_id)
        validate.check_object(body, "body")
        changes = {}
        if "startTask" in body or replace:
            changes["startTask"] = validate.start_task(body.get("startTask"), "startTask")
        if "metadata" in body or replace:
            changes["metadata"] = validate.check_list(body.get("metadata"), "metadata")
        if "applicationPackageReferences" in body or replace:
            changes["applicationPackageReferences"] = validate.check_list(body.get("applicationPackageReferences"),
                                                                          "applicationPackageReferences")
        if "targetNodeCommunicationMode" in body:
            changes["targetNodeCommunicationMode"] = body["targetNodeCommunicationMode"]
        for name, value in changes.items():
            if value is None:
                pool.pop(name, None)
            else:
                pool[name] = value
        self.state.touch(pool)
        self.state.save_pool(pool)

    def node_counts(self) -> list[dict]:
        out = []
        for _, pool in sorted(self.state.pools.items()):   # in id order, as the service lists
            counts = {True: Counter(), False: Counter()}
            for node in self.state.nodes.get(key_of(pool["id"]), {}).values():
                counts[node["isDedicated"]][node["state"]] += 1
            row = {"poolId": pool["id"]}
            for dedicated, name in ((True, "dedicated"), (False, "lowPriority")):
                by_state = {s: counts[dedicated][s.lower()] for s in NODE_COUNT_STATES}
                by_state["total"] = sum(counts[dedicated].values())
                row[name] = by_state
            out.append(row)
        return out

    # -- jobs ---------------------------------------------------------------------------------
    def create_job(self, body) -> dict:
        job = validate.job_create(body)
        if key_of(job["id"]) in self.state.jobs:
            raise errors.exists("Job")
        if key_of(job["id"]) in self.state.job_schedules:
            raise errors.conflict("JobScheduleWithSameIdExists", "A job schedule with the specified job id exists. "
                                  "Job and job schedule cannot have the same id.")
        return self.add_job(job)

    def add_auto_pool(self, spec: dict) -> dict:
        """The pool of an autoPoolSpecification, named after its prefix."""
        pool = dict(copy.deepcopy(spec["pool"]), id=f"{spec['autoPoolIdPrefix'] or ''}_{uuid.uuid4()}"[:64].lstrip("_"))
        return self._add_pool(pool)

    def add_job(self, job: dict, pool_id: str | None = None) -> dict:
        """A checked job, made active; an auto-pool job gets `pool_id` if given, a new pool otherwise."""
        now = now_iso()
        job.update(state="active", stateTransitionTime=now, creationTime=now, _seq=self.state.next_seq(),
                   executionInfo={"startTime": now})
        if "poolId" in job["poolInfo"]:
            job["executionInfo"]["poolId"] = job["poolInfo"]["poolId"]
        else:
            pool_id = pool_id or self.add_auto_pool(job["poolInfo"]["autoPoolSpecification"])["id"]
            job["executionInfo"]["poolId"] = pool_id
        self.state.touch(job)
        self.state.jobs[key_of(job["id"])] = job
        self.state.save_job(job)
        return job

    def _job_accepting_changes(self, job: dict) -> None:
        if job["state"] == "deleting":
            raise errors.conflict("JobBeingDeleted", "The specified job is being deleted.")
        if job["state"] == "terminating":
            raise errors.conflict("JobBeingTerminated", "The specified job is being terminated.")
        if job["state"] == "completed":
            raise errors.conflict("JobCompleted", "The specified job has already completed.")

    def update_job(self, job_id: str, body, replace: bool) -> dict:
        """PATCH (replace=False) changes what is given; PUT (replace=True) resets what is not given."""
        job = self.job(job_id)
        validate.check_object(body, "body")
        self._job_accepting_changes(job)
        changes = {}
        if "priority" in body or replace:
            changes["priority"] = validate.check_int(body.get("priority", 0), "priority", -1000, 1000)
        if "maxParallelTasks" in body or replace:
            changes["maxParallelTasks"] = validate.check_int(body.get("maxParallelTasks", -1), "maxParallelTasks",
                                                             -1, 1 << 30)
        if "allowTaskPreemption" in body:
            changes["allowTaskPreemption"] = validate.check_bool(body["allowTaskPreemption"], "allowTaskPreemption")
        if "constraints" in body or replace:
            constraints = validate.check_object(body.get("constraints") or {}, "constraints")
            wall_clock = UNLIMITED if replace else job["constraints"]["maxWallClockTime"]
            if constraints.get("maxWallClockTime"):
                wall_clock = format_duration(validate.check_duration(constraints["maxWallClockTime"],
                                                                     "constraints.maxWallClockTime"))
            changes["constraints"] = {
                "maxWallClockTime": wall_clock,
                "maxTaskRetryCount": validate.check_int(constraints.get("maxTaskRetryCount", 0),
                                                        "constraints.maxTaskRetryCount", -1, 100)}
        if "onAllTasksComplete" in body or replace:
            value = validate.check_enum(body.get("onAllTasksComplete", "noaction"), "onAllTasksComplete",
                                        ("noaction", "terminatejob"))
            if job["onAllTasksComplete"] == "terminatejob" and value == "noaction":
                raise errors.invalid_property("onAllTasksComplete", value,
                                              "A job set to terminatejob cannot go back to noaction.")
            changes["onAllTasksComplete"] = value
        if "onTaskFailure" in body:
            changes["onTaskFailure"] = validate.check_enum(body["onTaskFailure"], "onTaskFailure",
                                                           ("noaction", "performexitoptionsjobaction"))
        if "metadata" in body or replace:
            changes["metadata"] = validate.check_list(body.get("metadata"), "metadata")
        if "poolInfo" in body:
            changes["poolInfo"] = self._pool_info_change(job, body["poolInfo"])
        job.update(changes)
        if "poolId" in changes.get("poolInfo", {}):
            job["executionInfo"]["poolId"] = changes["poolInfo"]["poolId"]
        self.state.touch(job)
        self.state.save_job(job)
        return job

    @staticmethod
    def _pool_info_change(job: dict, value) -> dict:
        """A job's new poolInfo. Of an autoPoolSpecification only keepAlive may change, and only with the job
        lifetime, as the service documents; the rest must be the job's own (what a client read back and
        sends again with replace_job)."""
        pool_info = validate.check_object(value, "poolInfo")
        if pool_info.get("poolId"):
            return {"poolId": validate.check_id(pool_info["poolId"], "poolInfo.poolId")}
        checked = validate.job_create({"id": job["id"].replace(":", "_"), "poolInfo": pool_info})["poolInfo"]
        current = job["poolInfo"].get("autoPoolSpecification")
        if current is None:
            raise errors.invalid_property("poolInfo.autoPoolSpecification", "",
                                          "A job that runs on a pool cannot be moved to an auto pool.")
        wanted = checked["autoPoolSpecification"]
        if (wanted["poolLifetimeOption"], wanted["autoPoolIdPrefix"]) != \
                (current["poolLifetimeOption"], current["autoPoolIdPrefix"]) or \
                wanted["pool"].get("vmSize") != current["pool"].get("vmSize"):
            raise errors.invalid_property("poolInfo.autoPoolSpecification", "",
                                          "Only keepAlive of a job's autoPoolSpecification can be changed.")
        if wanted["keepAlive"] != current["keepAlive"] and current["poolLifetimeOption"] != "job":
            raise errors.invalid_property("poolInfo.autoPoolSpecification.keepAlive", wanted["keepAlive"],
                                          "keepAlive can be changed only for a poolLifetimeOption of job.")
        return {"autoPoolSpecification": dict(current, keepAlive=wanted["keepAlive"])}

    def delete_job(self, job_id: str) -> None:
        job = self.job(job_id)
        if job["state"] == "deleting":
            return
        job["previousState"], job["previousStateTransitionTime"] = job["state"], job["stateTransitionTime"]
        job["state"], job["stateTransitionTime"] = "deleting", now_iso()
        # A completed (or terminating) job has already started its release tasks; an active one runs them now.
        job["_release_started"] = bool(job.get("_release_started")) or job["previousState"] == "completed"
        self.state.touch(job)
        self.state.save_job(job)

    def terminate_job(self, job_id: str, body) -> None:
        job = self.job(job_id)
        reason = "UserTerminate"
        if body:
            validate.check_object(body, "body")
            if body.get("terminateReason"):
                reason = validate.check_string(body["terminateReason"], "terminateReason", 64)
        if job["state"] == "completed":
            raise errors.conflict("JobCompleted", "The specified job has already completed.")
        if job["state"] == "deleting":
            raise errors.conflict("JobBeingDeleted", "The specified job is being deleted.")
        if job["state"] == "terminating":
            return
        self.scheduler.terminate_job(job, reason)

    def disable_job(self, job_id: str, body) -> None:
        job = self.job(job_id)
        validate.check_object(body, "body")
        option = validate.check_enum(validate.require(body, "disableTasks"), "disableTasks",
                                     ("requeue", "terminate", "wait"))
        if job["state"] != "active":
            raise errors.conflict("JobNotActive", "Only an active job can be disabled.")
        self.scheduler.disable_job(key_of(job["id"]), job, option)

    def enable_job(self, job_id: str) -> None:
        job = self.job(job_id)
        if job["state"] != "disabled":
            raise errors.conflict("JobNotDisabled" if job["state"] == "active" else "JobNotActive",
                                  "Only a disabled job can be enabled.")
        job["previousState"], job["previousStateTransitionTime"] = job["state"], job["stateTransitionTime"]
        job["state"], job["stateTransitionTime"] = "active", now_iso()
        self.state.touch(job)
        self.state.save_job(job)

    def task_counts(self, job_id: str) -> dict:
        job = self.job(job_id)
        counts = self.state.task_counts[key_of(job["id"])]

        def block(prefix: str) -> dict:
            return {"active": counts[prefix + "active"],
                    "running": counts[prefix + "running"] + counts[prefix + "preparing"],
                    "completed": counts[prefix + "completed"], "succeeded": counts[prefix + "success"],
                    "failed": counts[prefix + "failure"]}
        return {"taskCounts": block(""), "taskSlotCounts": block("slots:")}

    def prep_release_status(self, job_id: str) -> list[dict]:
        job = self.job(job_id)
        if not job.get("jobPreparationTask"):
            raise errors.conflict("JobPreparationTaskNotSpecified", "The job does not have a job preparation task.")
        return list((job.get("_prep") or {}).values())

    # -- tasks --------------------------------------------------------------------------------
    def _new_task(self, job: dict, task: dict) -> None:
        now = now_iso()
        task.update(state="active", stateTransitionTime=now, creationTime=now,
                    executionInfo={"retryCount": 0, "requeueCount": 0})
        self.state.touch(task)
        self.state.add_task(key_of(job["id"]), task)

    def create_task(self, job_id: str, body) -> dict:
        job = self.job(job_id)
        self._job_accepting_changes(job)
        task = validate.task_create(body, job)
        if key_of(task["id"]) in self.state.tasks[key_of(job["id"])]:
            raise errors.exists("Task")
        self._new_task(job, task)
        return task

    def add_task_collection(self, job_id: str, body, body_size: int) -> list[dict]:
        job = self.job(job_id)
        validate.check_object(body, "body")
        values = body.get("value")
        if not isinstance(values, list):
            raise errors.missing_property("value")
        if len(values) > MAX_TASKS_PER_COLLECTION or body_size > MAX_COLLECTION_BYTES:
            raise errors.BatchError(413, "RequestBodyTooLarge",
                                    f"The request body is too large: at most {MAX_TASKS_PER_COLLECTION} tasks and "
                                    f"{MAX_COLLECTION_BYTES} bytes per addtaskcollection call.",
                                    {"MaxTasks": MAX_TASKS_PER_COLLECTION, "MaxBytes": MAX_COLLECTION_BYTES})
        self._job_accepting_changes(job)
        results, accepted = [], {}
        existing = self.state.tasks[key_of(job["id"])]
        for index, item in enumerate(values):
            task_id = item.get("id") if isinstance(item, dict) else None
            try:
                task = validate.task_create(item, job)
                if key_of(task["id"]) in existing or key_of(task["id"]) in accepted:
                    raise errors.exists("Task")
            except errors.BatchError as exc:
                results.append({"status": wire.add_task_status("clienterror"),
                                "taskId": task_id if isinstance(task_id, str) else str(index),
                                "error": exc.task_result_error()})
                continue
            accepted[key_of(task["id"])] = task
            results.append(task)   # answered below, once it is added
        # The service adds a collection's tasks as one set (its results come back in no particular order);
        # localbatch adds them in id order, which is the order a job's tasks are then scheduled in.
        for key in sorted(accepted):
            self._new_task(job, accepted[key])
        return [self._added(job, r) if r is accepted.get(key_of(r.get("id") or "")) else r for r in results]

    def _added(self, job: dict, task: dict) -> dict:
        return {"status": wire.add_task_status("success"), "taskId": task["id"], "eTag": task["eTag"],
                "lastModified": task["lastModified"],
                "location": f"{self.account_url}/jobs/{job['id']}/tasks/{task['id']}"}

    def replace_task(self, job_id: str, task_id: str, body) -> dict:
        task = self.task(job_id, task_id)
        validate.check_object(body, "body")
        job = self.job(job_id)
        retries = (job.get("constraints") or {}).get("maxTaskRetryCount", 0)
        constraints = validate.task_constraints(body.get("constraints"), "constraints", retries)
        if task["state"] == "completed":
            raise errors.conflict("TaskCompleted", "The specified task has already completed.")
        task["constraints"] = constraints
        self.state.touch(task)
        self.state.save_task(key_of(job["id"]), task)
        return task

    def terminate_task(self, job_id: str, task_id: str) -> None:
        task = self.task(job_id, task_id)
        job = self.job(job_id)
        if task["state"] == "completed":
            raise errors.conflict("TaskCompleted", "The specified task has already completed.")
        self.scheduler.terminate_task(key_of(job["id"]), task)

    def reactivate_task(self, job_id: str, task_id: str) -> None:
        task = self.task(job_id, task_id)
        job = self.job(job_id)
        if job["state"] in ("completed", "terminating", "deleting"):
            self._job_accepting_changes(job)
        if task["state"] != "completed":
            raise errors.conflict("TaskNotCompleted", "Only a completed task can be reactivated.")
        if (task.get("executionInfo") or {}).get("result") == "success":
            raise errors.conflict("TaskSucceeded", "A task that succeeded cannot be reactivated.")
        task.pop("_dependency", None)
        task.pop("_cleanup_at", None)
        self.state.update_task(task, "active", retryCount=0, exitCode=None, failureInfo=None, result=None,
                               endTime=None)

    def delete_task(self, job_id: str, task_id: str) -> None:
        task = self.task(job_id, task_id)
        job_key = key_of(self.job(job_id)["id"])
        self.scheduler.kill_task(job_key, task)
        self.state.remove_task(job_key, task)
        if task.get("_dir"):
            shutil.rmtree(task["_dir"], ignore_errors=True)

    # -- files --------------------------------------------------------------------------------
    def task_root(self, job_id: str, task_id: str) -> str:
        """The task's directory on its node; errors as Batch gives them when there is none."""
        task = self.task(job_id, task_id)
        if not task.get("_dir"):
            raise errors.conflict("TaskFilesUnavailable", "The task has not run on a node yet, so it has no files.")
        if task.get("_files_cleaned") or not os.path.isdir(task["_dir"]):
            raise errors.conflict("TaskFilesCleanedup", "The task's files were removed after its retention time.")
        return task["_dir"]

    def node_root(self, pool_id: str, node_id: str) -> str:
        node = self.node(pool_id, node_id)
        return self.scheduler.nodes.node_dir(self.pool(pool_id)["id"], node["id"])
