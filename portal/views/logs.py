"""A task's output on its page: the file picker, windows of a file read from the node, the live tail of a
running task, and the download of a whole file."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from batchsync import logs
from batchsync.accounts import gateway_for
from batchsync.gateway import GatewayError, NotFound, Rejected, Transient
from portal import selectors
from portal.ansi import ansi_to_html

DEFAULT_FILE = "stdout.txt"
# Shown first in the picker, in this order; the task's other files follow by name.
STANDARD_FILES = ("stdout.txt", "stderr.txt")
# Seconds between live-tail polls: new lines show within this plus one shared read (≤ 1 s).
TAIL_POLL_SECONDS = 2

NOT_STARTED = "This task has not started on a node yet, so it has no output to show. This part updates when it starts."
NODE_GONE = "The node no longer has this file (the task's files were cleaned up, or its node or job is gone)."
UNREACHABLE = "Batch did not answer while reading this file. Try again in a moment."


@dataclass(frozen=True)
class Row:
    number: int | None
    html: str


def _task(request, pk: int):
    return selectors.task_get(user=request.user, pk=pk)


def _path(request) -> str:
    """The requested file name, or 404 for names no task's file list could hold (checked before any
    request goes to Batch)."""
    path = request.GET.get("path", DEFAULT_FILE)
    try:
        return logs.validate_name(path)
    except logs.InvalidFileName:
        raise Http404("No such file") from None


def _int(request, name: str) -> int | None:
    value = request.GET.get(name, "")
    if not value:
        return None
    if not value.isdigit() or len(value) > 18:
        raise Http404(f"Bad {name}")
    return int(value)


def _problem(error: GatewayError) -> str:
    """What to tell a person when Batch cannot hand over the file."""
    if isinstance(error, Rejected) and error.code == "TaskFilesUnavailable":
        return NOT_STARTED
    if isinstance(error, (NotFound, Rejected)):
        return NODE_GONE
    return UNREACHABLE


def _rows(window: logs.LogWindow, first_line: int | None) -> list[Row]:
    return [Row(first_line + i if first_line else None, ansi_to_html(line))
            for i, line in enumerate(window.lines)]


def _next_line(window: logs.LogWindow, first_line: int | None) -> int | None:
    """The number of the line that starts at `window.end`, when the window's own numbers are known."""
    if not first_line:
        return None
    return first_line + window.text.count("\n")


def _window_context(task, path: str, window: logs.LogWindow, first_line: int | None, live: bool) -> dict:
    if window.at_start:
        first_line = 1
    rows = _rows(window, first_line)
    return {
        "task": task, "path": path, "window": window, "rows": rows, "live": live,
        "first_line": first_line, "next_line": _next_line(window, first_line),
        # "Load earlier" ends where this window starts; its first line number follows from its length.
        "tail_poll_seconds": TAIL_POLL_SECONDS,
    }


@require_safe
@login_required
def task_output(request, pk: int):
    """The Output section: the task's files from Batch and the tail of the chosen one (stdout.txt)."""
    return _viewer(request, _task(request, pk), _path(request))


def _viewer(request, task, path: str):
    live = selectors.task_is_live(task)
    context = {"task": task, "path": path, "live": live}
    try:
        with gateway_for(task.job.account) as gateway:
            files = gateway.list_task_files(task.job.job_id, task.task_id)
            window = (logs.shared_tail if live else logs.read_window)(
                task.job.account, task.job.job_id, task.task_id, path, gateway=gateway)
    except GatewayError as error:
        context["problem"] = _problem(error)
        context["retry"] = live
        return render(request, "tasks/output.html#viewer", context)
    names = {f.name for f in files if not f.is_directory}
    context["files"] = [n for n in STANDARD_FILES if n in names] + sorted(names - set(STANDARD_FILES))
    context.update(_window_context(task, path, window, None, live))
    return render(request, "tasks/output.html#viewer", context)


@require_safe
@login_required
def task_output_window(request, pk: int):
    """One window of a file: `start` (from there on), `end` (the window ending there), neither (the tail)."""
    task = _task(request, pk)
    path = _path(request)
    start, end, line = _int(request, "start"), _int(request, "end"), _int(request, "line")
    live = selectors.task_is_live(task)
    try:
        if start is None and end is None and live:
            window = logs.shared_tail(task.job.account, task.job.job_id, task.task_id, path)
        else:
            window = logs.read_window(task.job.account, task.job.job_id, task.task_id, path,
                                      start=start, end=end, hold_partial=live)
    except GatewayError as error:
        return render(request, "tasks/output.html#window", {"task": task, "path": path, "problem": _problem(error)})
    first_line = line
    if end is not None and start is None and line:
        # "Load earlier" passes the number of the line at `end`; this window's lines come just before it.
        first_line = line - window.text.count("\n") if window.end == end else None
    return render(request, "tasks/output.html#window", _window_context(task, path, window, first_line, live))


@require_safe
@login_required
def task_output_tail(request, pk: int):
    """Only the bytes written after `after`, as rows to append, with the next poll (none once the task
    can no longer write, which stops the polling)."""
    task = _task(request, pk)
    path = _path(request)
    after, line = _int(request, "after"), _int(request, "line")
    if after is None:
        raise Http404("after is required")
    live = selectors.task_is_live(task)
    try:
        if live:
            window = logs.shared_tail(task.job.account, task.job.job_id, task.task_id, path, after=after)
        else:
            # The last read: everything up to the end, the unfinished last line included.
            window = logs.read_window(task.job.account, task.job.job_id, task.task_id, path, start=after)
    except Transient:
        window, live = logs.LogWindow("", after, after, after), True     # try again at the next poll
    except GatewayError as error:
        return render(request, "tasks/output.html#tail_problem", {"problem": _problem(error)})
    if window.size < after:
        # The file is shorter than what the viewer already shows: Batch ran the task again (a retry)
        # and the new attempt started a new file. Replace the whole viewer rather than append to it.
        response = _viewer(request, task, path)
        response["HX-Retarget"], response["HX-Reswap"] = "#log-viewer", "outerHTML"
        return response
    context = _window_context(task, path, window, line, live)
    context["first_line"], context["rows"] = line, _rows(window, line)
    context["next_line"] = _next_line(window, line)
    # More than a window behind: keep polling right away rather than waiting for new output.
    context["live"] = live or not window.at_end
    return render(request, "tasks/output.html#tail", context)


@require_safe
@login_required
def task_output_download(request, pk: int):
    """The whole file as an attachment, streamed from Batch in ranges with constant memory."""
    task = _task(request, pk)
    path = _path(request)
    try:
        size, chunks = logs.stream_file(task.job.account, task.job.job_id, task.task_id, path)
    except GatewayError as error:
        return HttpResponse(_problem(error), status=404 if isinstance(error, (NotFound, Rejected)) else 503,
                            content_type="text/plain; charset=utf-8")
    response = StreamingHttpResponse(chunks, content_type="application/octet-stream")
    filename = f"{task.job.job_id}-{task.task_id}-{path.replace('/', '_')}"
    # Our ids are [A-Za-z0-9_-] and names were validated, but quote anyway: the header must stay one value.
    response["Content-Disposition"] = f'attachment; filename="{_header_safe(filename)}"'
    response["Content-Length"] = str(size)
    # Never let a browser guess a type and render a log as a page.
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox"
    return response


def _header_safe(name: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in name)
