"""Durability with real processes: `python -m localbatch serve` killed with -9 or SIGTERM, then restarted."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from azure.batch import BatchClient, models
from azure.core.credentials import AzureNamedKeyCredential

from localbatch import DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME

from .helpers import make_job, make_pool, wait_for, wait_task_completed

REPO_ROOT = Path(__file__).resolve().parents[2]
# Prints its pid, then becomes `sleep` in the same process: pid == process group id (a new session).
LONG_COMMAND = "/bin/sh -c 'echo $$; exec sleep 60'"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class Server:
    """One `python -m localbatch serve` process; start it again on the same port and data dir."""

    def __init__(self, tmp_path: Path):
        self.port = _free_port()
        self.data_dir = tmp_path / "data"
        self.log_path = tmp_path / "server.log"
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.orphans: list[int] = []   # process groups to kill at teardown, whatever happens

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "localbatch", "serve", "--port", str(self.port),
                 "--data-dir", str(self.data_dir), "--node-start-seconds", "0.1"],
                cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})

        def healthy():
            if self.process.poll() is not None:
                raise AssertionError(f"localbatch exited {self.process.returncode}: {self.log_path.read_text()}")
            try:
                return urllib.request.urlopen(self.endpoint + "/_localbatch/health", timeout=1).status == 200
            except OSError:
                return False
        wait_for(healthy, timeout=30, message="localbatch serve answering")

    def kill9(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        assert self.process.wait(timeout=10) == -signal.SIGKILL

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)

    def client(self) -> BatchClient:
        return BatchClient(self.endpoint, AzureNamedKeyCredential(DEV_ACCOUNT_NAME, DEV_ACCOUNT_KEY))

    def persisted_task(self, job_id: str, task_id: str) -> dict:
        """The task's row in the SQLite store, read by a separate connection (what a restart will load)."""
        db = sqlite3.connect(f"file:{self.data_dir / 'state.sqlite3'}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT body FROM docs WHERE kind = 'task' AND key = ?",
                             (f"{job_id.lower()}/{task_id.lower()}",)).fetchone()
        finally:
            db.close()
        return json.loads(row[0]) if row else {}

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pgid in self.orphans:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture
def server(tmp_path):
    server = Server(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def _read(client, job_id: str, task_id: str, path: str) -> bytes:
    return b"".join(client.download_task_file(job_id, task_id, path))


def _printed_pid(client, job_id: str, task_id: str) -> int | None:
    try:
        text = _read(client, job_id, task_id, "stdout.txt").decode().strip()
    except Exception:  # noqa: BLE001 - the file may not exist yet
        return None
    return int(text) if text.isdigit() else None


def _populate(server: Server, client: BatchClient) -> int:
    """A pool, a job, two finished tasks and one running `sleep 60`; returns the sleep's pid."""
    make_pool(client, "pool-1", nodes=1, slots=4)
    make_job(client, "job-1", "pool-1")
    client.create_task("job-1", models.BatchTaskCreateOptions(id="ok", command_line="/bin/sh -c 'echo fine'"))
    client.create_task("job-1", models.BatchTaskCreateOptions(id="bad", command_line="/bin/sh -c 'exit 7'"))
    assert wait_task_completed(client, "job-1", "ok").execution_info.exit_code == 0
    assert wait_task_completed(client, "job-1", "bad").execution_info.exit_code == 7
    client.create_task("job-1", models.BatchTaskCreateOptions(id="long", command_line=LONG_COMMAND))
    pid = wait_for(lambda: _printed_pid(client, "job-1", "long"), message="the long task's pid")
    server.orphans.append(pid)
    assert alive(pid)
    assert client.get_task("job-1", "long").state == "running"
    # The scheduler records the pid shortly after the start; a restart can only kill what was recorded.
    wait_for(lambda: server.persisted_task("job-1", "long").get("_pid") == pid, message="the pid persisted")
    return pid


def _check_survivors(client: BatchClient) -> None:
    pool = client.get_pool("pool-1")
    assert (pool.state, pool.target_dedicated_nodes, pool.task_slots_per_node) == ("active", 1, 4)
    assert client.get_job("job-1").state == "active"
    ok, bad = client.get_task("job-1", "ok"), client.get_task("job-1", "bad")
    assert (ok.state, ok.execution_info.exit_code, ok.execution_info.result) == ("completed", 0, "success")
    assert (bad.state, bad.execution_info.exit_code, bad.execution_info.failure_info.code) == (
        "completed", 7, "FailureExitCode")
    assert ok.execution_info.requeue_count == bad.execution_info.requeue_count == 0
    assert _read(client, "job-1", "ok", "stdout.txt") == b"fine\n"
    assert sorted(t.id for t in client.list_tasks("job-1")) == ["bad", "long", "ok"]


def _check_requeued_and_rerun(server: Server, client: BatchClient, old_pid: int) -> None:
    long_task = client.get_task("job-1", "long")
    assert long_task.execution_info.requeue_count == 1
    assert long_task.execution_info.last_requeue_time is not None
    new_pid = wait_for(lambda: (p := _printed_pid(client, "job-1", "long")) and p != old_pid and p,
                       message="the long task running again")
    server.orphans.append(new_pid)
    assert alive(new_pid)
    long_task = client.get_task("job-1", "long")
    assert (long_task.state, long_task.execution_info.requeue_count, long_task.execution_info.retry_count) == (
        "running", 1, 0)

    client.create_task("job-1", models.BatchTaskCreateOptions(id="after", command_line="/bin/sh -c 'echo again'"))
    after = wait_task_completed(client, "job-1", "after")
    assert after.execution_info.exit_code == 0
    assert _read(client, "job-1", "after", "stdout.txt") == b"again\n"

    client.terminate_task("job-1", "long")
    long_task = wait_task_completed(client, "job-1", "long")
    assert long_task.execution_info.failure_info.code == "TaskEnded"
    wait_for(lambda: not alive(new_pid), message="the rerun killed by terminate")


def test_kill_9_then_restart_keeps_state_requeues_the_running_task_and_kills_the_orphan(server):
    server.start()
    client = server.client()
    old_pid = _populate(server, client)

    server.kill9()
    # The task runs in its own session, so it outlives a server killed with -9: it is an orphan now.
    assert alive(old_pid)
    assert os.getpgid(old_pid) == old_pid

    server.start()
    client = server.client()
    wait_for(lambda: not alive(old_pid), timeout=10, message="the orphaned sleep killed after the restart")
    _check_survivors(client)
    _check_requeued_and_rerun(server, client, old_pid)
    client.close()


def test_sigterm_then_restart_keeps_everything(server):
    server.start()
    client = server.client()
    old_pid = _populate(server, client)
    # Written just before the shutdown: must be on disk too.
    make_job(client, "job-late", "pool-1")
    client.create_task("job-late", models.BatchTaskCreateOptions(id="waiting", command_line="/bin/true"))
    client.close()

    assert server.terminate() == 0
    # A clean shutdown stops the tasks it was running.
    wait_for(lambda: not alive(old_pid), timeout=10, message="the sleep stopped with the server")

    server.start()
    client = server.client()
    _check_survivors(client)
    assert client.get_job("job-late").state == "active"
    waiting = wait_task_completed(client, "job-late", "waiting")
    assert waiting.execution_info.exit_code == 0
    _check_requeued_and_rerun(server, client, old_pid)
    client.close()


def test_a_second_restart_does_not_requeue_completed_tasks_again(server):
    server.start()
    client = server.client()
    make_pool(client, "pool-1", nodes=1)
    make_job(client, "job-1", "pool-1")
    client.create_task("job-1", models.BatchTaskCreateOptions(id="ok", command_line="/bin/true"))
    assert wait_task_completed(client, "job-1", "ok").execution_info.exit_code == 0
    client.close()

    for _ in range(2):
        server.kill9()
        server.start()
    client = server.client()
    ok = client.get_task("job-1", "ok")
    assert (ok.state, ok.execution_info.exit_code, ok.execution_info.requeue_count) == ("completed", 0, 0)
    node = wait_for(lambda: (n := next(iter(client.list_nodes("pool-1")), None)) and n.state == "idle" and n,
                    message="the node idle again")
    assert node.total_tasks_run == 1
    client.close()
