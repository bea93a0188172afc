"""A task's files as the log viewer reads them: which names may be asked for, the node's copy and the saved copy
in Blob, which of the two to show, and a whole file as a stream of ranged reads."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Protocol

from django.conf import settings

from batchsync.gateway import BatchGateway, BlobInfo, BlobStore, GatewayError, NotFound, Rejected
from portal.downloads import DOWNLOAD_CHUNK_BYTES, stream
from portal.models import Task

__all__ = ["DOWNLOAD_CHUNK_BYTES", "stream"]   # the archiver and the views take them from here, with the rest

MAX_NAME_LENGTH = 1024
# The files saved to Blob when a task ends, at <job id>/<task id>/logs/<name> in the logs container: by the
# task's own output-file rule (portal-made tasks) or by batchsync.archive (the rest).
SAVED_FILES = ("stdout.txt", "stderr.txt")

_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidFileName(ValueError):
    """A file name no task's file list could contain; nothing was sent to Batch."""


def validate_name(path: str) -> str:
    """`path` if it can name a file under a task's folder, else InvalidFileName.

    Batch's own file list uses relative names with forward slashes (`stdout.txt`, `wd/out.log`), so
    anything else is refused here, before a request could carry it to Batch."""
    if not path or len(path) > MAX_NAME_LENGTH:
        raise InvalidFileName("empty or too long")
    if path.startswith("/") or "\\" in path or _CONTROL.search(path):
        raise InvalidFileName("absolute, backslash or control character")
    # A name that still holds %xx after Django decoded the URL was encoded twice to slip past a check.
    if _PERCENT_ESCAPE.search(path):
        raise InvalidFileName("percent-encoded")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise InvalidFileName("empty, '.' or '..' segment")
    return path


def saved_path(job_id: str, task_id: str, name: str) -> str | None:
    """Where the saved copy of the task file `name` lives in the logs container; None for files never saved."""
    return f"{job_id}/{task_id}/logs/{name}" if name in SAVED_FILES else None


def attempt_path(job_id: str, task_id: str, number: int, name: str) -> str | None:
    """Where the archiver keeps the file `name` of an earlier attempt (number `number`) of the task, once a retry
    has replaced it on the node; None for files never saved."""
    return f"{job_id}/{task_id}/attempts/{number}/{name}" if name in SAVED_FILES else None


class CleanedUpBeforeSaved(NotFound):
    """The archiver found the node's copy gone before it could save it: there is no copy anywhere."""


class LogSource(Protocol):
    """A file read in ranges: NodeFile, SavedFile, or a node's own file (portal.logs.node_files)."""

    kind: str

    def size(self) -> int: ...

    def read(self, start: int, length: int) -> bytes: ...


class NodeFile:
    """A task file read from its node through the Batch gateway; its size is asked once per object."""

    kind = "node"
    saved_at = None

    def __init__(self, batch: BatchGateway, job_id: str, task_id: str, path: str, node_id: str = "") -> None:
        self._batch, self.job_id, self.task_id, self.path, self.node_id = batch, job_id, task_id, path, node_id
        self._size: int | None = None

    def size(self) -> int:
        if self._size is None:
            try:
                self._size = self._batch.get_task_file_size(self.job_id, self.task_id, self.path)
            except Rejected as error:
                if error.code:
                    raise
                # A HEAD answer has no body, so no code (TaskFilesUnavailable or TaskFilesCleanedup tell
                # different stories): one byte's GET brings the same refusal with its code.
                self.read(0, 1)
                raise
        return self._size

    def read(self, start: int, length: int) -> bytes:
        return self._batch.read_task_file(self.job_id, self.task_id, self.path, start=start, length=length)


class SavedFile:
    """The saved copy of a task file in Blob; it no longer changes, so its size comes with it."""

    kind = "saved"

    def __init__(self, store: BlobStore, info: BlobInfo) -> None:
        self._store, self.info = store, info
        self.path = info.path.rsplit("/", 1)[-1]
        self.saved_at = info.last_modified

    def size(self) -> int:
        return self.info.size

    def read(self, start: int, length: int) -> bytes:
        return self._store.read_range(self.info.container, self.info.path, start, length)


def saved_copy(store: BlobStore, job_id: str, task_id: str, path: str, *,
               attempt_started: datetime | None = None) -> SavedFile | None:
    """The saved copy of the file in Blob, or None when there is none or storage did not answer (the caller
    then falls back to the node: a slow storage account must not hide a log the node still has).

    With `attempt_started` (the task's start_time), a copy saved before that moment belongs to an earlier attempt
    of a task that was retried since, and does not count."""
    blob = saved_path(job_id, task_id, validate_name(path))
    if blob is None:
        return None
    try:
        info = store.info(settings.STORAGE_LOGS_CONTAINER, blob)
    except GatewayError:
        return None
    if info is None or not saved_for_attempt(info.last_modified, attempt_started):
        return None
    return SavedFile(store, info)


# A copy saved up to this long before the attempt started still counts as the attempt's: Batch's clock (start
# times), the storage service's (blob times) and ours need not agree to the second, and a person retries a task
# minutes after it ended, not seconds.
CLOCK_SKEW = timedelta(minutes=1)


def saved_for_attempt(saved_at: datetime | None, attempt_started: datetime | None) -> bool:
    """Whether a copy saved at `saved_at` can hold the output of the attempt that started at `attempt_started`."""
    return attempt_started is None or saved_at is None or saved_at >= attempt_started - CLOCK_SKEW


def open_file(task: Task, path: str, *, batch: BatchGateway, store: BlobStore, live: bool) -> NodeFile | SavedFile:
    """The copy of `task`'s file `path` to show: while the task runs, the node's; once it has ended, the saved
    copy when there is one; the saved copy too whenever the node's is gone (task, job or pool deleted, node
    removed, files cleaned up).

    Raises the gateway's NotFound / Rejected / Transient for the node's copy when no saved copy stands in,
    or CleanedUpBeforeSaved when the archiver already found the node's copy gone."""
    validate_name(path)
    job_id, task_id = task.job.job_id, task.task_id
    started = task.start_time
    if not live and (saved := saved_copy(store, job_id, task_id, path, attempt_started=started)) is not None:
        return saved
    node = NodeFile(batch, job_id, task_id, path, node_id=task.node_id)
    try:
        node.size()
    except (NotFound, Rejected) as error:
        if live and (saved := saved_copy(store, job_id, task_id, path, attempt_started=started)) is not None:
            return saved
        if task.logs_saved_at and path in SAVED_FILES and getattr(error, "code", "") != "TaskFilesUnavailable":
            raise CleanedUpBeforeSaved(str(error), code=error.code, status=error.status) from error
        raise
    return node
