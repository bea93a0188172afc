"""The archiver: copies the stdout/stderr of finished tasks from their nodes to Blob, so logs outlive the node,
the pool and Batch's retention, and notes each task's error line for failure triage.

`Task.logs_saved_at` and `Task.error_line` are the archiver's own bookkeeping, not mirrored Batch fields, so
this module (not batchsync/sync/) writes them, each with a conditional update. Tasks the portal creates upload
their logs themselves (an output-file rule to the same place); for those the archiver only finds the copy and
marks it. A file the node no longer has (cleaned up, task/job/pool deleted) is marked too, with nothing in Blob:
`logs_saved_at` set and no blob means "gone before it could be saved", and the task is not tried again. A task
retried after its logs were saved (its start_time is later) is saved again: the copy held the earlier attempt.

Earlier attempts (TaskAttempt rows the sync recorded) keep their output where it can be told apart: Batch reruns a
retry in the same folder, so the node's stdout.txt is the new attempt's from its first moment, but a task whose own
output-file rule uploads its stdout/stderr at every exit (the portal's tasks) leaves the failed attempt's copy in
Blob until the next attempt ends. `archive_attempts` copies that copy to `attempts/<n>/` while it is still the
failed attempt's (written after that attempt started, before the next one started, and not the copy already kept
for the attempt before). An attempt whose next one also ended first, or a task without such a rule, keeps nothing,
and the attempt says so (`output_saved_at` set, `output_kept` false)."""

from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from django.conf import settings
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from portal.logs.files import (
    CLOCK_SKEW,
    DOWNLOAD_CHUNK_BYTES,
    SAVED_FILES,
    attempt_path,
    saved_for_attempt,
    saved_path,
)
from portal.models import BatchAccount, Task, TaskAttempt, TaskState

from . import locks
from .accounts import AccountNotConfigured, blob_store, gateway_for
from .gateway import BatchGateway, BlobInfo, BlobStore, GatewayError, NotFound, Rejected

log = logging.getLogger(__name__)

# Tasks looked at per pass (newest first); the next pass, seconds later, takes the next ones.
BATCH_SIZE = 50
# Only tasks that ended this recently: Batch keeps a task's files 7 days by default, so older ones are rarely still
# there, and the bound keeps each pass a range scan of the end-time index however big the mirror grows (without
# it, a mirror where everything is saved would be scanned whole every pass).
LOOKBACK = timedelta(days=14)
# Only this much of the head and of the tail of stderr is read for the error line, however big the file.
ERROR_SCAN_BYTES = 64 * 1024
ERROR_LINE_CHARS = 300
_ERROR_WORDS = re.compile(rb"error|exception|fatal|traceback|failed", re.IGNORECASE)
_ANSI = re.compile(rb"\x1b\[[0-9;:?]*[@-~]")
# Batch's answers meaning "this task's files are not there and will not come back".
_GONE_CODES = {"TaskFilesCleanedup", "TaskFilesUnavailable"}
LOCK_NAME = "archive-finished-tasks"
T = TypeVar("T")


@dataclass
class ArchiveReport:
    saved: int = 0          # files copied from a node into Blob
    found: int = 0          # files already in Blob (the task's own output-file rule)
    gone: int = 0           # files the node no longer had
    tasks_marked: int = 0
    attempts_kept: int = 0      # earlier attempts whose output was copied before the next attempt replaced it
    attempts_lost: int = 0      # earlier attempts whose output was already replaced (or never uploaded)
    skipped: list[str] = field(default_factory=list)    # "<job>/<task>: why", left for the next pass


def archive_finished_tasks(*, limit: int = BATCH_SIZE, wait: float = 0.0,
                           tasks_per_second: float = 0.0) -> ArchiveReport | None:
    """One pass over up to `limit` completed tasks whose logs are not yet saved, newest first, starting at most
    `tasks_per_second` of them a second (0: as fast as they go); None when another pass held the lock for longer
    than `wait` seconds."""
    with locks.hold(LOCK_NAME, ttl=300, wait=wait) as acquired:
        if not acquired:
            return None
        since = timezone.now() - LOOKBACK
        # Not saved yet, or saved before the task started again (a retry): that copy holds an earlier attempt.
        unsaved = Q(logs_saved_at__isnull=True) | Q(logs_saved_at__lt=F("start_time") - CLOCK_SKEW)
        tasks = list(Task.objects.filter(unsaved, state=TaskState.COMPLETED, end_time__gte=since)
                     .select_related("job", "job__account")
                     .order_by("-end_time", "-pk")[:limit])
        report = ArchiveReport()
        by_account: dict[int, list[Task]] = defaultdict(list)
        for task in tasks:
            by_account[task.job.account_id].append(task)
        with blob_store() as store:
            for account_id, account_tasks in by_account.items():
                account = BatchAccount.objects.get(pk=account_id)
                try:
                    batch = gateway_for(account)
                except AccountNotConfigured:
                    # One account this worker cannot reach must not stop the others' logs being saved.
                    log.warning("archive: skipped account %s", account.name, exc_info=True)
                    continue
                with batch:
                    for task in paced(account_tasks, tasks_per_second):
                        archive_task(task, batch=batch, store=store, report=report)
            archive_attempts(store=store, report=report, since=since)
        return report


def archive_attempts(*, store: BlobStore, report: ArchiveReport | None = None, since: datetime | None = None,
                     limit: int = BATCH_SIZE) -> ArchiveReport:
    """Settle the output of up to `limit` earlier attempts (those with a later attempt recorded): copy it from
    the task's saved copy while that still holds it, or mark it lost."""
    report = report or ArchiveReport()
    # Found from the later attempt's side: attempts numbered 2 and up exist only for tasks Batch ran more than once,
    # so this reads a range of the number index, not every task's last attempt (which stays unsettled for good).
    unsettled_before = TaskAttempt.objects.filter(task=OuterRef("task"), number=OuterRef("number") - 1,
                                                  output_saved_at__isnull=True)
    later = TaskAttempt.objects.filter(Exists(unsettled_before), number__gte=2, task__gone_at__isnull=True)
    if since is not None:
        later = later.filter(last_synced_at__gte=since)
    for task_pk, number in later.order_by("-pk").values_list("task_id", "number")[:limit]:
        attempt = TaskAttempt.objects.select_related("task", "task__job").get(task_id=task_pk, number=number - 1)
        try:
            _keep_attempt_output(attempt, store, report)
        except GatewayError as error:
            log.warning("archive attempt %s of %s/%s: %s; trying again next pass", attempt.number,
                        attempt.task.job.job_id, attempt.task.task_id, error)
    return report


def _keep_attempt_output(attempt: TaskAttempt, store: BlobStore, report: ArchiveReport) -> None:
    task, container = attempt.task, settings.STORAGE_LOGS_CONTAINER
    job_id, task_id = task.job.job_id, task.task_id
    following = TaskAttempt.objects.filter(task_id=task.pk, number=attempt.number + 1).first()
    earlier_etag = (TaskAttempt.objects.filter(task_id=task.pk, number=attempt.number - 1)
                    .values_list("output_etag", flat=True).first() or "")
    copied: dict[str, BlobInfo] = {}
    if following is not None and following.start_time is not None:
        for name in SAVED_FILES:
            source = saved_path(job_id, task_id, name)
            target = attempt_path(job_id, task_id, attempt.number, name)
            assert source is not None and target is not None
            info = store.info(container, source)
            if info is None or not _holds_attempt(info, attempt, following.start_time, earlier_etag):
                continue
            store.put(container, target, _blob_chunks(store, info), length=info.size)
            after = store.info(container, source)
            if after is not None and after.etag == info.etag:     # not replaced while it was copied
                copied[name] = info
    kept = "stdout.txt" in copied
    marked = TaskAttempt.objects.filter(pk=attempt.pk, output_saved_at__isnull=True).update(
        output_saved_at=timezone.now(), output_kept=kept, output_etag=copied["stdout.txt"].etag if kept else "")
    if marked:
        if kept:
            report.attempts_kept += 1
        else:
            report.attempts_lost += 1


def _holds_attempt(info: BlobInfo, attempt: TaskAttempt, next_started: datetime, earlier_etag: str) -> bool:
    """Whether the task's saved copy `info` is this attempt's output: uploaded after it started and by the time the
    next attempt started (Blob's times have whole seconds, hence the truncation), and not the copy the attempt
    before it kept. No clock-skew allowance: a copy that cannot be told apart is not kept rather than mislabelled."""
    saved = info.last_modified
    # The next attempt uploads only when it ends, after it started; a retry starts at once, often within the same
    # second as the upload before it, so that second still counts (an attempt that both starts and ends within it
    # could be mistaken for the one before: the one case this cannot tell apart).
    if saved is None or saved > next_started.replace(microsecond=0):
        return False
    if attempt.start_time is not None and saved < attempt.start_time.replace(microsecond=0):
        return False
    return not (earlier_etag and info.etag == earlier_etag)


def _blob_chunks(store: BlobStore, info: BlobInfo) -> Iterator[bytes]:
    offset = 0
    while offset < info.size:
        data = store.read_range(info.container, info.path, offset, min(DOWNLOAD_CHUNK_BYTES, info.size - offset))
        if not data:
            return
        offset += len(data)
        yield data


def paced(items: Iterable[T], per_second: float) -> Iterator[T]:
    """`items`, each handed out at least 1/`per_second` seconds after the one before (all at once for 0)."""
    last_started: float | None = None
    for item in items:
        if per_second > 0 and last_started is not None:
            time.sleep(max(0.0, last_started + 1 / per_second - time.monotonic()))
        last_started = time.monotonic()
        yield item


def archive_task(task: Task, *, batch: BatchGateway, store: BlobStore, report: ArchiveReport | None = None) -> bool:
    """Save the task's stdout and stderr (or find them saved) and mark it; False when Batch or Blob could not
    answer, so a later pass tries again."""
    report = report or ArchiveReport()
    job_id, task_id = task.job.job_id, task.task_id
    ends: dict[str, tuple[bytes, bytes, int]] = {}
    try:
        for name in SAVED_FILES:
            outcome, head, tail, size = _save_file(batch, store, job_id, task_id, name, task.start_time)
            ends[name] = (head, tail, size)
            setattr(report, outcome, getattr(report, outcome) + 1)
    except GatewayError as error:
        log.warning("archive %s/%s: %s; trying again next pass", job_id, task_id, error)
        report.skipped.append(f"{job_id}/{task_id}: {error}")
        return False
    error_line = find_error_line(*ends["stderr.txt"])
    # Conditional on what this pass read: a pass that marked it meanwhile is not overwritten.
    marked = Task.objects.filter(pk=task.pk, logs_saved_at=task.logs_saved_at).update(
        logs_saved_at=timezone.now(), error_line=error_line)
    report.tasks_marked += marked
    return True


def _save_file(batch: BatchGateway, store: BlobStore, job_id: str, task_id: str, name: str,
               attempt_started: datetime | None = None) -> tuple[str, bytes, bytes, int]:
    """("found" | "saved" | "gone", head, tail, size): the copy in Blob found or made, with the file's first
    ERROR_SCAN_BYTES and the at most ERROR_SCAN_BYTES after them that end it; raises Transient and the like for
    a later pass."""
    container, path = settings.STORAGE_LOGS_CONTAINER, saved_path(job_id, task_id, name)
    assert path is not None  # the archiver saves only SAVED_FILES, which all have a path
    info = store.info(container, path)
    if info is not None and saved_for_attempt(info.last_modified, attempt_started):
        # Bounded by the blob's size: Blob refuses ranges past the end.
        head = store.read_range(container, path, 0, min(ERROR_SCAN_BYTES, info.size))
        tail_start = max(len(head), info.size - ERROR_SCAN_BYTES)
        return "found", head, store.read_range(container, path, tail_start, info.size - tail_start), info.size
    try:
        size = batch.get_task_file_size(job_id, task_id, name)
    except NotFound:
        return "gone", b"", b"", 0
    except Rejected as error:
        if _rejection_code(batch, job_id, task_id, name, error) not in _GONE_CODES:
            raise
        return "gone", b"", b"", 0
    capture = _HeadTail()
    try:
        store.put(container, path, capture.watch(_node_chunks(batch, job_id, task_id, name, size)), length=size)
    except _NodeFileGone:
        # The node dropped the file mid-copy; the next pass finds no node copy and marks it gone.
        raise Rejected(f"{name} went away while it was being saved", code="FileChangedWhileSaving") from None
    after_head = size - len(capture.head)
    tail = capture.tail[len(capture.tail) - min(len(capture.tail), after_head):] if after_head > 0 else b""
    return "saved", capture.head, tail, size


def _rejection_code(batch: BatchGateway, job_id: str, task_id: str, name: str, error: Rejected) -> str | None:
    """Batch's code for a refused file: a HEAD answer carries no body, so ask for one byte to hear it."""
    if error.code:
        return error.code
    try:
        batch.read_task_file(job_id, task_id, name, start=0, length=1)
    except Rejected as again:
        return again.code
    except NotFound:
        return "TaskFilesCleanedup"
    return None


class _NodeFileGone(Exception):
    pass


def _node_chunks(batch: BatchGateway, job_id: str, task_id: str, name: str, size: int) -> Iterator[bytes]:
    offset = 0
    while offset < size:
        try:
            data = batch.read_task_file(job_id, task_id, name, start=offset, length=min(DOWNLOAD_CHUNK_BYTES,
                                                                                         size - offset))
        except (NotFound, Rejected):
            raise _NodeFileGone() from None
        if not data:
            # Shorter than it said: Blob would refuse the upload (length mismatch); so do we, plainly.
            raise _NodeFileGone()
        offset += len(data)
        yield data


class _HeadTail:
    """Keeps the first and the last ERROR_SCAN_BYTES of a stream passing through: constant memory."""

    def __init__(self) -> None:
        self.head = b""
        self.tail = b""

    def watch(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            if len(self.head) < ERROR_SCAN_BYTES:
                self.head += chunk[:ERROR_SCAN_BYTES - len(self.head)]
            self.tail = (self.tail + chunk)[-ERROR_SCAN_BYTES:]
            yield chunk


def find_error_line(head: bytes, tail: bytes, size: int) -> str:
    """The first line of stderr that looks like an error (error, exception, fatal, traceback, failed; any case),
    else its last non-empty line; at most ERROR_LINE_CHARS, "" when stderr is empty.

    Only `head` (the file's first bytes) and `tail` (the bytes that end it, after the head) are looked at; when
    a gap lies between them, the line cut at each edge is left out. Colour codes are dropped: the line becomes
    part of a failure signature."""
    if len(head) + len(tail) >= size:
        lines = _lines(head + tail)
    else:
        lines = _lines(head, cut_last=True) + _lines(tail, cut_first=True)
    for line in lines:
        if _ERROR_WORDS.search(line):
            return _text(line)
    for line in reversed(lines):
        if line.strip():
            return _text(line)
    return ""


def _lines(data: bytes, *, cut_first: bool = False, cut_last: bool = False) -> list[bytes]:
    lines = _ANSI.sub(b"", data).split(b"\n")
    # A bounded read may begin or end inside a line; that piece is not a line of its own.
    if cut_first and len(lines) > 1:
        lines = lines[1:]
    if cut_last and len(lines) > 1:
        lines = lines[:-1]
    return [line.rstrip(b"\r") for line in lines]


def _text(line: bytes) -> str:
    text = line.decode("utf-8", errors="replace").strip()
    return "".join(c for c in text if c.isprintable())[:ERROR_LINE_CHARS]
