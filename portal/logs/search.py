"""Plain-text search in a task file: case-insensitive, bounded in bytes read and matches counted, in ranged
reads so that one chunk is in memory at a time."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from portal.logs.files import LogSource

# Search: at most this much of a file is read per request, in chunks of this size, and counting stops here.
SEARCH_SCAN_BYTES = 64 * 1000 * 1000   # decimal, as the page says it: "64 MB" (portal/units.py)
SEARCH_CHUNK_BYTES = 4 * 1024 * 1024
SEARCH_MAX_HITS = 500
SEARCH_MAX_CHARS = 200


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


def _matcher(needle: str) -> tuple[Callable[[bytes], Iterator[tuple[int, int]]], int]:
    """(find(buffer) -> iterator of (start, end)), and the longest match in bytes.

    Case-insensitive plain text, matched on bytes so offsets stay byte offsets: an ASCII needle against the
    buffer lowered (bytes.lower touches ASCII only, so offsets do not move); any other needle as a pattern we
    build from escaped literals (each character or its other case), never from the person's text as a regex."""
    if needle.isascii():
        lowered = needle.lower().encode()

        def find_ascii(buffer: bytes) -> Iterator[tuple[int, int]]:
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


def search(source: LogSource, needle: str, *, start: int = 0, max_scan: int = SEARCH_SCAN_BYTES,
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
