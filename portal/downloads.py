"""What every download the portal streams shares, logs and results alike: the headers that keep a file inert in a
browser, a file name safe in a header, the one limit on a job's zip, and a zip written while it is sent."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from django.http import HttpResponse
from django.http.response import HttpResponseBase

from batchsync.gateway import GatewayError
from portal.models import Job

# The most tasks one zip of a job's files (its logs, its results) covers: one download a person can wait for.
ZIP_MAX_TASKS = 10_000
# Download chunks: big enough that per-request overhead stays small, small enough for flat memory.
DOWNLOAD_CHUNK_BYTES = 4 * 1024 * 1024


def inert(response: HttpResponseBase) -> None:
    """Never let a browser guess a type and render a file as a page: no sniffing, and a sandbox without scripts,
    forms or origin should it render anyway."""
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox"


def header_safe(name: str) -> str:
    """`name` as plain ASCII letters, digits, `.`, `_` and `-`: a header value stays one value, whatever a task
    called its file."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in name)


def attachment(response: HttpResponseBase, filename: str) -> HttpResponseBase:
    """Make `response` a download saved as `filename` (made header-safe), kept inert."""
    response["Content-Disposition"] = f'attachment; filename="{header_safe(filename)}"'
    inert(response)
    return response


def too_many_tasks(job: Job, what: str, container: str) -> HttpResponse | None:
    """The plain refusal of a zip of `what` ("logs", "results") for a job of more than ZIP_MAX_TASKS tasks, or None
    when the job is within the limit; counted from an index, stopping one past the limit."""
    if len(job.tasks.order_by().values_list("pk", flat=True)[:ZIP_MAX_TASKS + 1]) <= ZIP_MAX_TASKS:
        return None
    return HttpResponse(
        f"This job has more than {ZIP_MAX_TASKS:,} tasks, more than one download can hold. Download the {what} of "
        f"single tasks from their pages, or ask an administrator for the folder {job.job_id}/ of the {what} "
        f"container ({container}) in storage.", status=413, content_type="text/plain; charset=utf-8")


class Readable(Protocol):
    """A file read in ranges (portal.logs.files's NodeFile and SavedFile, a result file)."""

    def size(self) -> int: ...

    def read(self, start: int, length: int) -> bytes: ...


def stream(source: Readable, *, chunk_bytes: int = DOWNLOAD_CHUNK_BYTES) -> Iterator[bytes]:
    """The file's bytes up to the size it had when opened, one ranged read of `chunk_bytes` at a time."""
    size, offset = source.size(), 0
    while offset < size:
        data = source.read(offset, min(chunk_bytes, size - offset))
        if not data:
            return
        offset += len(data)
        yield data


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


def zip_stream(entries: Iterable[tuple[str, Readable]], *, why: Callable[[GatewayError], str],
               missing_title: str = "These files could not be read:",
               notes: Callable[[], list[str]] = list) -> Iterator[bytes]:
    """A zip of `entries` ((name in the zip, file) pairs), produced while it is read: each file copied in ranged
    reads, so memory holds one chunk whatever the size. Members over 2 GiB get ZIP64 sizes. A file that could not
    be read (`why` says why in words) is named in MISSING.txt at the end, with `notes()` (asked once every entry
    is written) before it."""
    sink, missing = _ZipSink(), []
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, source in entries:
            try:
                size = source.size()
            except GatewayError as error:
                missing.append(f"{name}: {why(error)}")
                continue
            member = zipfile.ZipInfo(name, date_time=time.gmtime()[:6])
            member.compress_type, member.file_size = zipfile.ZIP_DEFLATED, size
            written = 0
            try:
                with archive.open(member, "w") as entry:
                    for chunk in stream(source):
                        entry.write(chunk)
                        written += len(chunk)
                        yield sink.take()
            except GatewayError as error:
                missing.append(f"{name}: cut after {written} of {size} bytes ({why(error)})")
            yield sink.take()
        lines = notes() + ([missing_title, *missing] if missing else [])
        if lines:
            archive.writestr("MISSING.txt", "\n".join(lines) + "\n")
    yield sink.take()
