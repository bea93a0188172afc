"""A job's logs as one zip, produced while it is sent: every task's stdout and stderr, each copied in ranged
reads from its saved copy or its node, so memory holds one chunk whatever the job's size (portal.downloads writes
the zip)."""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings

from batchsync.gateway import BatchGateway, BlobStore, GatewayError, NotFound, Rejected
from portal.downloads import Readable, zip_stream
from portal.logs.files import SAVED_FILES, NodeFile, SavedFile, saved_for_attempt, saved_path


def zip_job_logs(job_id: str, task_ids: list, *, batch: BatchGateway, store: BlobStore) -> Iterator[bytes]:
    """A zip of every task's stdout.txt and stderr.txt (entries `<task id>/stdout.txt`; `task_ids` holds ids or
    (id, start time of its last attempt) pairs), produced while it is read: each file is copied in ranged reads,
    from its saved copy when there is one, else from the node, so memory holds one chunk whatever the job's size.
    Files that could not be read are named, with the reason, in MISSING.txt at the end."""
    try:
        saved = {info.path: info for info in store.list_blobs(settings.STORAGE_LOGS_CONTAINER, f"{job_id}/")}
    except GatewayError:
        saved = {}                      # storage did not answer: every file comes from its node, if it can

    def entries() -> Iterator[tuple[str, Readable]]:
        for task_id, started in (t if isinstance(t, tuple) else (t, None) for t in task_ids):
            for name in SAVED_FILES:
                info = saved.get(saved_path(job_id, task_id, name) or "")   # SAVED_FILES all have a path
                if info is not None and not saved_for_attempt(info.last_modified, started):
                    info = None         # an earlier attempt's copy: the node has this attempt's
                source = SavedFile(store, info) if info else NodeFile(batch, job_id, task_id, name)
                yield f"{task_id}/{name}", source

    return zip_stream(entries(), why=_why)


def _why(error: GatewayError) -> str:
    if isinstance(error, NotFound) or (isinstance(error, Rejected) and error.status == 409):
        return "the node no longer has it and no saved copy exists"
    return "Batch or storage did not answer"
