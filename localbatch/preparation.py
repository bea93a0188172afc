"""Job preparation and release tasks: the preparation task runs once per node before the job's first
task there; the release task runs on each of those nodes when the job ends."""

import os
import threading

from .nodes import Nodes
from .processes import Attempt, Workers, failure, run_process, settings
from .state import AccountState, key_of
from .timeutil import now_iso, parse_duration

PREP_STATUS = "jobPreparationTaskExecutionInfo"
RELEASE_STATUS = "jobReleaseTaskExecutionInfo"


class JobPreparation:
    def __init__(self, state: AccountState, workers: Workers, nodes: Nodes, account_url: str):
        self.state = state
        self.workers = workers
        self.nodes = nodes
        self.account_url = account_url
        self.locks: dict[tuple[str, str, str], threading.Lock] = {}

    @staticmethod
    def needed(job: dict, node: dict) -> bool:
        """Whether a task of this job must first run the job's preparation task on this node."""
        return bool(job.get("jobPreparationTask")) and (
            (job.get("_prep") or {}).get(node["id"], {}).get(PREP_STATUS, {}).get("result") != "success")

    def environment(self, job: dict, pool: dict, node: dict) -> dict[str, str]:
        """The variables a job's tasks get when the job has a preparation task."""
        if not job.get("jobPreparationTask"):
            return {}
        prep_dir = self.nodes.task_dir(self.nodes.node_dir(pool["id"], node["id"]), job["id"],
                                       job["jobPreparationTask"]["id"])
        return {"AZ_BATCH_JOB_PREP_DIR": prep_dir, "AZ_BATCH_JOB_PREP_WORKING_DIR": os.path.join(prep_dir, "wd")}

    @staticmethod
    def recover(job: dict) -> None:
        """After a restart nothing runs: a preparation or release shown as running never finishes."""
        for status in (job.get("_prep") or {}).values():
            for kind in (PREP_STATUS, RELEASE_STATUS):
                if (status.get(kind) or {}).get("state") == "running":
                    status.pop(kind)
        job.pop("_release_started", None)

    def kill(self, job_key: str) -> None:
        """Stop the job's running preparation tasks (its job is ending)."""
        for (attempt_job, _, kind), attempt in list(self.workers.job_tasks.items()):
            if attempt_job == job_key and kind == "prep":
                attempt.kill("job")

    # -- preparation (in a task's worker thread) ------------------------------------------------
    def ensure(self, job_key: str, job: dict, pool: dict, node: dict) -> bool:
        """Run the job preparation task on this node once (other tasks of the job wait for it)."""
        lock = self.locks.setdefault((job_key, key_of(pool["id"]), node["id"]), threading.Lock())
        with lock:
            status = (job.get("_prep") or {}).get(node["id"], {}).get(PREP_STATUS, {})
            if status.get("result") == "success":
                return True
            spec = job["jobPreparationTask"]
            root = self.nodes.node_dir(pool["id"], node["id"])
            task_dir = self.nodes.task_dir(root, job["id"], spec["id"])
            extra = settings(job.get("commonEnvironmentSettings"), spec.get("environmentSettings"))
            extra.update({"AZ_BATCH_JOB_ID": job["id"], "AZ_BATCH_TASK_ID": spec["id"],
                          "AZ_BATCH_JOB_PREP_DIR": task_dir,
                          "AZ_BATCH_JOB_PREP_WORKING_DIR": os.path.join(task_dir, "wd")})
            env = self.nodes.environment(pool, node, task_dir, extra, spec.get("userIdentity"))
            retries = spec["constraints"]["maxTaskRetryCount"]
            limit = parse_duration(spec["constraints"]["maxWallClockTime"])
            record = {"state": "running", "startTime": now_iso(), "retryCount": 0,
                      "taskRootDirectory": self.nodes.task_root(job["id"], spec["id"]),
                      "taskRootDirectoryUrl": f"{self.account_url}/pools/{pool['id']}/nodes/{node['id']}/files/"
                                              f"{self.nodes.task_root(job['id'], spec['id'])}"}
            self._save_status(job, pool, node, PREP_STATUS, record)
            while True:
                attempt = Attempt()
                self.workers.job_tasks[(job_key, node["id"], "prep")] = attempt
                code, failed, preprocessing = run_process(attempt, spec["commandLine"], task_dir, env,
                                                          None if limit > 10 ** 9 else limit, spec.get("resourceFiles"))
                if attempt.ended_by:   # the job ended or localbatch is stopping: no retry
                    break
                if code not in (0, None) and not preprocessing and (retries == -1 or record["retryCount"] < retries):
                    record = dict(record, retryCount=record["retryCount"] + 1, lastRetryTime=now_iso())
                    continue
                break
            self.workers.job_tasks.pop((job_key, node["id"], "prep"), None)
            succeeded = code == 0 and failed is None and attempt.ended_by is None
            if failed is None and not succeeded:
                failed = failure("FailureExitCode",
                                 "The job preparation task exited with an exit code representing a failure")
            record = dict(record, state="completed", endTime=now_iso(), result="success" if succeeded else "failure")
            if code is not None:
                record["exitCode"] = code
            if failed:
                record["failureInfo"] = failed
            with self.state.tx():
                self._save_status(job, pool, node, PREP_STATUS, record)
                if not succeeded:
                    job.setdefault("_prep_failed_nodes", []).append(node["id"])
                    self.state.save_job(job)
            return succeeded or not spec.get("waitForSuccess", True)

    def _save_status(self, job: dict, pool: dict, node: dict, kind: str, record: dict) -> None:
        with self.state.tx():
            status = job.setdefault("_prep", {}).setdefault(node["id"], {
                "poolId": pool["id"], "nodeId": node["id"],
                "nodeUrl": f"{self.account_url}/pools/{pool['id']}/nodes/{node['id']}"})
            status[kind] = record
            self.state.save_job(job)

    # -- release (when the job ends) ------------------------------------------------------------
    def start_release(self, job_key: str, job: dict) -> bool:
        """Launch the release task on every node that ran the preparation task, once; True if it did."""
        if not job.get("jobReleaseTask") or job.get("_release_started"):
            return False
        job["_release_started"] = True
        self.state.save_job(job)
        for node_id, status in (job.get("_prep") or {}).items():
            if PREP_STATUS in status:
                self._launch_release(job, node_id)
        return True

    @staticmethod
    def release_running(job: dict) -> bool:
        return any((s.get(RELEASE_STATUS) or {}).get("state") == "running" for s in (job.get("_prep") or {}).values())

    def _launch_release(self, job: dict, node_id: str) -> None:
        status = job["_prep"][node_id]
        pool = self.state.pools.get(key_of(status["poolId"]))
        node = self.state.nodes.get(key_of(status["poolId"]), {}).get(node_id)
        if not pool or not node:
            return
        root = self.nodes.task_root(job["id"], job["jobReleaseTask"]["id"])
        # As the preparation task's row: Batch reports the folder and its URL for the release task too.
        record = {"state": "running", "startTime": now_iso(), "taskRootDirectory": root,
                  "taskRootDirectoryUrl": f"{self.account_url}/pools/{pool['id']}/nodes/{node_id}/files/{root}"}
        status[RELEASE_STATUS] = record
        self.state.save_job(job)
        self.workers.spawn(self._run_release, (job, pool, node), f"release-{job['id']}-{node_id}")

    def _run_release(self, job: dict, pool: dict, node: dict) -> None:
        spec = job["jobReleaseTask"]
        root = self.nodes.node_dir(pool["id"], node["id"])
        task_dir = self.nodes.task_dir(root, job["id"], spec["id"])
        extra = settings(job.get("commonEnvironmentSettings"), spec.get("environmentSettings"))
        extra.update({"AZ_BATCH_JOB_ID": job["id"], "AZ_BATCH_TASK_ID": spec["id"]})
        extra.update(self.environment(job, pool, node))
        env = self.nodes.environment(pool, node, task_dir, extra, spec.get("userIdentity"))
        attempt = Attempt()
        self.workers.job_tasks[(key_of(job["id"]), node["id"], "release")] = attempt
        code, failed, _ = run_process(attempt, spec["commandLine"], task_dir, env,
                                      parse_duration(spec["maxWallClockTime"]), spec.get("resourceFiles"))
        self.workers.job_tasks.pop((key_of(job["id"]), node["id"], "release"), None)
        succeeded = code == 0 and failed is None
        if failed is None and not succeeded:
            failed = failure("FailureExitCode", "The job release task exited with an exit code representing a failure")
        record = dict(job["_prep"][node["id"]][RELEASE_STATUS], state="completed", endTime=now_iso(),
                      result="success" if succeeded else "failure")
        if code is not None:
            record["exitCode"] = code
        if failed:
            record["failureInfo"] = failed
        self._save_status(job, pool, node, RELEASE_STATUS, record)
