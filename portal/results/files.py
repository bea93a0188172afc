"""A result file: where tasks' outputs live in the outputs container (`<job id>/<task id>/outputs/<name>`), which of
them may be asked for by name, and which may be previewed and how. Pure: no database, no network."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath

from batchsync.gateway import BlobInfo
from portal.logs.files import InvalidFileName, validate_name
from portal.units import human_bytes

# render.expand_tasks puts each task's output files here, under its job and task (the logs go to `logs`).
OUTPUTS_FOLDER = "outputs"
# Text is shown as escaped text up to this many bytes; the rest is a download away.
PREVIEW_TEXT_BYTES = 64 * 1000   # decimal, so the page says "64 KB" (portal/units.py)
# Images bigger than this are not shown inline (a page would wait on them); they can be downloaded.
PREVIEW_IMAGE_BYTES = 10 * 1000 * 1000
# What is previewed, by the file's extension, never by its content or the type storage has for it: text and CSV
# as escaped text, raster images as images. SVG is not among them: it is a document that can carry script.
TEXT_KINDS = {".txt", ".text", ".log", ".out", ".csv", ".tsv", ".md", ".json"}
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
               ".webp": "image/webp"}


def job_prefix(job_id: str) -> str:
    return f"{job_id}/"


def task_prefix(job_id: str, task_id: str) -> str:
    return f"{job_id}/{task_id}/{OUTPUTS_FOLDER}/"


def blob_path(job_id: str, task_id: str, name: str) -> str:
    """The blob of the task's output `name`; InvalidFileName for a name that could climb out of the task's folder
    (`..`, `/x`, backslashes, control characters, %-escapes), so no name reaches storage outside the prefix."""
    return task_prefix(job_id, task_id) + validate_name(name)


def preview_kind(name: str) -> str | None:
    """"text", "image" or None (no preview: download only)."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in TEXT_KINDS:
        return "text"
    if suffix in IMAGE_TYPES:
        return "image"
    return None


def image_type(name: str) -> str | None:
    return IMAGE_TYPES.get(PurePosixPath(name).suffix.lower())


@dataclass(frozen=True)
class ResultFile:
    """One output file of one task. `name` is data: shown escaped, passed in query strings, never trusted as a path
    (`askable` says whether it can be asked for by name at all)."""

    task_id: str
    name: str
    size: int
    last_modified: datetime | None
    info: BlobInfo

    @property
    def askable(self) -> bool:
        try:
            validate_name(self.name)
        except InvalidFileName:
            return False
        return True

    @property
    def kind(self) -> str | None:
        return preview_kind(self.name) if self.askable else None

    @property
    def size_text(self) -> str:
        return human_bytes(self.size)


def result_file(info: BlobInfo, job_id: str) -> ResultFile | None:
    """The blob as a task's output file, or None when it is not at `<job id>/<task id>/outputs/<name>`."""
    head = job_prefix(job_id)
    if not info.path.startswith(head):
        return None
    task_id, _, rest = info.path[len(head):].partition("/")
    folder, _, name = rest.partition("/")
    if not task_id or folder != OUTPUTS_FOLDER or not name:
        return None
    return ResultFile(task_id, name, info.size, info.last_modified, info)
