"""The live tail of a running task's file, shared: however many people watch one task, its tail is read from
Batch about once per SHARED_TAIL_SECONDS, through the Django cache (Redis, shared by the web processes)."""

from __future__ import annotations

import time

from django.core.cache import cache

from batchsync.gateway import BatchGateway
from portal.logs.files import validate_name
from portal.logs.windows import WINDOW_BYTES, LogWindow, batch_gateway, read_window, window_bytes
from portal.models import BatchAccount

# However many people watch one running task, its tail is read from Batch about once per this many seconds.
SHARED_TAIL_SECONDS = 1.0
# A reader that died while holding the lock blocks the others for no longer than this.
SHARED_LOCK_SECONDS = 5


def shared_tail(account: BatchAccount, job_id: str, task_id: str, path: str, *, after: int | None = None,
                max_bytes: int = WINDOW_BYTES, hold_partial: bool = True, skip_ahead: bool = False,
                gateway: BatchGateway | None = None) -> LogWindow:
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


def _read_snapshot(account: BatchAccount, job_id: str, task_id: str, path: str, max_bytes: int, hold_partial: bool,
                   gateway: BatchGateway | None) -> dict:
    with batch_gateway(account, gateway) as batch:
        size = batch.get_task_file_size(job_id, task_id, path)
        data, start, end = window_bytes(
            lambda s, n: batch.read_task_file(job_id, task_id, path, start=s, length=n),
            size, start=None, end=None, max_bytes=max_bytes, hold_partial=hold_partial)
    # Raw bytes, not text: viewers' offsets are byte offsets, and replacement characters change lengths.
    # Wall-clock time, as the cache may be shared by several web hosts.
    return {"data": data, "start": start, "end": end, "size": size, "read_at": time.time()}
