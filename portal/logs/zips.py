"""A job's logs as one zip, produced while it is sent: every task's stdout and stderr, each copied in ranged
reads from its saved copy or its node, so memory holds one chunk whatever the job's size."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator

from django.conf import settings

from batchsync.gateway import BatchGateway, BlobStore, GatewayError, NotFound, Rejected
from portal.logs.files import SAVED_FILES, NodeFile, SavedFile, saved_for_attempt, saved_path, stream

# The most tasks one zip of a job's logs holds.
ZIP_MAX_TASKS = 10_000


class _ZipSink(io.RawIOBase):
    """Where zipfile writes: bytes wait here until the generator hands them on. Not seekable, so zipfile
    writes each entry's sizes after its data (a data descriptor) and never goes back."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]  # zipfile writes bytes
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def zip_job_logs(job_id: str, task_ids: list, *, batch: BatchGateway, store: BlobStore) -> Iterator[bytes]:
    """A zip of every task's stdout.txt and stderr.txt (entries `<task id>/stdout.txt`; `task_ids` holds ids or
    (id, start time of its last attempt) pairs), produced while it is read: each file is copied in ranged reads,
    from its saved copy when there is one, else from the node, so memory holds one chunk whatever the job's size.
    Members over 2 GiB get ZIP64 sizes. Files that could not be read are named, with the reason, in MISSING.txt at
    the end."""
    try:
        saved = {info.path: info for info in store.list_blobs(settings.STORAGE_LOGS_CONTAINER, f"{job_id}/")}
    except GatewayError:
        saved = {}                      # storage did not answer: every file comes from its node, if it can
    sink, missing = _ZipSink(), []
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for task_id, started in (t if isinstance(t, tuple) else (t, None) for t in task_ids):
            for name in SAVED_FILES:
                info = saved.get(saved_path(job_id, task_id, name) or "")   # SAVED_FILES all have a path
                if info is not None and not saved_for_attempt(info.last_modified, started):
                    info = None         # an earlier attempt's copy: the node has this attempt's
                source = SavedFile(store, info) if info else NodeFile(batch, job_id, task_id, name)
                try:
                    size = source.size()
                except GatewayError as error:
                    missing.append(f"{task_id}/{name}: {_why(error)}")
                    continue
                member = zipfile.ZipInfo(f"{task_id}/{name}", date_time=time.gmtime()[:6])
                member.compress_type, member.file_size = zipfile.ZIP_DEFLATED, size
                written = 0
                try:
                    with archive.open(member, "w") as entry:
                        for chunk in stream(source):
                            entry.write(chunk)
                            written += len(chunk)
                            yield sink.take()
                except GatewayError as error:
                    missing.append(f"{task_id}/{name}: cut after {written} of {size} bytes ({_why(error)})")
                yield sink.take()
        if missing:
            archive.writestr("MISSING.txt", "These files could not be read:\n" + "\n".join(missing) + "\n")
    yield sink.take()


def _why(error: GatewayError) -> str:
    if isinstance(error, NotFound) or (isinstance(error, Rejected) and error.status == 409):
        return "the node no longer has it and no saved copy exists"
    return "Batch or storage did not answer"
