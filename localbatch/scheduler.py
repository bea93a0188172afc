"""The scheduler: decides which task runs on which node, runs it, and records how it ended.

One thread (`_loop`) makes every scheduling decision under the account lock; each running task,
start task, preparation and release task gets a worker thread that runs the process without the
lock and takes it only to record the outcome."""

import os
import shutil
import threading
import time
import traceback

from . import transfer
from .nodes import Nodes
from .preparation import JobPreparation
from .processes import Attempt, Workers, failure, kill_stale, record_pid, run_process, settings
from .state import AccountState, key_of
from .timeutil import iso_to_epoch, now_iso, parse_duration

IDLE_TICK = 0.5   # the longest the scheduler sleeps without being woken (timers: wall clock, retention)


class Scheduler:
    def __init__(self, state: AccountState, data_dir: str, account_name: str, account_url: str,
                 node_start_seconds: float = 0.5):
        self.state = state
        self.account_url = account_url
        self.workers = Workers()
        self.nodes = Nodes(state, self.workers, data_dir, account_name, account_url, node_start_seconds)
        self.preparation = JobPreparation(state, self.workers, self.nodes, account_url)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._cleanup_due = 0.0
        self._next_due = 0.0
        # (creationTime, maxWallClockTime) → when the job's wall clock runs out, in epoch seconds: parsed once, not
        # for every job on every step (each step holds the lock the requests wait for).
        self._deadlines: dict[tuple[str, str], float] = {}
        state.listeners.append(self._wake.set)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        with self.state.tx():
            self._recover()
        self._thread = threading.Thread(target=self._loop, name="localbatch-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)
        self.workers.kill_all("shutdown")

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(timeout=self._next_timeout())
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                with self.state.tx():
                    self._step()
            except Exception:  # noqa: BLE001 - the scheduler must outlive one bad step; the error is printed
                traceback.print_exc()
                time.sleep(0.2)
            finally:
                # Whatever the step committed as running must get its worker, even if the step then failed.
                self.workers.start_spawned()

    def _next_timeout(self) -> float:
        # Sleep until the next node transition is due (nodes start in 50 ms in tests), at most IDLE_TICK.
        return min(IDLE_TICK, max(0.005, self._next_due - time.time()))

    def _recover(self) -> None:
        """After a restart (even kill -9): requeue what was running, as Batch does when a node is lost."""
        for tasks in self.state.tasks.values():
            for task in tasks.values():
                if task["state"] in ("running", "preparing"):
                    kill_stale(task)
                    self._requeue(task)
        self.nodes.recover()
        for job in self.state.jobs.values():
            self.preparation.recover(job)
            self.state.save_job(job)

    # -- the scheduling step (always under the lock) ------------------------------------------
    def _step(self) -> None:
        now = time.time()
        self._next_due = now + IDLE_TICK
        for pool_key, pool in list(self.state.pools.items()):
            if pool["state"] == "deleting":
                self.nodes.delete_pool(pool_key, pool)
            else:
                self._next_due = self.nodes.advance(pool_key, pool, now, self._next_due)
                self.nodes.resize(pool_key, pool)
        for job_key, job in sorted(self.state.jobs.items(), key=lambda kv: (-kv[1]["priority"], kv[1]["_seq"])):
            if job["state"] == "active":
                self._check_job_limits(job_key, job)
            if job["state"] == "active":
                self._schedule_job(job_key, job)
            elif job["state"] in ("terminating", "deleting"):
                self._finish_job(job_key, job)
        if now >= self._cleanup_due:
            self._cleanup_due = now + 5
            self._clean_retained(now)

    # -- jobs ---------------------------------------------------------------------------------
    def pool_of(self, job: dict) -> tuple[str, dict] | tuple[None, None]:
        pool_id = (job.get("executionInfo") or {}).get("poolId") or job["poolInfo"].get("poolId")
        pool = self.state.pools.get(key_of(pool_id)) if pool_id else None
        return (key_of(pool_id), pool) if pool else (None, None)

    def _check_job_limits(self, job_key: str, job: dict) -> None:
        counts = self.state.task_counts[job_key]
        unfinished = counts["active"] or counts["preparing"] or counts["running"]
        if job["onAllTasksComplete"] == "terminatejob" and not unfinished:
            self.terminate_job(job, "AllTasksComplete")
            return
        limit = job["constraints"].get("maxWallClockTime")
        if not limit:
            return
        deadline = self._deadlines.get((job["creationTime"], limit))
        if deadline is None:
            if len(self._deadlines) > 100_000:
                self._deadlines.clear()
            deadline = self._deadlines[(job["creationTime"], limit)] = (
                iso_to_epoch(job["creationTime"]) + parse_duration(limit))
        if time.time() > deadline:
            self.terminate_job(job, "MaxWallClockTimeExpiry")

    def terminate_job(self, job: dict, reason: str) -> None:
        job["state"], job["previousState"] = "terminating", job["state"]
        job["previousStateTransitionTime"], job["stateTransitionTime"] = job["stateTransitionTime"], now_iso()
        job.setdefault("executionInfo", {})["terminateReason"] = reason
        self.state.touch(job)
        self.state.save_job(job)

    def disable_job(self, job_key: str, job: dict, what_to_do: str) -> None:
        job["previousState"], job["previousStateTransitionTime"] = job["state"], job["stateTransitionTime"]
        job["state"], job["stateTransitionTime"] = "disabled", now_iso()
        self.state.touch(job)
        self.state.save_job(job)
        for (attempt_job, _), attempt in list(self.workers.tasks.items()):
            if attempt_job == job_key and what_to_do in ("requeue", "terminate"):
                attempt.kill("requeue" if what_to_do == "requeue" else "user")

    def _finish_job(self, job_key: str, job: dict) -> None:
        """Terminating or deleting: stop running tasks, run release tasks, then complete or remove."""
        running = False
        for task_key, attempt in list(self.workers.tasks.items()):
            if task_key[0] == job_key:
                attempt.kill("job")
                running = True
        self.preparation.kill(job_key)
        if running:
            return
        counts = self.state.task_counts[job_key]
        if counts["running"] or counts["preparing"]:
            return
        if self.preparation.start_release(job_key, job) or self.preparation.release_running(job):
            return
        auto_pool = (job["poolInfo"].get("autoPoolSpecification") or {})
        if auto_pool and auto_pool["poolLifetimeOption"] == "job" and not auto_pool.get("keepAlive"):
            pool = self.state.pools.get(key_of((job.get("executionInfo") or {}).get("poolId", "")))
            if pool and pool["state"] == "active":
                pool["state"], pool["stateTransitionTime"] = "deleting", now_iso()
                self.state.touch(pool)
                self.state.save_pool(pool)
        if job["state"] == "deleting":
            self.nodes.remove_job_folders(job["id"])
            self.state.remove_job(job_key)
            return
        job["previousState"], job["previousStateTransitionTime"] = job["state"], job["stateTransitionTime"]
        job["state"], job["stateTransitionTime"] = "completed", now_iso()
        job["executionInfo"]["endTime"] = job["stateTransitionTime"]
        self.state.touch(job)
        self.state.save_job(job)

    # -- choosing a node ----------------------------------------------------------------------
    def _schedule_job(self, job_key: str, job: dict) -> None:
        queue = self.state.active.get(job_key)
        if not queue:
            return
        pool_key, pool = self.pool_of(job)
        if not pool or pool["state"] != "active":
            return
        excluded = set(job.get("_prep_failed_nodes", []))
        nodes = [n for n in self.state.nodes[pool_key].values()
                 if n["state"] in ("idle", "running") and n["schedulingState"] == "enabled" and n["id"] not in excluded]
        slots_per_node = pool["taskSlotsPerNode"]
        if not any(n["_slots"] < slots_per_node for n in nodes):
            return
        budget = None
        if job.get("maxParallelTasks", -1) >= 0:
            counts = self.state.task_counts[job_key]
            budget = job["maxParallelTasks"] - counts["running"] - counts["preparing"]
        pack = pool["taskSchedulingPolicy"]["nodeFillType"] == "pack"
        tasks = self.state.tasks[job_key]
        for task_key in list(queue):
            if budget is not None and budget <= 0:
                return
            task = tasks[task_key]
            need = task["requiredSlots"]
            fitting = [n for n in nodes if slots_per_node - n["_slots"] >= need]
            if not fitting:
                if not any(n["_slots"] < slots_per_node for n in nodes):
                    return
                continue
            if task.get("dependsOn") and not self._dependencies_met(job_key, task):
                continue
            node = (max if pack else min)(fitting, key=lambda n: (n["_slots"], -n["_seq"] if pack else n["_seq"]))
            self._launch_task(job_key, job, pool, node, task)
            if budget is not None:
                budget -= 1

    def _dependencies_met(self, job_key: str, task: dict) -> bool:
        tasks = self.state.tasks[job_key]
        deps = task["dependsOn"]
        for parent_id in deps.get("taskIds", []):
            parent = tasks.get(key_of(parent_id))
            if not parent or parent["state"] != "completed" or parent.get("_dependency") != "satisfy":
                return False
        for span in deps.get("taskIdRanges", []):
            for parent in tasks.values():
                try:
                    number = int(parent["id"])
                except ValueError:
                    continue
                if span["start"] <= number <= span["end"] and (
                        parent["state"] != "completed" or parent.get("_dependency") != "satisfy"):
                    return False
        return True

    # -- running a task -----------------------------------------------------------------------
    def _launch_task(self, job_key: str, job: dict, pool: dict, node: dict, task: dict) -> None:
        pool_key = key_of(pool["id"])
        node_dir = self.nodes.node_dir(pool["id"], node["id"])
        task_dir = self.nodes.task_dir(node_dir, job["id"], task["id"])
        needs_prep = self.preparation.needed(job, node)
        self.nodes.claim_slots(pool_key, node, task["requiredSlots"])
        task["nodeInfo"] = {
            "affinityId": node["affinityId"], "nodeUrl": f"{self.account_url}/pools/{pool['id']}/nodes/{node['id']}",
            "poolId": pool["id"], "nodeId": node["id"],
            "taskRootDirectory": self.nodes.task_root(job["id"], task["id"]),
            "taskRootDirectoryUrl": f"{self.account_url}/pools/{pool['id']}/nodes/{node['id']}/files/"
                                    f"{self.nodes.task_root(job['id'], task['id'])}"}
        task["_dir"] = task_dir
        task.pop("_files_cleaned", None)
        # The folder and empty output files exist from the moment the task shows as assigned, as on
        # Batch, so a client that sees it running can always open stdout.txt.
        os.makedirs(os.path.join(task_dir, "wd"), exist_ok=True)
        for name in ("stdout.txt", "stderr.txt"):
            open(os.path.join(task_dir, name), "ab").close()
        self.state.update_task(task, "preparing" if needs_prep else "running", startTime=now_iso(),
                               endTime=None, exitCode=None, failureInfo=None, result=None)
        attempt = Attempt()
        self.workers.tasks[(job_key, key_of(task["id"]))] = attempt
        self.workers.spawn(self._run_task, (attempt, job_key, job, pool, node, task, needs_prep), f"task-{task['id']}")

    def _run_task(self, attempt: Attempt, job_key: str, job: dict, pool: dict, node: dict, task: dict,
                  needs_prep: bool) -> None:
        """A task's worker thread: preparation if due, the process, output files, then the outcome."""
        pool_key = key_of(pool["id"])
        try:
            if needs_prep and not self.preparation.ensure(job_key, job, pool, node):
                with self.state.tx():
                    self.workers.tasks.pop((job_key, key_of(task["id"])), None)
                    self.nodes.release_slots(pool_key, node, task["requiredSlots"])
                    if self._task_is_current(job_key, task):
                        task.pop("nodeInfo", None)
                        self.state.update_task(task, "active")
                return
            if needs_prep:
                with self.state.tx():
                    if task["state"] == "preparing":
                        # startTime is when the task itself starts running, after the preparation task.
                        self.state.update_task(task, "running", startTime=now_iso())
            task_dir = task["_dir"]
            extra = settings(job.get("commonEnvironmentSettings"), task.get("environmentSettings"))
            extra.update({"AZ_BATCH_JOB_ID": job["id"], "AZ_BATCH_TASK_ID": task["id"]})
            extra.update(self.preparation.environment(job, pool, node))
            env = self.nodes.environment(pool, node, task_dir, extra, task.get("userIdentity"))
            limit = parse_duration(task["constraints"]["maxWallClockTime"])
            wall_clock = None if limit > 10 ** 9 else limit
            started = threading.Thread(target=self._note_pid_later, args=(attempt, job_key, task), daemon=True)
            started.start()
            code, failed, preprocessing = run_process(attempt, task["commandLine"], task_dir, env, wall_clock,
                                                      task.get("resourceFiles"))
            succeeded = code == 0 and failed is None and attempt.ended_by is None
            if task.get("outputFiles") and not preprocessing and attempt.ended_by not in ("requeue", "shutdown"):
                try:
                    transfer.upload_output_files(task["outputFiles"], os.path.join(task_dir, "wd"), succeeded, task_dir)
                except transfer.TransferError as exc:
                    failed = failure(exc.code, exc.message)
                    succeeded = False
                except Exception as exc:  # noqa: BLE001 - a broken URL must fail the task, not the worker
                    failed = failure("FileUploadFailed", f"Uploading output files failed: {exc.__class__.__name__}.")
                    succeeded = False
            with self.state.tx():
                self.workers.tasks.pop((job_key, key_of(task["id"])), None)
                self.nodes.release_slots(pool_key, node, task["requiredSlots"])
                if attempt.ended_by == "shutdown":
                    return
                if self._task_is_current(job_key, task):
                    self._finish_task(job_key, job, task, attempt, code, failed, preprocessing, succeeded)
                self.nodes.task_ran(pool_key, node, job, task, succeeded)
        except Exception:  # noqa: BLE001 - never leave a task running forever because of a bug
            traceback.print_exc()
            with self.state.tx():
                self.workers.tasks.pop((job_key, key_of(task["id"])), None)
                self.nodes.release_slots(pool_key, node, task["requiredSlots"])
                if self._task_is_current(job_key, task) and task["state"] != "completed":
                    self.state.update_task(task, "completed", endTime=now_iso(), result="failure",
                                           failureInfo=failure("InternalError", "localbatch failed to run the task.",
                                                               "servererror"))

    def _note_pid_later(self, attempt: Attempt, job_key: str, task: dict) -> None:
        # The pid is recorded so a restarted localbatch can kill orphans; best effort, off the hot path.
        for _ in range(50):
            if attempt.process or attempt.ended_by:
                break
            time.sleep(0.01)
        if attempt.process and attempt.process.poll() is None:
            with self.state.tx():
                if self._task_is_current(job_key, task) and task["state"] in ("running", "preparing"):
                    record_pid(task, attempt)
                    self.state.save_task(job_key, task)

    def _task_is_current(self, job_key: str, task: dict) -> bool:
        return self.state.tasks.get(job_key, {}).get(key_of(task["id"])) is task

    # -- how a task ended ---------------------------------------------------------------------
    def _finish_task(self, job_key: str, job: dict, task: dict, attempt: Attempt, code: int | None,
                     failed: dict | None, preprocessing: bool, succeeded: bool) -> None:
        task.pop("_pid", None)
        task.pop("_pid_start", None)
        now = now_iso()
        if attempt.ended_by == "requeue":
            self._requeue(task)
            return
        if attempt.ended_by == "user":
            failed = failure("TaskEnded", "Task Was Ended by User Request")
        elif attempt.ended_by == "job":
            failed = failure("TaskEnded", "Task Was Ended because its Job was Terminated")
        elif attempt.ended_by == "walltime":
            failed = failure("MaxWallClockTimeExceeded",
                             "The task ran longer than its maxWallClockTime constraint and was terminated.")
        elif failed is None and code != 0:
            failed = failure("FailureExitCode", "The task exited with an exit code representing a failure",
                             ) | {"details": [{"name": "Message", "value": f"The task exited with exit code {code}"}]}
        info = task.get("executionInfo") or {}
        retries = task["constraints"]["maxTaskRetryCount"]
        can_retry = (attempt.ended_by is None and not preprocessing and failed is not None
                     and failed["code"] == "FailureExitCode" and (retries == -1 or info.get("retryCount", 0) < retries)
                     and job["state"] == "active")
        if can_retry:
            self.state.update_task(task, "active", retryCount=info.get("retryCount", 0) + 1, lastRetryTime=now)
            return
        self.state.update_task(task, "completed", endTime=now, exitCode=code, failureInfo=failed,
                               result="success" if succeeded else "failure")
        options = self._exit_options(task, code, failed, preprocessing)
        task["_dependency"] = options.get("dependencyAction") or ("satisfy" if succeeded else "block")
        retention = parse_duration(task["constraints"]["retentionTime"])
        task["_cleanup_at"] = time.time() + retention
        self.state.save_task(job_key, task)
        if not succeeded and job["onTaskFailure"] == "performexitoptionsjobaction" and job["state"] == "active":
            action = options.get("jobAction") or "terminate"
            if action == "terminate":
                self.terminate_job(job, "TaskFailed")
            elif action == "disable":
                self.disable_job(job_key, job, "requeue")

    @staticmethod
    def _exit_options(task: dict, code: int | None, failed: dict | None, preprocessing: bool) -> dict:
        conditions = task.get("exitConditions") or {}
        if preprocessing and "preProcessingError" in conditions:
            return conditions["preProcessingError"]
        if failed and failed["code"].startswith("FileUpload") and "fileUploadError" in conditions:
            return conditions["fileUploadError"]
        if code is not None:
            for item in conditions.get("exitCodes", []):
                if item["code"] == code:
                    return item["exitOptions"]
            for item in conditions.get("exitCodeRanges", []):
                if item["start"] <= code <= item["end"]:
                    return item["exitOptions"]
        if code == 0 and failed is None:
            return {}
        return conditions.get("default", {})

    def _requeue(self, task: dict) -> None:
        info = task.get("executionInfo") or {}
        task.pop("nodeInfo", None)
        self.state.update_task(task, "active", requeueCount=info.get("requeueCount", 0) + 1, lastRequeueTime=now_iso())

    # -- requests that end a task -------------------------------------------------------------
    def terminate_task(self, job_key: str, task: dict) -> None:
        attempt = self.workers.tasks.get((job_key, key_of(task["id"])))
        if attempt:
            attempt.kill("user")
        else:
            self.state.update_task(task, "completed", endTime=now_iso(), result="failure",
                                   failureInfo=failure("TaskEnded", "Task Was Ended by User Request"))
            task["_dependency"] = "block"

    def kill_task(self, job_key: str, task: dict) -> None:
        attempt = self.workers.tasks.pop((job_key, key_of(task["id"])), None)
        if attempt:
            attempt.kill("deleted")

    # -- retention ------------------------------------------------------------------------------
    def _clean_retained(self, now: float) -> None:
        for job_key, tasks in self.state.tasks.items():
            for task in tasks.values():
                due = task.get("_cleanup_at")
                if due and due <= now and task.get("_dir") and not task.get("_files_cleaned"):
                    shutil.rmtree(task["_dir"], ignore_errors=True)
                    task["_files_cleaned"] = True
                    self.state.save_task(job_key, task)
