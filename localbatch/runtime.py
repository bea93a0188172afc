"""The scheduler: simulated nodes with Batch's folder layout, and tasks run as local process groups.

One thread (`_loop`) makes every scheduling decision under the account lock; each running task,
start task, preparation and release task gets a worker thread that runs the process without the
lock and takes it only to record the outcome."""

import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
import traceback
import zlib

from . import transfer
from .state import AccountState, key_of
from .timeutil import iso_to_epoch, now_iso, parse_duration, utcnow

KILLED_EXIT_CODE = 128 + signal.SIGKILL   # what a shell reports for a process killed with SIGKILL
RECENT_TASKS_KEPT = 10
NODE_REMOVAL_SECONDS = 0.2
IDLE_TICK = 0.5   # the longest the scheduler sleeps without being woken (timers: wall clock, retention)


def _failure(code: str, message: str, category: str = "usererror") -> dict:
    return {"category": category, "code": code, "message": message}


def _process_start_time(pid: int) -> str | None:
    """The kernel's start time of a process: with the pid it identifies one process for sure."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class Attempt:
    """One run of one process (a task, or a start/preparation/release task)."""

    def __init__(self):
        self.process: subprocess.Popen | None = None
        self.ended_by: str | None = None     # "user", "job", "requeue", "walltime"
        self.lock = threading.Lock()

    def kill(self, reason: str) -> None:
        with self.lock:
            if self.ended_by is None:
                self.ended_by = reason
            if self.process and self.process.poll() is None:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


class Runtime:
    def __init__(self, state: AccountState, data_dir: str, account_name: str, account_url: str,
                 node_start_seconds: float = 0.5):
        self.state = state
        self.nodes_root = os.path.join(data_dir, "nodes")
        self.account_name = account_name
        self.account_url = account_url
        self.node_start_seconds = node_start_seconds
        self.attempts: dict[tuple[str, str], Attempt] = {}     # (job key, task key) -> running attempt
        self.node_attempts: dict[tuple[str, str], Attempt] = {}  # (pool key, node id) -> start task attempt
        # (job key, node id, "prep" | "release") -> running preparation or release attempt
        self.job_task_attempts: dict[tuple[str, str, str], Attempt] = {}
        self.prep_locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._cleanup_due = 0.0
        self._spawned: list[threading.Thread] = []
        self._next_due = 0.0
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
        for attempt in (list(self.attempts.values()) + list(self.node_attempts.values())
                        + list(self.job_task_attempts.values())):
            attempt.kill("shutdown")

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
                self._start_spawned()

    def _spawn(self, target, args: tuple, name: str) -> None:
        """Queue a worker thread; it starts after the step's transaction, so that starting threads
        (which waits for each to run) does not hold the account lock."""
        self._spawned.append(threading.Thread(target=target, args=args, name=name, daemon=True))

    def _start_spawned(self) -> None:
        spawned, self._spawned = self._spawned, []
        for thread in spawned:
            thread.start()

    def _next_timeout(self) -> float:
        # Sleep until the next node transition is due (nodes start in 50 ms in tests), at most IDLE_TICK.
        return min(IDLE_TICK, max(0.005, self._next_due - time.time()))

    def _recover(self) -> None:
        """After a restart (even kill -9): requeue what was running, as Batch does when a node is lost."""
        for job_key, tasks in self.state.tasks.items():
            for task in tasks.values():
                if task["state"] in ("running", "preparing"):
                    self._kill_stale(task)
                    self._requeue(task)
        for pool_key, nodes in self.state.nodes.items():
            for node in nodes.values():
                self._kill_stale(node)
                node["runningTasksCount"] = node["runningTaskSlotsCount"] = 0
                node["_slots"] = 0
                if node["state"] in ("running", "idle"):
                    self._set_node_state(pool_key, node, "idle")
                elif node["state"] in ("creating", "starting", "waitingforstarttask"):
                    node["_next_at"] = time.time()
                    self._set_node_state(pool_key, node, "starting")
        for job in self.state.jobs.values():
            for status in (job.get("_prep") or {}).values():
                for kind in ("jobPreparationTaskExecutionInfo", "jobReleaseTaskExecutionInfo"):
                    if (status.get(kind) or {}).get("state") == "running":
                        status.pop(kind)
            job.pop("_release_started", None)
            self.state.save_job(job)

    def _kill_stale(self, entity: dict) -> None:
        pid, started = entity.pop("_pid", None), entity.pop("_pid_start", None)
        if pid and started and _process_start_time(pid) == started:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    # -- paths --------------------------------------------------------------------------------
    def node_dir(self, pool_id: str, node_id: str) -> str:
        return os.path.join(self.nodes_root, key_of(pool_id), node_id)

    @staticmethod
    def task_dir(node_dir: str, job_id: str, task_id: str) -> str:
        return os.path.join(node_dir, "workitems", job_id, "job-1", task_id)

    # -- the scheduling step (always under the lock) ------------------------------------------
    def _step(self) -> None:
        now = time.time()
        self._next_due = now + IDLE_TICK
        for pool_key, pool in list(self.state.pools.items()):
            if pool["state"] == "deleting":
                self._delete_pool(pool_key, pool)
            else:
                self._advance_nodes(pool_key, pool, now)
                self._resize(pool_key, pool, now)
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

    # -- nodes --------------------------------------------------------------------------------
    def _set_node_state(self, pool_key: str, node: dict, state: str) -> None:
        if node["state"] != state:
            node["state"] = state
            node["stateTransitionTime"] = now_iso()
        self.state.save_node(pool_key, node)

    def _new_node(self, pool_key: str, pool: dict, dedicated: bool) -> dict:
        index = pool.setdefault("_node_serial", 0)
        pool["_node_serial"] = index + 1
        stamp = utcnow().strftime("%Y%m%dt%H%M%Sz")
        node_id = f"tvm-{zlib.crc32(pool['id'].encode()):010d}_{index + 1}-{stamp}"
        now = now_iso()
        node = {
            "id": node_id, "state": "creating", "schedulingState": "enabled", "stateTransitionTime": now,
            "allocationTime": now, "lastBootTime": now, "ipAddress": "127.0.0.1", "affinityId": f"TVM:{node_id}",
            "vmSize": pool["vmSize"], "totalTasksRun": 0, "totalTasksSucceeded": 0, "runningTasksCount": 0,
            "runningTaskSlotsCount": 0, "recentTasks": [], "isDedicated": dedicated, "errors": [],
            "nodeAgentInfo": {"version": "localbatch", "lastUpdateTime": now},
            "_pool": pool_key, "_seq": self.state.next_seq(), "_slots": 0, "_next_at": time.time() + self.node_start_seconds / 2,
        }
        if pool.get("startTask"):
            node["startTask"] = pool["startTask"]
        directory = self.node_dir(pool["id"], node_id)
        for sub in ("shared", "startup", "workitems", "applications", "fsmounts", "volatile"):
            os.makedirs(os.path.join(directory, sub), exist_ok=True)
        self.state.nodes[pool_key][node_id] = node
        self.state.save_node(pool_key, node)
        return node

    def _advance_nodes(self, pool_key: str, pool: dict, now: float) -> None:
        for node in list(self.state.nodes[pool_key].values()):
            state = node["state"]
            if state in ("creating", "starting", "leavingpool"):
                self._next_due = min(self._next_due, node.get("_next_at", now))
            if state == "creating" and now >= node["_next_at"]:
                node["_next_at"] = now + self.node_start_seconds / 2
                self._set_node_state(pool_key, node, "starting")
            elif state == "starting" and now >= node["_next_at"]:
                start_task = pool.get("startTask")
                if start_task:
                    wait = start_task.get("waitForSuccess", True)
                    self._set_node_state(pool_key, node, "waitingforstarttask" if wait else "idle")
                    self._launch_start_task(pool_key, pool, node)
                else:
                    self._set_node_state(pool_key, node, "idle")
            elif state == "leavingpool" and now >= node.get("_next_at", 0) and node["runningTasksCount"] == 0:
                self._remove_node(pool_key, pool, node)

    def _remove_node(self, pool_key: str, pool: dict, node: dict) -> None:
        del self.state.nodes[pool_key][node["id"]]
        self.state.store.delete("node", f"{pool_key}/{node['id']}")
        shutil.rmtree(self.node_dir(pool["id"], node["id"]), ignore_errors=True)

    def _resize(self, pool_key: str, pool: dict, now: float) -> None:
        if pool["allocationState"] == "steady":
            return
        nodes = [n for n in self.state.nodes[pool_key].values() if n["state"] != "leavingpool"]
        for dedicated, target_name in ((True, "targetDedicatedNodes"), (False, "targetLowPriorityNodes")):
            mine = [n for n in nodes if n["isDedicated"] == dedicated]
            target = pool[target_name]
            for _ in range(target - len(mine)):
                self._new_node(pool_key, pool, dedicated)
            if len(mine) > target:
                # Prefer nodes that are not running anything, then the least busy.
                victims = sorted(mine, key=lambda n: (n["runningTasksCount"], n["state"] != "idle", -n["_seq"]))
                for node in victims[:len(mine) - target]:
                    self._leave_pool(pool_key, node, pool.get("_deallocation", "requeue"))
        pending = [n for n in self.state.nodes[pool_key].values()
                   if n["state"] in ("creating", "starting", "leavingpool")]
        if not pending:
            pool["allocationState"] = "steady"
            pool["allocationStateTransitionTime"] = now_iso()
            self.state.touch(pool)
            self.state.save_pool(pool)

    def _leave_pool(self, pool_key: str, node: dict, option: str) -> None:
        node["schedulingState"] = "disabled"
        node["_next_at"] = time.time() + NODE_REMOVAL_SECONDS
        self._set_node_state(pool_key, node, "leavingpool")
        if option in ("requeue", "terminate"):
            for (job_key, task_key), attempt in list(self.attempts.items()):
                task = self.state.tasks.get(job_key, {}).get(task_key)
                if task and (task.get("nodeInfo") or {}).get("nodeId") == node["id"]:
                    attempt.kill("requeue" if option == "requeue" else "user")
        attempt = self.node_attempts.get((pool_key, node["id"]))
        if attempt:
            attempt.kill("requeue")

    def _delete_pool(self, pool_key: str, pool: dict) -> None:
        busy = False
        for node in self.state.nodes[pool_key].values():
            if node["state"] != "leavingpool":
                self._leave_pool(pool_key, node, "requeue")
            busy = busy or node["runningTasksCount"] > 0 or (pool_key, node["id"]) in self.node_attempts
        if busy:
            return
        self.state.remove_pool(pool_key)
        shutil.rmtree(os.path.join(self.nodes_root, pool_key), ignore_errors=True)

    # -- jobs ---------------------------------------------------------------------------------
    def pool_of(self, job: dict) -> tuple[str, dict] | tuple[None, None]:
        pool_id = (job.get("executionInfo") or {}).get("poolId") or job["poolInfo"].get("poolId")
        pool = self.state.pools.get(key_of(pool_id)) if pool_id else None
        return (key_of(pool_id), pool) if pool else (None, None)

    def _check_job_limits(self, job_key: str, job: dict) -> None:
        counts = self.state.task_counts[job_key]
        if job["onAllTasksComplete"] == "terminatejob" and not (counts["active"] or counts["preparing"] or counts["running"]):
            self.terminate_job(job, "AllTasksComplete")
            return
        limit = job["constraints"].get("maxWallClockTime")
        if limit and time.time() - iso_to_epoch(job["creationTime"]) > parse_duration(limit):
            self.terminate_job(job, "MaxWallClockTimeExpiry")

    def terminate_job(self, job: dict, reason: str) -> None:
        job["state"], job["previousState"] = "terminating", job["state"]
        job["previousStateTransitionTime"], job["stateTransitionTime"] = job["stateTransitionTime"], now_iso()
        job.setdefault("executionInfo", {})["terminateReason"] = reason
        self.state.touch(job)
        self.state.save_job(job)

    def _finish_job(self, job_key: str, job: dict) -> None:
        """Terminating or deleting: stop running tasks, run release tasks, then complete or remove."""
        running = False
        for task_key, attempt in list(self.attempts.items()):
            if task_key[0] == job_key:
                attempt.kill("job")
                running = True
        for (attempt_job, _, kind), attempt in list(self.job_task_attempts.items()):
            if attempt_job == job_key and kind == "prep":
                attempt.kill("job")
        if running:
            return
        counts = self.state.task_counts[job_key]
        if counts["running"] or counts["preparing"]:
            return
        if job.get("jobReleaseTask") and not job.get("_release_started"):
            job["_release_started"] = True
            self.state.save_job(job)
            for node_id, status in (job.get("_prep") or {}).items():
                if "jobPreparationTaskExecutionInfo" in status:
                    self._launch_release(job_key, job, node_id)
            return
        if any((s.get("jobReleaseTaskExecutionInfo") or {}).get("state") == "running"
               for s in (job.get("_prep") or {}).values()):
            return
        auto_pool = (job["poolInfo"].get("autoPoolSpecification") or {})
        if auto_pool and auto_pool["poolLifetimeOption"] == "job" and not auto_pool.get("keepAlive"):
            pool = self.state.pools.get(key_of((job.get("executionInfo") or {}).get("poolId", "")))
            if pool and pool["state"] == "active":
                pool["state"], pool["stateTransitionTime"] = "deleting", now_iso()
                self.state.touch(pool)
                self.state.save_pool(pool)
        if job["state"] == "deleting":
            for nodes in self.state.nodes.values():
                for node in nodes.values():
                    path = os.path.join(self.nodes_root, node["_pool"], node["id"], "workitems", job["id"])
                    shutil.rmtree(path, ignore_errors=True)
            self.state.remove_job(job_key)
            return
        job["previousState"], job["previousStateTransitionTime"] = job["state"], job["stateTransitionTime"]
        job["state"], job["stateTransitionTime"] = "completed", now_iso()
        job["executionInfo"]["endTime"] = job["stateTransitionTime"]
        self.state.touch(job)
        self.state.save_job(job)

    # -- scheduling ---------------------------------------------------------------------------
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

    def _claim_slots(self, pool_key: str, node: dict, slots: int) -> None:
        node["_slots"] += slots
        node["runningTaskSlotsCount"] = node["_slots"]
        node["runningTasksCount"] += 1
        self._set_node_state(pool_key, node, "running")

    def _release_slots(self, pool_key: str, node: dict, slots: int) -> None:
        node["_slots"] = max(0, node["_slots"] - slots)
        node["runningTaskSlotsCount"] = node["_slots"]
        node["runningTasksCount"] = max(0, node["runningTasksCount"] - 1)
        if node["state"] == "running" and node["runningTasksCount"] == 0:
            self._set_node_state(pool_key, node, "idle")
        else:
            self.state.save_node(pool_key, node)

    def _launch_task(self, job_key: str, job: dict, pool: dict, node: dict, task: dict) -> None:
        pool_key = key_of(pool["id"])
        node_dir = self.node_dir(pool["id"], node["id"])
        task_dir = self.task_dir(node_dir, job["id"], task["id"])
        needs_prep = bool(job.get("jobPreparationTask")) and (
            (job.get("_prep") or {}).get(node["id"], {}).get("jobPreparationTaskExecutionInfo", {}).get("result") != "success")
        self._claim_slots(pool_key, node, task["requiredSlots"])
        task["nodeInfo"] = {
            "affinityId": node["affinityId"], "nodeUrl": f"{self.account_url}/pools/{pool['id']}/nodes/{node['id']}",
            "poolId": pool["id"], "nodeId": node["id"],
            "taskRootDirectory": f"workitems/{job['id']}/job-1/{task['id']}",
            "taskRootDirectoryUrl": f"{self.account_url}/pools/{pool['id']}/nodes/{node['id']}/files/"
                                    f"workitems/{job['id']}/job-1/{task['id']}"}
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
        self.attempts[(job_key, key_of(task["id"]))] = attempt
        self._spawn(self._run_task, (attempt, job_key, job, pool, node, task, needs_prep), f"task-{task['id']}")

    # -- environment --------------------------------------------------------------------------
    def _environment(self, pool: dict, node: dict, task_dir: str, extra: dict[str, str]) -> dict[str, str]:
        root = self.node_dir(pool["id"], node["id"])
        working_dir = os.path.join(task_dir, "wd")
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin") + f":{root}/shared:{working_dir}",
            "HOME": working_dir, "PWD": working_dir, "LANG": os.environ.get("LANG", "C.UTF-8"),
            "USER": "_azbatch",
            "AZ_BATCH_ACCOUNT_NAME": self.account_name,
            "AZ_BATCH_ACCOUNT_URL": self.account_url + "/",
            "AZ_BATCH_POOL_ID": pool["id"],
            "AZ_BATCH_NODE_ID": node["id"],
            "AZ_BATCH_NODE_IS_DEDICATED": "true" if node["isDedicated"] else "false",
            "AZ_BATCH_NODE_ROOT_DIR": root,
            "AZ_BATCH_NODE_SHARED_DIR": os.path.join(root, "shared"),
            "AZ_BATCH_NODE_STARTUP_DIR": os.path.join(root, "startup"),
            "AZ_BATCH_NODE_MOUNTS_DIR": os.path.join(root, "fsmounts"),
            "AZ_BATCH_TASK_DIR": task_dir,
            "AZ_BATCH_TASK_WORKING_DIR": working_dir,
            "AZ_BATCH_CERTIFICATES_DIR": os.path.join(task_dir, "certs"),
            "AZ_BATCH_TASK_RESERVED_EPHEMERAL_DISK_SPACE_BYTES": "1000000000",
        }
        env.update(extra)
        return env

    @staticmethod
    def _settings(*lists: list[dict] | None) -> dict[str, str]:
        out = {}
        for settings in lists:
            for item in settings or []:
                out[item["name"]] = item.get("value", "")
        return out

    # -- running processes (worker threads, no lock held while a process runs) ----------------
    def _run_process(self, attempt: Attempt, command_line: str, task_dir: str, env: dict[str, str],
                     wall_clock: float | None, resource_files: list[dict]) -> tuple[int | None, dict | None, bool]:
        """Run one attempt: (exit code, failureInfo, pre-processing failed). Writes stdout/stderr.txt."""
        working_dir = os.path.join(task_dir, "wd")
        os.makedirs(working_dir, exist_ok=True)
        os.makedirs(os.path.join(task_dir, "certs"), exist_ok=True)
        try:
            transfer.download_resource_files(resource_files or [], working_dir)
        except transfer.TransferError as exc:
            return None, _failure(exc.code, exc.message), True
        try:
            argv = shlex.split(command_line)
        except ValueError as exc:
            return None, _failure("CommandLineInvalid", f"The command line cannot be parsed: {exc}."), True
        if not argv:
            return None, _failure("CommandLineInvalid", "The command line is empty."), True
        program = argv[0]
        if "/" in program and not os.path.isabs(program):
            argv[0] = os.path.join(working_dir, program)
        with open(os.path.join(task_dir, "stdout.txt"), "wb") as out, open(os.path.join(task_dir, "stderr.txt"), "wb") as err:
            with attempt.lock:
                if attempt.ended_by:
                    return KILLED_EXIT_CODE, None, False
                try:
                    attempt.process = subprocess.Popen(argv, cwd=working_dir, env=env, stdout=out, stderr=err,
                                                       stdin=subprocess.DEVNULL, start_new_session=True)
                except FileNotFoundError:
                    return None, _failure("CommandProgramNotFound", f"The program '{program}' was not found."), True
                except PermissionError:
                    return None, _failure("CommandLaunchFailed", f"The program '{program}' could not be executed."), True
            try:
                code = attempt.process.wait(timeout=wall_clock)
            except subprocess.TimeoutExpired:
                attempt.kill("walltime")
                code = attempt.process.wait()
        return (KILLED_EXIT_CODE if code < 0 else code), None, False

    def _record_pid(self, entity: dict, attempt: Attempt) -> None:
        if attempt.process:
            entity["_pid"] = attempt.process.pid
            entity["_pid_start"] = _process_start_time(attempt.process.pid)

    def _run_task(self, attempt: Attempt, job_key: str, job: dict, pool: dict, node: dict, task: dict,
                  needs_prep: bool) -> None:
        pool_key = key_of(pool["id"])
        try:
            if needs_prep and not self._ensure_prep(job_key, job, pool, node):
                with self.state.tx():
                    self.attempts.pop((job_key, key_of(task["id"])), None)
                    self._release_slots(pool_key, node, task["requiredSlots"])
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
            extra = self._settings(job.get("commonEnvironmentSettings"), task.get("environmentSettings"))
            extra.update({"AZ_BATCH_JOB_ID": job["id"], "AZ_BATCH_TASK_ID": task["id"]})
            if job.get("jobPreparationTask"):
                prep_dir = self.task_dir(self.node_dir(pool["id"], node["id"]), job["id"], job["jobPreparationTask"]["id"])
                extra.update({"AZ_BATCH_JOB_PREP_DIR": prep_dir, "AZ_BATCH_JOB_PREP_WORKING_DIR": os.path.join(prep_dir, "wd")})
            env = self._environment(pool, node, task_dir, extra)
            limit = parse_duration(task["constraints"]["maxWallClockTime"])
            wall_clock = None if limit > 10 ** 9 else limit
            started = threading.Thread(target=self._note_pid_later, args=(attempt, job_key, task), daemon=True)
            started.start()
            code, failure, preprocessing = self._run_process(attempt, task["commandLine"], task_dir, env, wall_clock,
                                                             task.get("resourceFiles"))
            succeeded = code == 0 and failure is None and attempt.ended_by is None
            if task.get("outputFiles") and not preprocessing and attempt.ended_by not in ("requeue", "shutdown"):
                try:
                    transfer.upload_output_files(task["outputFiles"], os.path.join(task_dir, "wd"), succeeded, task_dir)
                except transfer.TransferError as exc:
                    failure = _failure(exc.code, exc.message)
                    succeeded = False
                except Exception as exc:  # noqa: BLE001 - a broken URL must fail the task, not the worker
                    failure = _failure("FileUploadFailed", f"Uploading output files failed: {exc.__class__.__name__}.")
                    succeeded = False
            with self.state.tx():
                self.attempts.pop((job_key, key_of(task["id"])), None)
                self._release_slots(pool_key, node, task["requiredSlots"])
                if attempt.ended_by == "shutdown":
                    return
                self._node_ran(pool_key, node, job, task, succeeded)
                if self._task_is_current(job_key, task):
                    self._finish_task(job_key, job, task, attempt, code, failure, preprocessing, succeeded)
        except Exception:  # noqa: BLE001 - never leave a task running forever because of a bug
            traceback.print_exc()
            with self.state.tx():
                self.attempts.pop((job_key, key_of(task["id"])), None)
                self._release_slots(pool_key, node, task["requiredSlots"])
                if self._task_is_current(job_key, task) and task["state"] != "completed":
                    self.state.update_task(task, "completed", endTime=now_iso(), result="failure",
                                           failureInfo=_failure("InternalError", "localbatch failed to run the task.",
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
                    self._record_pid(task, attempt)
                    self.state.save_task(job_key, task)

    def _task_is_current(self, job_key: str, task: dict) -> bool:
        return self.state.tasks.get(job_key, {}).get(key_of(task["id"])) is task

    def _node_ran(self, pool_key: str, node: dict, job: dict, task: dict, succeeded: bool) -> None:
        if self.state.nodes.get(pool_key, {}).get(node["id"]) is not node:
            return
        node["totalTasksRun"] += 1
        node["totalTasksSucceeded"] += 1 if succeeded else 0
        node["recentTasks"] = (node["recentTasks"] + [{
            "taskUrl": f"{self.account_url}/jobs/{job['id']}/tasks/{task['id']}", "jobId": job["id"],
            "taskId": task["id"], "taskState": "completed"}])[-RECENT_TASKS_KEPT:]
        self.state.save_node(pool_key, node)

    def _finish_task(self, job_key: str, job: dict, task: dict, attempt: Attempt, code: int | None,
                     failure: dict | None, preprocessing: bool, succeeded: bool) -> None:
        task.pop("_pid", None)
        task.pop("_pid_start", None)
        now = now_iso()
        if attempt.ended_by == "requeue":
            self._requeue(task)
            return
        if attempt.ended_by == "user":
            failure = _failure("TaskEnded", "Task Was Ended by User Request")
        elif attempt.ended_by == "job":
            failure = _failure("TaskEnded", "Task Was Ended because its Job was Terminated")
        elif attempt.ended_by == "walltime":
            failure = _failure("MaxWallClockTimeExceeded",
                               "The task ran longer than its maxWallClockTime constraint and was terminated.")
        elif failure is None and code != 0:
            failure = _failure("FailureExitCode", "The task exited with an exit code representing a failure",
                               ) | {"details": [{"name": "Message", "value": f"The task exited with exit code {code}"}]}
        info = task.get("executionInfo") or {}
        retries = task["constraints"]["maxTaskRetryCount"]
        can_retry = (attempt.ended_by is None and not preprocessing and failure is not None
                     and failure["code"] == "FailureExitCode" and (retries == -1 or info.get("retryCount", 0) < retries)
                     and job["state"] == "active")
        if can_retry:
            self.state.update_task(task, "active", retryCount=info.get("retryCount", 0) + 1, lastRetryTime=now)
            return
        self.state.update_task(task, "completed", endTime=now, exitCode=code, failureInfo=failure,
                               result="success" if succeeded else "failure")
        options = self._exit_options(task, code, failure, preprocessing)
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
    def _exit_options(task: dict, code: int | None, failure: dict | None, preprocessing: bool) -> dict:
        conditions = task.get("exitConditions") or {}
        if preprocessing and "preProcessingError" in conditions:
            return conditions["preProcessingError"]
        if failure and failure["code"].startswith("FileUpload") and "fileUploadError" in conditions:
            return conditions["fileUploadError"]
        if code is not None:
            for item in conditions.get("exitCodes", []):
                if item["code"] == code:
                    return item["exitOptions"]
            for item in conditions.get("exitCodeRanges", []):
                if item["start"] <= code <= item["end"]:
                    return item["exitOptions"]
        if code == 0 and failure is None:
            return {}
        return conditions.get("default", {})

    def _requeue(self, task: dict) -> None:
        info = task.get("executionInfo") or {}
        task.pop("nodeInfo", None)
        self.state.update_task(task, "active", requeueCount=info.get("requeueCount", 0) + 1, lastRequeueTime=now_iso())

    def disable_job(self, job_key: str, job: dict, what_to_do: str) -> None:
        job["previousState"], job["previousStateTransitionTime"] = job["state"], job["stateTransitionTime"]
        job["state"], job["stateTransitionTime"] = "disabled", now_iso()
        self.state.touch(job)
        self.state.save_job(job)
        for (attempt_job, _), attempt in list(self.attempts.items()):
            if attempt_job == job_key and what_to_do in ("requeue", "terminate"):
                attempt.kill("requeue" if what_to_do == "requeue" else "user")

    def terminate_task(self, job_key: str, task: dict) -> None:
        attempt = self.attempts.get((job_key, key_of(task["id"])))
        if attempt:
            attempt.kill("user")
        else:
            self.state.update_task(task, "completed", endTime=now_iso(), result="failure",
                                   failureInfo=_failure("TaskEnded", "Task Was Ended by User Request"))
            task["_dependency"] = "block"

    def kill_task(self, job_key: str, task: dict) -> None:
        attempt = self.attempts.pop((job_key, key_of(task["id"])), None)
        if attempt:
            attempt.kill("deleted")

    # -- start, preparation and release tasks ---------------------------------------------------
    def _launch_start_task(self, pool_key: str, pool: dict, node: dict) -> None:
        attempt = Attempt()
        self.node_attempts[(pool_key, node["id"])] = attempt
        node["startTaskInfo"] = {"state": "running", "startTime": now_iso(), "retryCount": 0}
        startup = os.path.join(self.node_dir(pool["id"], node["id"]), "startup")
        for name in ("stdout.txt", "stderr.txt"):
            open(os.path.join(startup, name), "ab").close()
        self.state.save_node(pool_key, node)
        self._spawn(self._run_start_task, (attempt, pool_key, pool, node), f"start-{node['id']}")

    def _run_start_task(self, attempt: Attempt, pool_key: str, pool: dict, node: dict) -> None:
        spec = pool["startTask"]
        root = self.node_dir(pool["id"], node["id"])
        task_dir = os.path.join(root, "startup")
        env = self._environment(pool, node, task_dir, self._settings(spec.get("environmentSettings")))
        retries = spec.get("maxTaskRetryCount", 0)
        attempt_number = 0
        while True:
            code, failure, preprocessing = self._run_process(attempt, spec["commandLine"], task_dir, env, None,
                                                             spec.get("resourceFiles"))
            if attempt.ended_by:
                with self.state.tx():
                    self.node_attempts.pop((pool_key, node["id"]), None)
                return
            succeeded = code == 0 and failure is None
            if not succeeded and not preprocessing and (retries == -1 or attempt_number < retries):
                attempt_number += 1
                with self.state.tx():
                    node["startTaskInfo"].update(retryCount=attempt_number, lastRetryTime=now_iso())
                    self.state.save_node(pool_key, node)
                attempt.process = None
                continue
            break
        with self.state.tx():
            self.node_attempts.pop((pool_key, node["id"]), None)
            if failure is None and code != 0:
                failure = _failure("FailureExitCode", "The start task exited with an exit code representing a failure")
            info = node["startTaskInfo"]
            info.update(state="completed", endTime=now_iso(), result="success" if succeeded else "failure")
            if code is not None:
                info["exitCode"] = code
            if failure:
                info["failureInfo"] = failure
            if self.state.nodes.get(pool_key, {}).get(node["id"]) is node and node["state"] == "waitingforstarttask":
                self._set_node_state(pool_key, node, "idle" if succeeded else "starttaskfailed")
            else:
                self.state.save_node(pool_key, node)

    def _ensure_prep(self, job_key: str, job: dict, pool: dict, node: dict) -> bool:
        """Run the job preparation task on this node once (other tasks of the job wait for it)."""
        lock = self.prep_locks.setdefault((job_key, key_of(pool["id"]), node["id"]), threading.Lock())
        with lock:
            status = (job.get("_prep") or {}).get(node["id"], {}).get("jobPreparationTaskExecutionInfo", {})
            if status.get("result") == "success":
                return True
            spec = job["jobPreparationTask"]
            root = self.node_dir(pool["id"], node["id"])
            task_dir = self.task_dir(root, job["id"], spec["id"])
            extra = self._settings(job.get("commonEnvironmentSettings"), spec.get("environmentSettings"))
            extra.update({"AZ_BATCH_JOB_ID": job["id"], "AZ_BATCH_TASK_ID": spec["id"],
                          "AZ_BATCH_JOB_PREP_DIR": task_dir, "AZ_BATCH_JOB_PREP_WORKING_DIR": os.path.join(task_dir, "wd")})
            env = self._environment(pool, node, task_dir, extra)
            retries = spec["constraints"]["maxTaskRetryCount"]
            limit = parse_duration(spec["constraints"]["maxWallClockTime"])
            record = {"state": "running", "startTime": now_iso(), "retryCount": 0,
                      "taskRootDirectory": f"workitems/{job['id']}/job-1/{spec['id']}",
                      "taskRootDirectoryUrl": f"{self.account_url}/pools/{pool['id']}/nodes/{node['id']}/files/"
                                              f"workitems/{job['id']}/job-1/{spec['id']}"}
            self._save_prep_status(job, pool, node, "jobPreparationTaskExecutionInfo", record)
            while True:
                attempt = Attempt()
                self.job_task_attempts[(job_key, node["id"], "prep")] = attempt
                code, failure, preprocessing = self._run_process(attempt, spec["commandLine"], task_dir, env,
                                                                 None if limit > 10 ** 9 else limit, spec.get("resourceFiles"))
                if attempt.ended_by:   # the job ended or localbatch is stopping: no retry
                    break
                if code not in (0, None) and not preprocessing and (retries == -1 or record["retryCount"] < retries):
                    record = dict(record, retryCount=record["retryCount"] + 1, lastRetryTime=now_iso())
                    continue
                break
            self.job_task_attempts.pop((job_key, node["id"], "prep"), None)
            succeeded = code == 0 and failure is None and attempt.ended_by is None
            if failure is None and not succeeded:
                failure = _failure("FailureExitCode", "The job preparation task exited with an exit code representing a failure")
            record = dict(record, state="completed", endTime=now_iso(), result="success" if succeeded else "failure")
            if code is not None:
                record["exitCode"] = code
            if failure:
                record["failureInfo"] = failure
            with self.state.tx():
                self._save_prep_status(job, pool, node, "jobPreparationTaskExecutionInfo", record)
                if not succeeded:
                    job.setdefault("_prep_failed_nodes", []).append(node["id"])
                    self.state.save_job(job)
            return succeeded or not spec.get("waitForSuccess", True)

    def _save_prep_status(self, job: dict, pool: dict, node: dict, kind: str, record: dict) -> None:
        with self.state.tx():
            status = job.setdefault("_prep", {}).setdefault(node["id"], {
                "poolId": pool["id"], "nodeId": node["id"],
                "nodeUrl": f"{self.account_url}/pools/{pool['id']}/nodes/{node['id']}"})
            status[kind] = record
            self.state.save_job(job)

    def _launch_release(self, job_key: str, job: dict, node_id: str) -> None:
        status = job["_prep"][node_id]
        pool = self.state.pools.get(key_of(status["poolId"]))
        node = self.state.nodes.get(key_of(status["poolId"]), {}).get(node_id)
        if not pool or not node:
            return
        record = {"state": "running", "startTime": now_iso(),
                  "taskRootDirectory": f"workitems/{job['id']}/job-1/{job['jobReleaseTask']['id']}"}
        status["jobReleaseTaskExecutionInfo"] = record
        self.state.save_job(job)
        self._spawn(self._run_release, (job, pool, node), f"release-{job['id']}-{node_id}")

    def _run_release(self, job: dict, pool: dict, node: dict) -> None:
        spec = job["jobReleaseTask"]
        root = self.node_dir(pool["id"], node["id"])
        task_dir = self.task_dir(root, job["id"], spec["id"])
        prep_dir = self.task_dir(root, job["id"], job["jobPreparationTask"]["id"])
        extra = self._settings(job.get("commonEnvironmentSettings"), spec.get("environmentSettings"))
        extra.update({"AZ_BATCH_JOB_ID": job["id"], "AZ_BATCH_TASK_ID": spec["id"],
                      "AZ_BATCH_JOB_PREP_DIR": prep_dir, "AZ_BATCH_JOB_PREP_WORKING_DIR": os.path.join(prep_dir, "wd")})
        env = self._environment(pool, node, task_dir, extra)
        attempt = Attempt()
        self.job_task_attempts[(key_of(job["id"]), node["id"], "release")] = attempt
        code, failure, _ = self._run_process(attempt, spec["commandLine"], task_dir, env,
                                             parse_duration(spec["maxWallClockTime"]), spec.get("resourceFiles"))
        self.job_task_attempts.pop((key_of(job["id"]), node["id"], "release"), None)
        succeeded = code == 0 and failure is None
        if failure is None and not succeeded:
            failure = _failure("FailureExitCode", "The job release task exited with an exit code representing a failure")
        record = dict(job["_prep"][node["id"]]["jobReleaseTaskExecutionInfo"], state="completed", endTime=now_iso(),
                      result="success" if succeeded else "failure")
        if code is not None:
            record["exitCode"] = code
        if failure:
            record["failureInfo"] = failure
        self._save_prep_status(job, pool, node, "jobReleaseTaskExecutionInfo", record)

    # -- retention ------------------------------------------------------------------------------
    def _clean_retained(self, now: float) -> None:
        for job_key, tasks in self.state.tasks.items():
            for task in tasks.values():
                due = task.get("_cleanup_at")
                if due and due <= now and task.get("_dir") and not task.get("_files_cleaned"):
                    shutil.rmtree(task["_dir"], ignore_errors=True)
                    task["_files_cleaned"] = True
                    self.state.save_task(job_key, task)
