"""Bounded reads of a task's files, from its node or from the saved copy in Blob: a window of at most
`max_bytes`, the tail, only the new bytes after an offset, a shared tail per running task, a bounded
search, and a constant-memory stream of the whole file."""

from __future__ import annotations

import io
import re
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache

from portal.models import BatchAccount

from .accounts import gateway_for
from .gateway import BlobInfo, GatewayError, NotFound, Rejected

WINDOW_BYTES = 64 * 1024
# Download chunks: big enough that per-request overhead stays small, small enough for flat memory.
DOWNLOAD_CHUNK_BYTES = 4 * 1024 * 1024
# However many people watch one running task, its tail is read from Batch about once per this many seconds.
SHARED_TAIL_SECONDS = 1.0
# A reader that died while holding the lock blocks the others for no longer than this.
SHARED_LOCK_SECONDS = 5
MAX_NAME_LENGTH = 1024
# The files saved to Blob when a task ends, at <job id>/<task id>/logs/<name> in the logs container: by the
# task's own output-file rule (portal-made tasks) or by batchsync.archive (the rest).
SAVED_FILES = ("stdout.txt", "stderr.txt")
# Search: at most this much of a file is read per request, in chunks of this size, and counting stops here.
SEARCH_SCAN_BYTES = 64 * 1024 * 1024
SEARCH_CHUNK_BYTES = 4 * 1024 * 1024
SEARCH_MAX_HITS = 500
SEARCH_MAX_CHARS = 200
# The most tasks one zip of a job's logs holds.
ZIP_MAX_TASKS = 10_000
# A window opened at a search hit starts up to this many bytes before it, so a few lines of context show.
HIT_CONTEXT_BYTES = 1024

_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidFileName(ValueError):
    """A file name no task's file list could contain; nothing was sent to Batch."""


@dataclass(frozen=True)
class LogWindow:
    """Bytes `start`..`end` of a file of `size` bytes, decoded; `start` and `end` fall on line starts
    wherever the file allowed (a single line longer than the window is cut at a character boundary)."""

    text: str
    start: int
    end: int
    size: int
    source: str = "node"
    # For a window opened at a search hit: the index (in `lines`) of the line holding it.
    hit_row: int | None = None

    @property
    def at_start(self) -> bool:
        return self.start == 0

    @property
    def at_end(self) -> bool:
        return self.end >= self.size

    @property
    def lines(self) -> list[str]:
        if not self.text:
            return []
        return self.text[:-1].split("\n") if self.text.endswith("\n") else self.text.split("\n")


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


class CleanedUpBeforeSaved(NotFound):
    """The archiver found the node's copy gone before it could save it: there is no copy anywhere."""


class NodeFile:
    """A task file read from its node through the Batch gateway; its size is asked once per object."""

    kind = "node"
    saved_at = None

    def __init__(self, batch, job_id: str, task_id: str, path: str, node_id: str = ""):
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

    def __init__(self, store, info: BlobInfo):
        self._store, self.info = store, info
        self.path = info.path.rsplit("/", 1)[-1]
        self.saved_at = info.last_modified

    def size(self) -> int:
        return self.info.size

    def read(self, start: int, length: int) -> bytes:
        return self._store.read_range(self.info.container, self.info.path, start, length)


def saved_copy(store, job_id: str, task_id: str, path: str, *, attempt_started=None) -> SavedFile | None:
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


def saved_for_attempt(saved_at, attempt_started) -> bool:
    """Whether a copy saved at `saved_at` can hold the output of the attempt that started at `attempt_started`."""
    return attempt_started is None or saved_at is None or saved_at >= attempt_started - CLOCK_SKEW


def open_file(task, path: str, *, batch, store, live: bool) -> NodeFile | SavedFile:
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


def window(source, *, start: int | None = None, end: int | None = None, max_bytes: int = WINDOW_BYTES,
           hold_partial: bool = False) -> LogWindow:
    """A window of at most `max_bytes` of `source` (a NodeFile or SavedFile); bounds as read_window's."""
    data, start, end = _window_bytes(source.read, source.size(), start=start, end=end, max_bytes=max_bytes,
                                     hold_partial=hold_partial)
    return LogWindow(data.decode("utf-8", errors="replace"), start, end, source.size(), source.kind)


def window_at(source, offset: int, *, before: int = HIT_CONTEXT_BYTES, max_bytes: int = WINDOW_BYTES) -> LogWindow:
    """A window holding byte `offset` (a search hit) near its top, starting at a line start when one lies in
    the `before` bytes of context; the hit's own line is never cut away."""
    size = source.size()
    offset = max(0, min(offset, size))
    start = max(0, offset - before)
    end = min(size, start + max_bytes)
    data = source.read(start, end - start) if end > start else b""
    newline = data.find(b"\n")
    if start > 0 and newline != -1 and newline < offset - start:
        data, start = data[newline + 1:], start + newline + 1
    data, start, end = _trim(data, start, end, size, trim_head=False, trim_tail=end < size)
    return LogWindow(data.decode("utf-8", errors="replace"), start, end, size, source.kind,
                     hit_row=data[:max(0, offset - start)].count(b"\n"))


def stream(source, *, chunk_bytes: int = DOWNLOAD_CHUNK_BYTES) -> Iterator[bytes]:
    """The file's bytes up to the size it had when opened, one ranged read of `chunk_bytes` at a time."""
    size, offset = source.size(), 0
    while offset < size:
        data = source.read(offset, min(chunk_bytes, size - offset))
        if not data:
            return
        offset += len(data)
        yield data


@dataclass(frozen=True)
class SearchResult:
    """Matches of a plain-text search in bytes `start`..`end` of a file of `size` bytes: the byte offset of
    each (at most `max_hits`; `more` when counting stopped there) and, when the scan began at the file's start,
    the number of the line each is on."""

    needle: str
    hits: tuple[int, ...]
    lines: tuple[int | None, ...]
    more: bool
    start: int
    end: int
    size: int
    match_bytes: int

    @property
    def whole_file(self) -> bool:
        return self.start == 0 and self.end >= self.size


def _matcher(needle: str):
    """(find(buffer) -> iterator of (start, end)), and the longest match in bytes.

    Case-insensitive plain text, matched on bytes so offsets stay byte offsets: an ASCII needle against the
    buffer lowered (bytes.lower touches ASCII only, so offsets do not move); any other needle as a pattern we
    build from escaped literals (each character or its other case), never from the person's text as a regex."""
    if needle.isascii():
        lowered = needle.lower().encode()

        def find_ascii(buffer: bytes):
            haystack, position = buffer.lower(), 0
            while (found := haystack.find(lowered, position)) != -1:
                yield found, found + len(lowered)
                position = found + len(lowered)
        return find_ascii, len(lowered)
    parts, longest = [], 0
    for char in needle:
        forms = sorted({char, char.lower(), char.upper()})
        encoded = [f.encode() for f in forms]
        longest += max(len(e) for e in encoded)
        parts.append(b"(?:" + b"|".join(re.escape(e) for e in encoded) + b")")
    pattern = re.compile(b"".join(parts))
    return (lambda buffer: (m.span() for m in pattern.finditer(buffer))), longest


def search(source, needle: str, *, start: int = 0, max_scan: int = SEARCH_SCAN_BYTES,
           max_hits: int = SEARCH_MAX_HITS, chunk_bytes: int = SEARCH_CHUNK_BYTES) -> SearchResult:
    """Find `needle` (case-insensitive plain text) in at most `max_scan` bytes of `source` from `start`, read in
    ranges of `chunk_bytes` (one chunk and the few bytes a match may straddle are in memory at a time),
    stopping after `max_hits` matches."""
    if not needle or len(needle) > SEARCH_MAX_CHARS:
        raise ValueError("empty or too long")
    find, longest = _matcher(needle)
    size = source.size()
    start = max(0, min(start, size))
    end = min(size, start + max_scan)
    hits: list[int] = []
    lines: list[int | None] = []
    keep = b""                          # the end of the last chunk, where a match may begin
    offset = start                      # the file offset of the next unread byte
    newlines_before_buffer = 0          # newlines in start .. (the buffer's first byte)
    last_hit_end = start
    more = False
    while offset < end and not more:
        data = source.read(offset, min(chunk_bytes, end - offset))
        if not data:
            break
        buffer, buffer_start = keep + data, offset - len(keep)
        offset += len(data)
        counted_to, newlines = 0, newlines_before_buffer
        for match_start, match_end in find(buffer):
            absolute = buffer_start + match_start
            if absolute < last_hit_end:
                continue                # found already, in the previous buffer
            if len(hits) == max_hits:
                more = True
                break
            newlines += buffer.count(b"\n", counted_to, match_start)
            counted_to = match_start
            hits.append(absolute)
            lines.append(1 + newlines if start == 0 else None)
            last_hit_end = buffer_start + match_end
        keep = buffer[-(longest - 1):] if longest > 1 else b""
        newlines_before_buffer += buffer.count(b"\n", 0, len(buffer) - len(keep))
    return SearchResult(needle, tuple(hits), tuple(lines), more, start, min(offset, end), size, longest)


@contextmanager
def _gateway(account: BatchAccount, gateway):
    if gateway is not None:
        yield gateway
        return
    with gateway_for(account) as opened:
        yield opened


def read_window(account: BatchAccount, job_id: str, task_id: str, path: str, *, start: int | None = None,
                end: int | None = None, max_bytes: int = WINDOW_BYTES, hold_partial: bool = False,
                gateway=None) -> LogWindow:
    """A window of at most `max_bytes` of the task file `path` on its node.

    No bounds: the tail (the last window). `start`: from exactly that byte on ("load later", and "after
    offset" for a live tail, which returns only the bytes written since). `end` alone: the window that
    ends there ("load earlier"). `hold_partial` keeps back an unfinished last line of a file still being
    written, so the next read starts at its beginning instead of splitting it across two reads.

    Raises InvalidFileName, or the gateway's NotFound / Rejected (TaskFilesUnavailable,
    TaskFilesCleanedup) / Transient."""
    validate_name(path)
    with _gateway(account, gateway) as batch:
        return window(NodeFile(batch, job_id, task_id, path), start=start, end=end, max_bytes=max_bytes,
                      hold_partial=hold_partial)


def _window_bytes(read, size: int, *, start: int | None, end: int | None, max_bytes: int,
                  hold_partial: bool) -> tuple[bytes, int, int]:
    exact_start = start is not None
    exact_end = end is not None
    if start is not None:
        start = max(0, min(start, size))
        end = size if end is None else max(start, min(end, size))
        end = min(end, start + max_bytes)
    else:
        end = size if end is None else max(0, min(end, size))
        start = max(0, end - max_bytes)
    data = read(start, end - start) if end > start else b""
    return _trim(data, start, end, size, trim_head=not exact_start and start > 0,
                 trim_tail=(not exact_end and end < size) or hold_partial)


def _trim(data: bytes, start: int, end: int, size: int, *, trim_head: bool, trim_tail: bool):
    """Cut `data` (bytes start..end) to whole lines, or failing that to whole UTF-8 characters."""
    if trim_head:
        newline = data.find(b"\n")
        if newline != -1 and newline + 1 < len(data):
            data, start = data[newline + 1:], start + newline + 1
    # A window inside one long line: skip continuation bytes so no character is shown half.
    skip = 0
    while skip < min(3, len(data)) and start > 0 and data[skip] & 0xC0 == 0x80:
        skip += 1
    data, start = data[skip:], start + skip
    if trim_tail:
        newline = data.rfind(b"\n")
        if newline != -1:
            end -= len(data) - newline - 1
            data = data[:newline + 1]
    if end < size or trim_tail:
        cut = _incomplete_tail(data)
        data, end = data[:len(data) - cut], end - cut
    return data, start, end


def _incomplete_tail(data: bytes) -> int:
    """How many bytes at the end of `data` begin a UTF-8 character that the next bytes would finish."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue                       # a continuation byte: look further back for the lead byte
        if byte >= 0xC0:
            needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return back if needed > back else 0
        return 0
    return 0


def shared_tail(account: BatchAccount, job_id: str, task_id: str, path: str, *, after: int | None = None,
                max_bytes: int = WINDOW_BYTES, hold_partial: bool = True, skip_ahead: bool = False,
                gateway=None) -> LogWindow:
    """The tail of a running task's file, or the bytes after `after`, read from Batch at most about once
    a second per (task, file) however many viewers ask: each answer is cut from the last tail read,
    which lives in the Django cache (Redis, shared by the web processes) for SHARED_TAIL_SECONDS.

    A viewer more than a window behind the tail gets the latest tail itself with `skip_ahead` (its window then
    starts after `after`: the caller says what was skipped), else its own bounded read from `after`."""
    validate_name(path)
    key = f"logs:tail:{account.pk}:{job_id}:{task_id}:{path}"
    snapshot = _fresh(cache.get(key))
    if snapshot is None:
        if cache.add(key + ":lock", 1, timeout=SHARED_LOCK_SECONDS):
            try:
                snapshot = _read_snapshot(account, job_id, task_id, path, max_bytes, hold_partial, gateway)
                cache.set(key, snapshot, timeout=60)
            finally:
                cache.delete(key + ":lock")
        else:
            snapshot = _await_snapshot(key)
            if snapshot is None:      # the reader holding the lock is stuck or failed: read ourselves
                snapshot = _read_snapshot(account, job_id, task_id, path, max_bytes, hold_partial, gateway)
    start, end, size, data = snapshot["start"], snapshot["end"], snapshot["size"], snapshot["data"]
    if after is None or after == start:
        return LogWindow(data.decode("utf-8", errors="replace"), start, end, size)
    if start < after <= end:
        return LogWindow(data[after - start:].decode("utf-8", errors="replace"), after, end, size)
    if after > end:
        # The viewer is at (or past, if the file was replaced) the tail: nothing new yet.
        return LogWindow("", min(after, size), min(after, size), size)
    if skip_ahead:
        # A task writing faster than a window per poll would leave the viewer further behind at every poll;
        # a live view wants the newest lines, as `tail -f` does.
        return LogWindow(data.decode("utf-8", errors="replace"), start, end, size)
    return read_window(account, job_id, task_id, path, start=after, max_bytes=max_bytes,
                       hold_partial=hold_partial, gateway=gateway)


def _fresh(snapshot: dict | None) -> dict | None:
    if snapshot and time.time() - snapshot["read_at"] < SHARED_TAIL_SECONDS:
        return snapshot
    return None


def _await_snapshot(key: str) -> dict | None:
    deadline = time.monotonic() + SHARED_LOCK_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.02)
        snapshot = _fresh(cache.get(key))
        if snapshot is not None:
            return snapshot
        if cache.get(key + ":lock") is None:
            return _fresh(cache.get(key))
    return None


def _read_snapshot(account, job_id, task_id, path, max_bytes, hold_partial, gateway) -> dict:
    with _gateway(account, gateway) as batch:
        size = batch.get_task_file_size(job_id, task_id, path)
        data, start, end = _window_bytes(
            lambda s, n: batch.read_task_file(job_id, task_id, path, start=s, length=n),
            size, start=None, end=None, max_bytes=max_bytes, hold_partial=hold_partial)
    # Raw bytes, not text: viewers' offsets are byte offsets, and replacement characters change lengths.
    # Wall-clock time, as the cache may be shared by several web hosts.
    return {"data": data, "start": start, "end": end, "size": size, "read_at": time.time()}


def stream_file(account: BatchAccount, job_id: str, task_id: str, path: str, *,
                chunk_bytes: int = DOWNLOAD_CHUNK_BYTES, gateway=None) -> tuple[int, Iterator[bytes]]:
    """The file's size when the download began, and an iterator of its bytes up to that size in ranged
    reads of `chunk_bytes`; only one chunk is in memory at a time.

    The size is read first so a missing file fails before a response starts; the iterator closes its
    gateway when it ends or is closed."""
    validate_name(path)
    batch = gateway if gateway is not None else gateway_for(account)
    try:
        size = batch.get_task_file_size(job_id, task_id, path)
    except BaseException:
        if gateway is None:
            batch.close()
        raise

    def chunks() -> Iterator[bytes]:
        try:
            offset = 0
            while offset < size:
                length = min(chunk_bytes, size - offset)
                data = batch.read_task_file(job_id, task_id, path, start=offset, length=length)
                if not data:
                    return
                offset += len(data)
                yield data
        finally:
            if gateway is None:
                batch.close()

    return size, chunks()


class _ZipSink(io.RawIOBase):
    """Where zipfile writes: bytes wait here until the generator hands them on. Not seekable, so zipfile
    writes each entry's sizes after its data (a data descriptor) and never goes back."""

    def __init__(self):
        super().__init__()
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def zip_job_logs(job_id: str, task_ids: list, *, batch, store) -> Iterator[bytes]:
    """A zip of every task's stdout.txt and stderr.txt (entries `<task id>/stdout.txt`; `task_ids` holds ids or
    (id, start time of its last attempt) pairs), produced while it is read: each file is copied in ranged reads, from its saved copy when there is one, else from the node, so
    memory holds one chunk whatever the job's size. Members over 2 GiB get ZIP64 sizes. Files that could not be
    read are named, with the reason, in MISSING.txt at the end."""
    try:
        saved = {info.path: info for info in store.list_blobs(settings.STORAGE_LOGS_CONTAINER, f"{job_id}/")}
    except GatewayError:
        saved = {}                      # storage did not answer: every file comes from its node, if it can
    sink, missing = _ZipSink(), []
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for task_id, started in (t if isinstance(t, tuple) else (t, None) for t in task_ids):
            for name in SAVED_FILES:
                info = saved.get(saved_path(job_id, task_id, name))
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
