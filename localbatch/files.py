"""Task and node files as the Files API shows them: safe path resolution, listings and properties."""

import os
import stat
from datetime import datetime, timezone
from urllib.parse import quote

from . import errors
from .timeutil import to_iso, to_rfc1123


def resolve(root: str, relative: str) -> str:
    """The file under `root` that `relative` names; refuses anything that would leave `root`."""
    cleaned = relative.replace("\\", "/")
    parts = [p for p in cleaned.split("/") if p not in ("", ".")]
    if cleaned.startswith("/") or ".." in parts or "\0" in cleaned:
        raise errors.BatchError(400, "InvalidUri",
                                "The file path must be relative to the task or node directory "
                                 "and may not contain '..'.",
                                {"FilePath": relative})
    target = os.path.join(root, *parts)
    real_root = os.path.realpath(root)
    real_target = os.path.realpath(target)
    if real_target != real_root and not real_target.startswith(real_root + os.sep):
        raise errors.BatchError(404, "FileNotFound", "The specified file does not exist.", {"FilePath": relative})
    return target


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def content_type(path: str) -> str:
    # What the service sends for task and node files: text/plain for .txt (stdout.txt, stderr.txt, …).
    return "text/plain" if path.lower().endswith(".txt") else "application/octet-stream"


def _stat(root: str, path: str) -> os.stat_result:
    """The file's status; for a symlink that points nowhere (a task may leave one behind) or out of the
    folder, the link's own, so a listing neither fails nor tells anything about files outside."""
    if os.path.islink(path):
        real_root, target = os.path.realpath(root), os.path.realpath(path)
        if not target.startswith(real_root + os.sep) or not os.path.exists(target):
            return os.lstat(path)
    return os.stat(path)


def entry(root: str, path: str, url_base: str) -> dict:
    info = _stat(root, path)
    name = os.path.relpath(path, root).replace(os.sep, "/")
    item = {"name": name, "url": f"{url_base}/{name}", "isDirectory": stat.S_ISDIR(info.st_mode)}
    if not item["isDirectory"]:
        item["properties"] = {
            "creationTime": to_iso(_moment(info.st_ctime)), "lastModified": to_iso(_moment(info.st_mtime)),
            "contentLength": str(info.st_size), "contentType": content_type(path),
            "fileMode": oct(info.st_mode)}
    return item


def list_entries(root: str, recursive: bool, url_base: str) -> list[dict]:
    """A folder's entries by name; recursive, level by level as the service lists them (the entries of the
    folder, then those of each sub-folder in turn), without following symlinked folders."""
    out, folders = [], [root]
    for folder in folders:
        with os.scandir(folder) as items:
            for item in sorted(items, key=lambda i: i.name):
                out.append(entry(root, item.path, url_base))
                if recursive and item.is_dir(follow_symlinks=False):
                    folders.append(item.path)
    return out


def properties_headers(path: str, url: str) -> dict[str, str]:
    """The headers of a file GET or HEAD, as the service writes them (it sends no ETag for files)."""
    info = os.stat(path)
    is_dir = stat.S_ISDIR(info.st_mode)
    return {
        "ocp-creation-time": to_rfc1123(_moment(info.st_ctime)),
        "ocp-batch-file-isdirectory": "True" if is_dir else "False",
        "ocp-batch-file-url": quote(url, safe=""),
        "ocp-batch-file-mode": oct(info.st_mode),
        "Last-Modified": to_rfc1123(_moment(info.st_mtime)),
        "Content-Type": "application/octet-stream" if is_dir else content_type(path),
    }


def parse_range(header: str | None, size: int) -> tuple[int, int]:
    """(start, length) for an ocp-range such as 'bytes=0-1023' (inclusive end), 'bytes=100-' or 'bytes=-500'."""
    if not header:
        return 0, size
    text = header.strip()
    if not text.startswith("bytes=") or "," in text:
        raise errors.BatchError(416, "InvalidRange", "The range must look like bytes=start-end.", {"ocp-range": header})
    first, _, last = text[6:].partition("-")
    try:
        if first == "":
            length = min(int(last), size)
            return size - length, length
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        raise errors.BatchError(416, "InvalidRange", "The range must look like bytes=start-end.",
                                {"ocp-range": header}) from None
    if start < 0 or end < start or (start >= size and size > 0):
        raise errors.BatchError(416, "InvalidRange", "The range is not satisfiable for this file.",
                                {"ocp-range": header, "FileSize": size})
    end = min(end, size - 1)
    return start, max(0, end - start + 1)
