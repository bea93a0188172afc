"""A job's output files as one zip, produced while it is sent (portal.downloads writes it): listed from the outputs
container one page at a time and copied in ranged reads, so memory holds one page of names and one chunk."""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings

from batchsync.gateway import BlobStore, GatewayError, NotFound
from portal.downloads import Readable, zip_stream
from portal.logs.files import SavedFile
from portal.results.files import job_prefix, result_file


def zip_job_results(job_id: str, *, store: BlobStore) -> Iterator[bytes]:
    """Every output file of the job as `<task id>/<name>` in one zip. A file whose name could climb out of its folder
    when unpacked (`..`, a leading `/`) is left out and named, as data, in MISSING.txt, with what could not be read
    and where the listing stopped if storage stopped answering."""
    notes: list[str] = []

    def entries() -> Iterator[tuple[str, Readable]]:
        blobs = store.iter_blobs(settings.STORAGE_OUTPUTS_CONTAINER, job_prefix(job_id))
        while True:
            try:
                info = next(blobs)
            except StopIteration:
                return
            except GatewayError:
                notes.append("Storage stopped answering while the files were listed: the files after the last one "
                             "in this zip are missing. Download again in a moment.")
                return
            found = result_file(info, job_id)
            if found is None:
                continue
            if not found.askable:
                notes.append(f"Left out, its name could not be unpacked safely: {found.task_id}/{found.name!r}")
                continue
            yield f"{found.task_id}/{found.name}", SavedFile(store, info)

    return zip_stream(entries(), why=_why, notes=lambda: notes)


def _why(error: GatewayError) -> str:
    if isinstance(error, NotFound):
        return "it was deleted from storage while the zip was written"
    return "storage did not answer"
