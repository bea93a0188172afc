"""Bounded reads of files on a compute node that belong to no task of ours: the start task's output under
`startup/` and a job preparation task's under its folder in `workitems/`. Same windows as batchsync.logs."""

from __future__ import annotations

from portal.models import BatchAccount

from . import logs
from .logs import WINDOW_BYTES, InvalidFileName, LogWindow

START_TASK_FOLDER = "startup"
# Folders a job preparation task runs in: workitems/<job id>/job-1/<prep task id>/ (job schedules add a level).
WORKITEMS_FOLDER = "workitems"


def validate_node_path(path: str) -> str:
    """`path` if it names a file under the start task's folder or under some job's folder in workitems/, else
    InvalidFileName. Which job preparation folders a node really has is Batch's to say (see the view)."""
    logs.validate_name(path)
    parts = path.split("/")
    if parts[0] == START_TASK_FOLDER and len(parts) >= 2:
        return path
    # workitems/<job>/job-1/<prep task>/<file>: anything shallower is a folder, not a task's file.
    if parts[0] == WORKITEMS_FOLDER and len(parts) >= 5:
        return path
    raise InvalidFileName("not under startup/ or a job preparation folder")


def job_of(path: str) -> str | None:
    """The Batch job id a workitems/ path belongs to, or None for the start task's files."""
    parts = path.split("/")
    return parts[1] if parts[0] == WORKITEMS_FOLDER and len(parts) > 1 else None


def read_window(account: BatchAccount, pool_id: str, node_id: str, path: str, *, start: int | None = None,
                end: int | None = None, max_bytes: int = WINDOW_BYTES, gateway=None) -> LogWindow:
    """A window of at most `max_bytes` of the node file `path`, bounded as batchsync.logs.read_window bounds a
    task's file: the tail without bounds, from `start`, or the window ending at `end`.

    Raises InvalidFileName, or the gateway's NotFound (node, pool or file gone) / Transient."""
    validate_node_path(path)
    with logs._gateway(account, gateway) as batch:
        size = batch.get_node_file_size(pool_id, node_id, path)
        return logs._window(lambda s, n: batch.read_node_file(pool_id, node_id, path, start=s, length=n),
                            size, start=start, end=end, max_bytes=max_bytes, hold_partial=False)


__all__ = ["InvalidFileName", "LogWindow", "job_of", "read_window", "validate_node_path"]
