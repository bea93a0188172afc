"""Bounded reads of files on a compute node that belong to no task of ours: the start task's output under
`startup/` and a job preparation task's under its folder in `workitems/`. Same windows as a task's files."""

from __future__ import annotations

from batchsync.gateway import BatchGateway
from portal.logs.files import InvalidFileName, validate_name
from portal.logs.windows import WINDOW_BYTES, LogWindow, window

START_TASK_FOLDER = "startup"
# Folders a job preparation task runs in: workitems/<job id>/job-1/<prep task id>/ (job schedules add a level).
WORKITEMS_FOLDER = "workitems"


def validate_node_path(path: str) -> str:
    """`path` if it names a file under the start task's folder or under some job's folder in workitems/, else
    InvalidFileName. Which job preparation folders a node really has is Batch's to say (see the view)."""
    validate_name(path)
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


class NodeRootFile:
    """A file under a node's root folder, read through the Batch gateway: a source for portal.logs.windows.window
    and portal.logs.files.stream, as a task's NodeFile is. Its size is asked once per object."""

    kind = "node"
    saved_at = None

    def __init__(self, batch: BatchGateway, pool_id: str, node_id: str, path: str) -> None:
        self._batch, self.pool_id, self.node_id, self.path = batch, pool_id, node_id, validate_node_path(path)
        self._size: int | None = None

    def size(self) -> int:
        if self._size is None:
            self._size = self._batch.get_node_file_size(self.pool_id, self.node_id, self.path)
        return self._size

    def read(self, start: int, length: int) -> bytes:
        return self._batch.read_node_file(self.pool_id, self.node_id, self.path, start=start, length=length)


def read_window(batch: BatchGateway, pool_id: str, node_id: str, path: str, *, start: int | None = None,
                end: int | None = None, max_bytes: int = WINDOW_BYTES) -> LogWindow:
    """A window of at most `max_bytes` of the node file `path`, bounded as a task file's window is: the tail
    without bounds, from `start`, or the window ending at `end`.

    Raises InvalidFileName, or the gateway's NotFound (node, pool or file gone) / Transient."""
    return window(NodeRootFile(batch, pool_id, node_id, path), start=start, end=end, max_bytes=max_bytes)

