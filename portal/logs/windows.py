"""Windows of a task file: at most WINDOW_BYTES of it, cut at line starts (or at least at whole UTF-8
characters), from the tail, from an offset, ending at an offset, or around a search hit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from batchsync.accounts import gateway_for
from batchsync.gateway import BatchGateway
from portal.logs.files import LogSource, NodeFile, validate_name
from portal.models import BatchAccount

WINDOW_BYTES = 64 * 1024
# A window opened at a search hit starts up to this many bytes before it, so a few lines of context show.
HIT_CONTEXT_BYTES = 1024


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


def window(source: LogSource, *, start: int | None = None, end: int | None = None, max_bytes: int = WINDOW_BYTES,
           hold_partial: bool = False) -> LogWindow:
    """A window of at most `max_bytes` of `source` (a NodeFile or SavedFile); bounds as read_window's."""
    data, start, end = window_bytes(source.read, source.size(), start=start, end=end, max_bytes=max_bytes,
                                    hold_partial=hold_partial)
    return LogWindow(data.decode("utf-8", errors="replace"), start, end, source.size(), source.kind)


def window_at(source: LogSource, offset: int, *, before: int = HIT_CONTEXT_BYTES,
              max_bytes: int = WINDOW_BYTES) -> LogWindow:
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


@contextmanager
def batch_gateway(account: BatchAccount, gateway: BatchGateway | None) -> Iterator[BatchGateway]:
    """`gateway` when the caller has one open, else one of our own for `account`, closed afterwards."""
    if gateway is not None:
        yield gateway
        return
    with gateway_for(account) as opened:
        yield opened


def read_window(account: BatchAccount, job_id: str, task_id: str, path: str, *, start: int | None = None,
                end: int | None = None, max_bytes: int = WINDOW_BYTES, hold_partial: bool = False,
                gateway: BatchGateway | None = None) -> LogWindow:
    """A window of at most `max_bytes` of the task file `path` on its node.

    No bounds: the tail (the last window). `start`: from exactly that byte on ("load later", and "after
    offset" for a live tail, which returns only the bytes written since). `end` alone: the window that
    ends there ("load earlier"). `hold_partial` keeps back an unfinished last line of a file still being
    written, so the next read starts at its beginning instead of splitting it across two reads.

    Raises InvalidFileName, or the gateway's NotFound / Rejected (TaskFilesUnavailable,
    TaskFilesCleanedup) / Transient."""
    validate_name(path)
    with batch_gateway(account, gateway) as batch:
        return window(NodeFile(batch, job_id, task_id, path), start=start, end=end, max_bytes=max_bytes,
                      hold_partial=hold_partial)


def window_bytes(read: Callable[[int, int], bytes], size: int, *, start: int | None, end: int | None, max_bytes: int,
                 hold_partial: bool) -> tuple[bytes, int, int]:
    """The bytes of a window of a file of `size` bytes, read through `read(start, length)`, and where they lie."""
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


def _trim(data: bytes, start: int, end: int, size: int, *, trim_head: bool,
          trim_tail: bool) -> tuple[bytes, int, int]:
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
