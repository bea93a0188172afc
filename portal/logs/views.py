"""A task's output on its page: the file picker, windows of a file read from the node while the task runs and
from the saved copy in Blob once it has ended (or once the node's copy is gone), the live tail, a bounded
search, downloads (one file streamed, a short-lived link to the saved copy, every log of a job as one zip)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_POST, require_safe

from batchsync.accounts import AccountNotConfigured, blob_store, gateway_for
from batchsync.gateway import GatewayError, NotFound, Rejected, Transient
from portal.access import SignedInRequest
from portal.downloads import header_safe, inert, too_many_tasks
from portal.jobs import selectors
from portal.logs import search, services, windows, zips
from portal.logs.ansi import ansi_to_html
from portal.logs.files import (
    SAVED_FILES,
    CleanedUpBeforeSaved,
    InvalidFileName,
    LogSource,
    NodeFile,
    SavedFile,
    open_file,
    saved_copy,
    stream,
    validate_name,
)
from portal.logs.tail import shared_tail
from portal.logs.windows import LogWindow, window_at
from portal.models import BatchAccount, Task

DEFAULT_FILE = "stdout.txt"
# Shown first in the picker, in this order; the task's other files follow by name.
STANDARD_FILES = ("stdout.txt", "stderr.txt")
# Seconds between live-tail polls: new lines show within this plus one shared read (≤ 1 s).
TAIL_POLL_SECONDS = 2

# A link to a saved copy lives this long: enough to start a download, short enough not to matter if it leaks.
LINK_MINUTES = 15
# Search results (the offsets of at most SEARCH_MAX_HITS matches) are kept this long, so next/previous read
# only the window around the next match, not the whole scanned part again.
SEARCH_CACHE_SECONDS = 300

NOT_STARTED = "This task has not started on a node yet, so it has no output to show. This part updates when it starts."
NODE_GONE = "The node no longer has this file (the task's files were cleaned up, or its node or job is gone)."
CLEANED_BEFORE_SAVED = ("The node's copy was cleaned up before it could be saved, so this file is no longer "
                        "available anywhere.")
UNREACHABLE = "Batch did not answer while reading this file. Try again in a moment."
NOT_SAVED = "Only stdout.txt and stderr.txt are saved to storage, and this task has no saved copy of this file yet."


@dataclass(frozen=True)
class Row:
    number: int | None
    html: str
    hit: bool = False


def _task(request: SignedInRequest, pk: int) -> Task:
    return selectors.task_get(user=request.user, pk=pk)


def _path(request: HttpRequest) -> str:
    """The requested file name, or 404 for names no task's file list could hold (checked before any
    request goes to Batch)."""
    path = request.GET.get("path", DEFAULT_FILE)
    try:
        return validate_name(path)
    except InvalidFileName:
        raise Http404("No such file") from None


def int_param(request: HttpRequest, name: str) -> int | None:
    value = request.GET.get(name, "")
    if not value:
        return None
    if not value.isdigit() or len(value) > 18:
        raise Http404(f"Bad {name}")
    return int(value)


# Either stops the reading: Batch refused or failed, or this process cannot reach the account at all.
Unreadable = (GatewayError, AccountNotConfigured)


def _problem(error: GatewayError | AccountNotConfigured) -> str:
    """What to tell a person when Batch cannot hand over the file."""
    if isinstance(error, AccountNotConfigured):
        # Which account and which setting: waiting will not help, so the page says it plainly and stops polling.
        return str(error)
    if isinstance(error, CleanedUpBeforeSaved):
        return CLEANED_BEFORE_SAVED
    if isinstance(error, Rejected) and error.code == "TaskFilesUnavailable":
        return NOT_STARTED
    if isinstance(error, (NotFound, Rejected)):
        return NODE_GONE
    return UNREACHABLE


def _rows(window: LogWindow, first_line: int | None, *, highlight: re.Pattern | None = None,
          current: int | None = None) -> list[Row]:
    return [Row(first_line + i if first_line else None, ansi_to_html(line, highlight=highlight), i == current)
            for i, line in enumerate(window.lines)]


def _next_line(window: LogWindow, first_line: int | None) -> int | None:
    """The number of the line that starts at `window.end`, when the window's own numbers are known."""
    if not first_line:
        return None
    return first_line + window.text.count("\n")


def _window_context(task: Task, path: str, window: LogWindow, first_line: int | None, live: bool,
                    source: LogSource | None = None) -> dict:
    if window.at_start:
        first_line = 1
    rows = _rows(window, first_line)
    return {
        "task": task, "path": path, "window": window, "rows": rows, "live": live, "source": source,
        "first_line": first_line, "next_line": _next_line(window, first_line),
        # Where what the page shows of the file begins: a tail poll appends, so its answers keep this start.
        "shown_from": window.start,
        # "Load earlier" ends where this window starts; its first line number follows from its length.
        "tail_poll_seconds": TAIL_POLL_SECONDS,
    }


@require_safe
@login_required
def task_output(request: SignedInRequest, pk: int) -> HttpResponseBase:
    """The Output section: the task's files from Batch and the tail of the chosen one (stdout.txt)."""
    return _viewer(request, _task(request, pk), _path(request))


class _Opened:
    """A gateway and a blob store for one request (or one streamed response), closed together."""

    def __init__(self, account: BatchAccount) -> None:
        self._stack = ExitStack()
        self.batch = self._stack.enter_context(gateway_for(account))
        self.store = self._stack.enter_context(blob_store())

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> _Opened:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _file_names(opened: _Opened, task: Task, source: NodeFile | SavedFile) -> list[str]:
    """The picker's files: the node's list, or the saved ones when the node's copy is gone."""
    try:
        files = opened.batch.list_task_files(task.job.job_id, task.task_id)
        names = {f.name for f in files if not f.is_directory}
    except GatewayError:
        if source.kind != "saved":
            raise
        names = {n for n in SAVED_FILES
                 if n == source.path or saved_copy(opened.store, task.job.job_id, task.task_id, n,
                                                        attempt_started=task.start_time)}
    return [n for n in STANDARD_FILES if n in names] + sorted(names - set(STANDARD_FILES))


def _viewer(request: SignedInRequest, task: Task, path: str) -> HttpResponse:
    live = task.is_live
    context = {"task": task, "path": path, "live": live}
    try:
        with _Opened(task.job.account) as opened:
            source = open_file(task, path, batch=opened.batch, store=opened.store, live=live)
            following = live and source.kind == "node"
            if following:
                window = shared_tail(task.job.account, task.job.job_id, task.task_id, path,
                                          gateway=opened.batch)
            else:
                window = windows.window(source)
            files = _file_names(opened, task, source)
    except Unreadable as error:
        context["problem"] = _problem(error)
        context["retry"] = live and not isinstance(error, AccountNotConfigured)
        return render(request, "logs/output.html#viewer", context)
    context["files"] = files
    context.update(_window_context(task, path, window, None, following, source))
    return render(request, "logs/output.html#viewer", context)


@require_safe
@login_required
def task_output_window(request: SignedInRequest, pk: int) -> HttpResponseBase:
    """One window of a file: `start` (from there on), `end` (the window ending there), neither (the tail)."""
    task = _task(request, pk)
    path = _path(request)
    start, end, line = int_param(request, "start"), int_param(request, "end"), int_param(request, "line")
    live = task.is_live
    try:
        with _Opened(task.job.account) as opened:
            source = open_file(task, path, batch=opened.batch, store=opened.store, live=live)
            live = live and source.kind == "node"
            if start is None and end is None and live:
                window = shared_tail(task.job.account, task.job.job_id, task.task_id, path,
                                          gateway=opened.batch)
            else:
                window = windows.window(source, start=start, end=end, hold_partial=live)
    except Unreadable as error:
        return render(request, "logs/output.html#window", {"task": task, "path": path, "problem": _problem(error)})
    first_line = line
    if end is not None and start is None and line:
        # "Load earlier" passes the number of the line at `end`; this window's lines come just before it.
        first_line = line - window.text.count("\n") if window.end == end else None
    return render(request, "logs/output.html#window",
                  _window_context(task, path, window, first_line, live, source))


@require_safe
@login_required
def task_output_tail(request: SignedInRequest, pk: int) -> HttpResponseBase:
    """Only the bytes written after `after`, as rows to append, with the next poll (none once the task
    can no longer write, which stops the polling)."""
    task = _task(request, pk)
    path = _path(request)
    after, line, shown_from = int_param(request, "after"), int_param(request, "line"), int_param(request, "from")
    if after is None:
        raise Http404("after is required")
    live = task.is_live
    source: LogSource | None = None
    try:
        if live:
            window = shared_tail(task.job.account, task.job.job_id, task.task_id, path, after=after,
                                      skip_ahead=True)
        else:
            # The last read: everything up to the end, the unfinished last line included, from the saved
            # copy when there is one (the same bytes).
            with _Opened(task.job.account) as opened:
                source = open_file(task, path, batch=opened.batch, store=opened.store, live=False)
                window = windows.window(source, start=after)
    except Transient:
        window, live = LogWindow("", after, after, after), True     # try again at the next poll
    except (NotFound, Rejected) as error:
        if not live or isinstance(error, CleanedUpBeforeSaved):
            return render(request, "logs/output.html#tail_problem", {"problem": _problem(error)})
        # The node's copy went away under a running task (node removed, task or job deleted): the viewer
        # opens again, showing the saved copy if there is one, or says what happened.
        response = _viewer(request, task, path)
        response["HX-Retarget"], response["HX-Reswap"] = "#log-viewer", "outerHTML"
        return response
    except Unreadable as error:
        return render(request, "logs/output.html#tail_problem", {"problem": _problem(error)})
    if window.size < after:
        # The file is shorter than what the viewer already shows: Batch ran the task again (a retry)
        # and the new attempt started a new file. Replace the whole viewer rather than append to it.
        response = _viewer(request, task, path)
        response["HX-Retarget"], response["HX-Reswap"] = "#log-viewer", "outerHTML"
        return response
    skipped = max(0, window.start - after)
    if skipped:
        line = None          # the lines skipped are not counted, so what follows has no known numbers
    context = _window_context(task, path, window, line, live, source)
    context["first_line"], context["rows"], context["skipped"] = line, _rows(window, line), skipped
    # The window starts where the last poll ended; what the page shows still starts where it did.
    context["shown_from"] = window.start if shown_from is None or shown_from > window.start else shown_from
    # The task has ended: the answer also says where the rest was read from (the saved copy, usually).
    context["ended"] = not live
    context["next_line"] = _next_line(window, line)
    # More than a window behind: keep polling right away rather than waiting for new output.
    context["live"] = live or not window.at_end
    return render(request, "logs/output.html#tail", context)


def _open_stream(task: Task, path: str) -> tuple[LogSource, int, Iterator[bytes]]:
    """(source, size, chunks) for a whole file; the gateway and store close when the chunks end or are closed."""
    opened = _Opened(task.job.account)
    try:
        source = open_file(task, path, batch=opened.batch, store=opened.store, live=task.is_live)
        size = source.size()
    except BaseException:
        opened.close()
        raise

    def chunks() -> Iterator[bytes]:
        try:
            yield from stream(source)
        finally:
            opened.close()

    return source, size, chunks()


@require_safe
@login_required
def task_output_download(request: SignedInRequest, pk: int) -> HttpResponseBase:
    """The whole file as an attachment, streamed in ranges with constant memory: from the saved copy when that
    is what the viewer shows, else from the node."""
    task = _task(request, pk)
    path = _path(request)
    try:
        source, size, chunks = _open_stream(task, path)
    except Unreadable as error:
        return HttpResponse(_problem(error), status=404 if isinstance(error, (NotFound, Rejected)) else 503,
                            content_type="text/plain; charset=utf-8")
    services.task_file_download_record(user=request.user, task=task, path=path, source=source.kind, size=size)
    response = StreamingHttpResponse(chunks, content_type="application/octet-stream")
    filename = f"{task.job.job_id}-{task.task_id}-{path.replace('/', '_')}"
    # Our ids are [A-Za-z0-9_-] and names were validated, but quote anyway: the header must stay one value.
    response["Content-Disposition"] = f'attachment; filename="{header_safe(filename)}"'
    response["Content-Length"] = str(size)
    inert(response)
    return response


@require_POST
@login_required
def task_output_link(request: SignedInRequest, pk: int) -> HttpResponseBase:
    """A read-only link to the saved copy, valid for LINK_MINUTES: the browser downloads straight from
    storage, so a big file never passes through a web process."""
    task = _task(request, pk)
    path = request.POST.get("path", DEFAULT_FILE)
    try:
        validate_name(path)
    except InvalidFileName:
        raise Http404("No such file") from None
    context = {"task": task, "path": path}
    with blob_store() as store:
        saved = saved_copy(store, task.job.job_id, task.task_id, path, attempt_started=task.start_time)
        if saved is None:
            context["problem"] = NOT_SAVED
            return render(request, "logs/output.html#link", context, status=404)
        filename = header_safe(f"{task.job.job_id}-{task.task_id}-{path}")
        context["url"] = store.read_url(saved.info.container, saved.info.path, hours=LINK_MINUTES / 60,
                                        download_name=filename)
    context["expires"] = timezone.now() + timedelta(minutes=LINK_MINUTES)
    services.task_file_link_record(user=request.user, task=task, path=path, minutes=LINK_MINUTES, size=saved.size())
    return render(request, "logs/output.html#link", context)


# --- search --------------------------------------------------------------------------------------------------

def _search_hits(task: Task, source: NodeFile | SavedFile, needle: str, region: int) -> search.SearchResult:
    """The search of one region (SEARCH_SCAN_BYTES of the file), from the cache when the same file at the same
    size was searched for the same text a moment ago."""
    key = (f"logs:search:{task.pk}:{source.path}:{source.kind}:{source.size()}:{region}:"
           f"{needle.lower().encode().hex()}")
    found = cache.get(key)
    if found is None:
        found = search.search(source, needle, start=region * search.SEARCH_SCAN_BYTES,
                              max_scan=search.SEARCH_SCAN_BYTES, max_hits=search.SEARCH_MAX_HITS,
                              chunk_bytes=search.SEARCH_CHUNK_BYTES)
        cache.set(key, found, timeout=SEARCH_CACHE_SECONDS)
    return found


@require_safe
@login_required
def task_output_search(request: SignedInRequest, pk: int) -> HttpResponseBase:
    """Find text in the file: plain text, case-insensitive, at most SEARCH_SCAN_BYTES read per part of the file;
    the window opens at the `hit`-th match (-1: the last) of part `region`, with the matches marked.

    Plain text, not a regular expression: people look for an error message they saw, and a pattern typed into
    a page could send Python's re (which has no time limit) into catastrophic backtracking over 64 MiB, holding
    a web process; `.`, `*` and `(` here match themselves."""
    task = _task(request, pk)
    path = _path(request)
    needle = request.GET.get("q", "")
    region, hit = int_param(request, "region") or 0, request.GET.get("hit", "0")
    if not needle.strip() or len(needle) > search.SEARCH_MAX_CHARS:
        return render(request, "logs/output.html#search_problem",
                      {"problem": f"Type between 1 and {search.SEARCH_MAX_CHARS} characters to search for."})
    if not re.fullmatch(r"-1|\d{1,6}", hit):
        raise Http404("Bad hit")
    live = task.is_live
    try:
        with _Opened(task.job.account) as opened:
            source = open_file(task, path, batch=opened.batch, store=opened.store, live=live)
            live = live and source.kind == "node"
            found = _search_hits(task, source, needle, region)
            index = (len(found.hits) - 1 if hit == "-1" else min(int(hit), len(found.hits) - 1)) if found.hits else None
            if index is None:
                window = windows.window(source, start=found.start)
            else:
                window = window_at(source, found.hits[index])
    except Unreadable as error:
        return render(request, "logs/output.html#window", {"task": task, "path": path, "problem": _problem(error)})
    first_line, current = None, window.hit_row
    if index is not None and found.lines[index]:
        # A window opened at a hit knows the hit's row.
        first_line = found.lines[index] - current  # type: ignore[operator]
    context = _window_context(task, path, window, first_line, live, source)
    highlight = re.compile(re.escape(needle), re.IGNORECASE)
    context["rows"] = _rows(window, context["first_line"], highlight=highlight, current=current)
    context["search"] = {
        "q": needle, "found": found, "index": index, "region": region,
        "count": len(found.hits), "number": None if index is None else index + 1,
        "prev": _step(found, region, index, -1), "next": _step(found, region, index, +1),
        "scan_bytes": search.SEARCH_SCAN_BYTES, "max_hits": search.SEARCH_MAX_HITS,
    }
    return render(request, "logs/output.html#window", context)


def _step(found: search.SearchResult, region: int, index: int | None, direction: int) -> dict | None:
    """Where previous/next lead: another match of this part, or the next/previous part of the file."""
    if index is not None and 0 <= index + direction < len(found.hits):
        return {"region": region, "hit": index + direction, "further": False}
    if direction < 0 and region > 0:
        return {"region": region - 1, "hit": -1, "further": True}
    if direction > 0 and not found.more and found.end < found.size:
        return {"region": region + 1, "hit": 0, "further": True}
    return None


# --- a job's logs as one zip -----------------------------------------------------------------------------------

@require_safe
@login_required
def job_logs_zip(request: SignedInRequest, pk: int) -> HttpResponseBase:
    """Every task's stdout and stderr as <task id>/stdout.txt in one zip, written while it is sent: from the saved
    copy where there is one, else from the node; files that could not be read are listed in MISSING.txt."""
    job = selectors.job_get(user=request.user, pk=pk)
    refused = too_many_tasks(job, "logs", settings.STORAGE_LOGS_CONTAINER)
    if refused:
        return refused
    task_ids = list(job.tasks.order_by("task_id").values_list("task_id", "start_time"))
    try:
        opened = _Opened(job.account)
    except AccountNotConfigured as missing:
        return HttpResponse(_problem(missing), status=503, content_type="text/plain; charset=utf-8")

    def chunks() -> Iterator[bytes]:
        try:
            yield from zips.zip_job_logs(job.job_id, task_ids, batch=opened.batch, store=opened.store)
        finally:
            opened.close()

    services.job_logs_zip_record(user=request.user, job=job, tasks=len(task_ids))
    response = StreamingHttpResponse(chunks(), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{header_safe(job.job_id)}-logs.zip"'
    inert(response)
    return response

