"""Running one attempt of a task as a local process group, and the registry of the running ones.

Worker threads call `run_process` without the account lock; the scheduler, nodes and job
preparation keep their running attempts in one `Workers`, so stopping localbatch kills them all."""

import os
import shlex
import signal
import subprocess
import threading

from . import transfer

KILLED_EXIT_CODE = 128 + signal.SIGKILL   # what a shell reports for a process killed with SIGKILL


def failure(code: str, message: str, category: str = "usererror") -> dict:
    return {"category": category, "code": code, "message": message}


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of a process: with the pid it identifies one process for sure."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def kill_stale(entity: dict) -> None:
    """Kill the process group recorded on an entity before a restart, if it is still that process."""
    pid, started = entity.pop("_pid", None), entity.pop("_pid_start", None)
    if pid and started and process_start_time(pid) == started:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def record_pid(entity: dict, attempt: "Attempt") -> None:
    if attempt.process:
        entity["_pid"] = attempt.process.pid
        entity["_pid_start"] = process_start_time(attempt.process.pid)


def settings(*lists: list[dict] | None) -> dict[str, str]:
    """environmentSettings lists merged into one mapping, later lists winning."""
    out = {}
    for items in lists:
        for item in items or []:
            out[item["name"]] = item.get("value", "")
    return out


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


class Workers:
    """The running attempts, by what they run, and the worker threads waiting to start."""

    def __init__(self):
        self.tasks: dict[tuple[str, str], Attempt] = {}          # (job key, task key) -> running attempt
        self.start_tasks: dict[tuple[str, str], Attempt] = {}    # (pool key, node id) -> start task attempt
        # (job key, node id, "prep" | "release") -> running preparation or release attempt
        self.job_tasks: dict[tuple[str, str, str], Attempt] = {}
        self._spawned: list[threading.Thread] = []

    def spawn(self, target, args: tuple, name: str) -> None:
        """Queue a worker thread; it starts after the step's transaction, so that starting threads
        (which waits for each to run) does not hold the account lock."""
        self._spawned.append(threading.Thread(target=target, args=args, name=name, daemon=True))

    def start_spawned(self) -> None:
        spawned, self._spawned = self._spawned, []
        for thread in spawned:
            thread.start()

    def kill_all(self, reason: str) -> None:
        for attempt in (list(self.tasks.values()) + list(self.start_tasks.values())
                        + list(self.job_tasks.values())):
            attempt.kill(reason)


def run_process(attempt: Attempt, command_line: str, task_dir: str, env: dict[str, str],
                wall_clock: float | None, resource_files: list[dict]) -> tuple[int | None, dict | None, bool]:
    """Run one attempt: (exit code, failureInfo, pre-processing failed). Writes stdout/stderr.txt."""
    working_dir = os.path.join(task_dir, "wd")
    os.makedirs(working_dir, exist_ok=True)
    os.makedirs(os.path.join(task_dir, "certs"), exist_ok=True)
    try:
        transfer.download_resource_files(resource_files or [], working_dir)
    except transfer.TransferError as exc:
        return None, failure(exc.code, exc.message), True
    try:
        argv = shlex.split(command_line)
    except ValueError as exc:
        return None, failure("CommandLineInvalid", f"The command line cannot be parsed: {exc}."), True
    if not argv:
        return None, failure("CommandLineInvalid", "The command line is empty."), True
    program = argv[0]
    if "/" in program and not os.path.isabs(program):
        argv[0] = os.path.join(working_dir, program)
    stdout, stderr = os.path.join(task_dir, "stdout.txt"), os.path.join(task_dir, "stderr.txt")
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        with attempt.lock:
            if attempt.ended_by:
                return KILLED_EXIT_CODE, None, False
            try:
                attempt.process = subprocess.Popen(argv, cwd=working_dir, env=env, stdout=out, stderr=err,
                                                   stdin=subprocess.DEVNULL, start_new_session=True)
            except FileNotFoundError:
                return None, failure("CommandProgramNotFound", f"The program '{program}' was not found."), True
            except PermissionError:
                return None, failure("CommandLaunchFailed", f"The program '{program}' could not be executed."), True
        try:
            code = attempt.process.wait(timeout=wall_clock)
        except subprocess.TimeoutExpired:
            attempt.kill("walltime")
            code = attempt.process.wait()
    return (KILLED_EXIT_CODE if code < 0 else code), None, False
