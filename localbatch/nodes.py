"""Simulated compute nodes: their life in a pool (creation, resize, removal), their folders with
Batch's layout, the `AZ_BATCH_*` environment of what runs on them, task slots, and start tasks."""

import os
import shutil
import time
import zlib

from .processes import Attempt, Workers, failure, kill_stale, run_process, settings
from .state import AccountState, key_of
from .timeutil import now_iso, utcnow

RECENT_TASKS_KEPT = 10
NODE_REMOVAL_SECONDS = 0.2


def task_user(user_identity: dict | None) -> tuple[str, str]:
    """(AZ_BATCH_TASK_USER, AZ_BATCH_TASK_USER_IDENTITY) for a task's userIdentity. Every task runs as the
    user localbatch runs as; these say which Batch user it would be (`_azbatch`/PoolNonAdmin by default)."""
    if user_identity and user_identity.get("username"):
        return user_identity["username"], user_identity["username"]
    auto = (user_identity or {}).get("autoUser") or {}
    scope = "Task" if auto.get("scope") == "task" else "Pool"
    elevation = "Admin" if auto.get("elevationLevel") == "admin" else "NonAdmin"
    return ("_azbatch" if scope == "Pool" else "_azbatchtask"), scope + elevation


class Nodes:
    """The nodes of every pool; every method but the start task's worker runs under the account lock."""

    def __init__(self, state: AccountState, workers: Workers, data_dir: str, account_name: str, account_url: str,
                 node_start_seconds: float):
        self.state = state
        self.workers = workers
        # Absolute, so the AZ_BATCH_*_DIR variables are full paths (as Batch documents) whatever --data-dir is.
        self.nodes_root = os.path.abspath(os.path.join(data_dir, "nodes"))
        self.account_name = account_name
        self.account_url = account_url
        self.node_start_seconds = node_start_seconds

    # -- paths --------------------------------------------------------------------------------
    def node_dir(self, pool_id: str, node_id: str) -> str:
        return os.path.join(self.nodes_root, key_of(pool_id), node_id)

    @staticmethod
    def task_root(job_id: str, task_id: str) -> str:
        """A task's folder relative to its node: workitems/<job>/job-1/<task>, or for a job a schedule made
        (`<schedule>:job-<n>`) workitems/<schedule>/job-<n>/<task>, as Batch lays them out."""
        schedule, _, run = job_id.partition(":")
        return f"workitems/{schedule}/{run}/{task_id}" if run else f"workitems/{job_id}/job-1/{task_id}"

    @classmethod
    def task_dir(cls, node_dir: str, job_id: str, task_id: str) -> str:
        return os.path.join(node_dir, *cls.task_root(job_id, task_id).split("/"))

    def remove_job_folders(self, job_id: str) -> None:
        schedule, _, run = job_id.partition(":")
        job_folder = ["workitems", schedule, run] if run else ["workitems", job_id]
        for nodes in self.state.nodes.values():
            for node in nodes.values():
                path = os.path.join(self.nodes_root, node["_pool"], node["id"], *job_folder)
                shutil.rmtree(path, ignore_errors=True)

    # -- environment --------------------------------------------------------------------------
    def environment(self, pool: dict, node: dict, task_dir: str, extra: dict[str, str],
                    user_identity: dict | None) -> dict[str, str]:
        root = self.node_dir(pool["id"], node["id"])
        working_dir = os.path.join(task_dir, "wd")
        user, identity = task_user(user_identity)
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin") + f":{root}/shared:{working_dir}",
            "HOME": working_dir, "PWD": working_dir, "LANG": os.environ.get("LANG", "C.UTF-8"),
            "USER": user, "AZ_BATCH_TASK_USER": user, "AZ_BATCH_TASK_USER_IDENTITY": identity,
            "AZ_BATCH_ACCOUNT_NAME": self.account_name,
            "AZ_BATCH_ACCOUNT_URL": self.account_url + "/",
            "AZ_BATCH_POOL_ID": pool["id"],
            "AZ_BATCH_NODE_ID": node["id"],
            "AZ_BATCH_NODE_IS_DEDICATED": "true" if node["isDedicated"] else "false",
            "AZ_BATCH_NODE_ROOT_DIR": root,
            "AZ_BATCH_NODE_SHARED_DIR": os.path.join(root, "shared"),
            "AZ_BATCH_NODE_STARTUP_DIR": os.path.join(root, "startup"),
            "AZ_BATCH_NODE_STARTUP_WORKING_DIR": os.path.join(root, "startup", "wd"),
            "AZ_BATCH_NODE_MOUNTS_DIR": os.path.join(root, "fsmounts"),
            "AZ_BATCH_TASK_DIR": task_dir,
            "AZ_BATCH_TASK_WORKING_DIR": working_dir,
            "AZ_BATCH_CERTIFICATES_DIR": os.path.join(task_dir, "certs"),
            "AZ_BATCH_TASK_RESERVED_EPHEMERAL_DISK_SPACE_BYTES": "1000000000",
        }
        env.update(extra)
        return env

    # -- states -------------------------------------------------------------------------------
    @staticmethod
    def ready_state(node: dict) -> str:
        """Where a node that runs nothing rests: idle, or offline while its task scheduling is disabled."""
        return "idle" if node.get("schedulingState", "enabled") == "enabled" else "offline"

    def set_state(self, pool_key: str, node: dict, state: str) -> None:
        if node["state"] != state:
            node["state"] = state
            node["stateTransitionTime"] = now_iso()
        self.state.save_node(pool_key, node)

    def recover(self) -> None:
        """After a restart: nothing runs on any node any more; nodes that were starting start again."""
        for pool_key, nodes in self.state.nodes.items():
            for node in nodes.values():
                kill_stale(node)
                node["runningTasksCount"] = node["runningTaskSlotsCount"] = 0
                node["_slots"] = 0
                if node["state"] in ("running", "idle"):
                    self.set_state(pool_key, node, "idle")
                elif node["state"] in ("creating", "starting", "waitingforstarttask"):
                    node["_next_at"] = time.time()
                    self.set_state(pool_key, node, "starting")

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
            "_pool": pool_key, "_seq": self.state.next_seq(), "_slots": 0,
            "_next_at": time.time() + self.node_start_seconds / 2,
        }
        if pool.get("startTask"):
            node["startTask"] = pool["startTask"]
        directory = self.node_dir(pool["id"], node_id)
        for sub in ("shared", "startup", "workitems", "applications", "fsmounts", "volatile"):
            os.makedirs(os.path.join(directory, sub), exist_ok=True)
        self.state.nodes[pool_key][node_id] = node
        self.state.save_node(pool_key, node)
        return node

    def advance(self, pool_key: str, pool: dict, now: float, next_due: float) -> float:
        """Move nodes through creating → starting → idle and remove those that left; returns when the
        next of these transitions is due (at the latest `next_due`)."""
        for node in list(self.state.nodes[pool_key].values()):
            state = node["state"]
            if state in ("creating", "starting", "leavingpool"):
                next_due = min(next_due, node.get("_next_at", now))
            if state == "creating" and now >= node["_next_at"]:
                node["_next_at"] = now + self.node_start_seconds / 2
                self.set_state(pool_key, node, "starting")
            elif state == "starting" and now >= node["_next_at"]:
                start_task = pool.get("startTask")
                if start_task:
                    wait = start_task.get("waitForSuccess", True)
                    self.set_state(pool_key, node, "waitingforstarttask" if wait else self.ready_state(node))
                    self._launch_start_task(pool_key, pool, node)
                else:
                    self.set_state(pool_key, node, self.ready_state(node))
            elif state == "leavingpool" and now >= node.get("_next_at", 0) and node["runningTasksCount"] == 0:
                self._remove_node(pool_key, pool, node)
        return next_due

    def _remove_node(self, pool_key: str, pool: dict, node: dict) -> None:
        del self.state.nodes[pool_key][node["id"]]
        self.state.store.delete("node", f"{pool_key}/{node['id']}")
        shutil.rmtree(self.node_dir(pool["id"], node["id"]), ignore_errors=True)

    # -- pools --------------------------------------------------------------------------------
    def resize(self, pool_key: str, pool: dict) -> None:
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
                    self.leave_pool(pool_key, node, pool.get("_deallocation", "requeue"))
        pending = [n for n in self.state.nodes[pool_key].values()
                   if n["state"] in ("creating", "starting", "leavingpool")]
        if not pending:
            pool["allocationState"] = "steady"
            pool["allocationStateTransitionTime"] = now_iso()
            self.state.touch(pool)
            self.state.save_pool(pool)

    def leave_pool(self, pool_key: str, node: dict, option: str) -> None:
        node["schedulingState"] = "disabled"
        node["_next_at"] = time.time() + NODE_REMOVAL_SECONDS
        self.set_state(pool_key, node, "leavingpool")
        if option in ("requeue", "terminate"):
            for (job_key, task_key), attempt in list(self.workers.tasks.items()):
                task = self.state.tasks.get(job_key, {}).get(task_key)
                if task and (task.get("nodeInfo") or {}).get("nodeId") == node["id"]:
                    attempt.kill("requeue" if option == "requeue" else "user")
        attempt = self.workers.start_tasks.get((pool_key, node["id"]))
        if attempt:
            attempt.kill("requeue")

    def delete_pool(self, pool_key: str, pool: dict) -> None:
        busy = False
        for node in self.state.nodes[pool_key].values():
            if node["state"] != "leavingpool":
                self.leave_pool(pool_key, node, "requeue")
            busy = busy or node["runningTasksCount"] > 0 or (pool_key, node["id"]) in self.workers.start_tasks
        if busy:
            return
        self.state.remove_pool(pool_key)
        shutil.rmtree(os.path.join(self.nodes_root, pool_key), ignore_errors=True)

    # -- task slots ---------------------------------------------------------------------------
    def claim_slots(self, pool_key: str, node: dict, slots: int) -> None:
        node["_slots"] += slots
        node["runningTaskSlotsCount"] = node["_slots"]
        node["runningTasksCount"] += 1
        self.set_state(pool_key, node, "running")

    def release_slots(self, pool_key: str, node: dict, slots: int) -> None:
        node["_slots"] = max(0, node["_slots"] - slots)
        node["runningTaskSlotsCount"] = node["_slots"]
        node["runningTasksCount"] = max(0, node["runningTasksCount"] - 1)
        if node["state"] == "running" and node["runningTasksCount"] == 0:
            self.set_state(pool_key, node, self.ready_state(node))
        else:
            self.state.save_node(pool_key, node)

    def task_ran(self, pool_key: str, node: dict, job: dict, task: dict, succeeded: bool) -> None:
        """Count a finished task on its node and list it, with how that run went, among the node's recent tasks."""
        if self.state.nodes.get(pool_key, {}).get(node["id"]) is not node:
            return
        node["totalTasksRun"] += 1
        node["totalTasksSucceeded"] += 1 if succeeded else 0
        node["recentTasks"] = (node.get("recentTasks", []) + [{
            "taskUrl": f"{self.account_url}/jobs/{job['id']}/tasks/{task['id']}", "jobId": job["id"],
            "taskId": task["id"], "taskState": "completed",
            "executionInfo": dict(task.get("executionInfo") or {})}])[-RECENT_TASKS_KEPT:]
        self.state.save_node(pool_key, node)

    # -- start tasks --------------------------------------------------------------------------
    def _launch_start_task(self, pool_key: str, pool: dict, node: dict) -> None:
        attempt = Attempt()
        self.workers.start_tasks[(pool_key, node["id"])] = attempt
        node["startTaskInfo"] = {"state": "running", "startTime": now_iso(), "retryCount": 0}
        startup = os.path.join(self.node_dir(pool["id"], node["id"]), "startup")
        for name in ("stdout.txt", "stderr.txt"):
            open(os.path.join(startup, name), "ab").close()
        self.state.save_node(pool_key, node)
        self.workers.spawn(self._run_start_task, (attempt, pool_key, pool, node), f"start-{node['id']}")

    def _run_start_task(self, attempt: Attempt, pool_key: str, pool: dict, node: dict) -> None:
        spec = pool["startTask"]
        root = self.node_dir(pool["id"], node["id"])
        task_dir = os.path.join(root, "startup")
        env = self.environment(pool, node, task_dir, settings(spec.get("environmentSettings")),
                               spec.get("userIdentity"))
        retries = spec.get("maxTaskRetryCount", 0)
        attempt_number = 0
        while True:
            code, failed, preprocessing = run_process(attempt, spec["commandLine"], task_dir, env, None,
                                                      spec.get("resourceFiles"))
            if attempt.ended_by:
                with self.state.tx():
                    self.workers.start_tasks.pop((pool_key, node["id"]), None)
                return
            succeeded = code == 0 and failed is None
            if not succeeded and not preprocessing and (retries == -1 or attempt_number < retries):
                attempt_number += 1
                with self.state.tx():
                    node["startTaskInfo"].update(retryCount=attempt_number, lastRetryTime=now_iso())
                    self.state.save_node(pool_key, node)
                attempt.process = None
                continue
            break
        with self.state.tx():
            self.workers.start_tasks.pop((pool_key, node["id"]), None)
            if failed is None and code != 0:
                failed = failure("FailureExitCode", "The start task exited with an exit code representing a failure")
            info = node["startTaskInfo"]
            info.update(state="completed", endTime=now_iso(), result="success" if succeeded else "failure")
            if code is not None:
                info["exitCode"] = code
            if failed:
                info["failureInfo"] = failed
            if self.state.nodes.get(pool_key, {}).get(node["id"]) is node and node["state"] == "waitingforstarttask":
                self.set_state(pool_key, node, self.ready_state(node) if succeeded else "starttaskfailed")
            else:
                self.state.save_node(pool_key, node)
