"""Bounded reads of a task's files on its node: a window of at most `max_bytes`, the tail, only the new
bytes after an offset, a shared tail per running task, and a constant-memory stream of the whole file."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.core.cache import cache

from portal.models import BatchAccount

from .accounts import gateway_for

WINDOW_BYTES = 64 * 1024
# Download chunks: big enough that per-request overhead stays small, small enough for flat memory.
DOWNLOAD_CHUNK_BYTES = 4 * 1024 * 1024
# However many people watch one running task, its tail is read from Batch about once per this many seconds.
SHARED_TAIL_SECONDS = 1.0
# A reader that died while holding the lock blocks the others for no longer than this.
SHARED_LOCK_SECONDS = 5
MAX_NAME_LENGTH = 1024

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
        size = batch.get_task_file_size(job_id, task_id, path)
        return _window(lambda s, n: batch.read_task_file(job_id, task_id, path, start=s, length=n),
                       size, start=start, end=end, max_bytes=max_bytes, hold_partial=hold_partial)


def _window(read, size: int, **bounds) -> LogWindow:
    data, start, end = _window_bytes(read, size, **bounds)
    return LogWindow(data.decode("utf-8", errors="replace"), start, end, size)


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
                max_bytes: int = WINDOW_BYTES, hold_partial: bool = True, gateway=None) -> LogWindow:
    """The tail of a running task's file, or the bytes after `after`, read from Batch at most about once
    a second per (task, file) however many viewers ask: each answer is cut from the last tail read,
    which lives in the Django cache for SHARED_TAIL_SECONDS.

    A viewer more than a window behind the tail gets its own bounded read from `after`."""
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
