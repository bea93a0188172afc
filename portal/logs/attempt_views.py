"""An earlier attempt's output: the stdout/stderr of an attempt a retry replaced, from the copy the archiver kept in
Blob (batchsync/archive.py, `attempts/<n>/`), in the same windows as a task's output."""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_safe

from batchsync.accounts import blob_store
from batchsync.gateway import BlobStore, GatewayError
from portal.access import SignedInRequest
from portal.jobs import selectors
from portal.logs import services, windows
from portal.logs.ansi import ansi_to_html
from portal.logs.files import SAVED_FILES, SavedFile, attempt_path, stream
from portal.logs.views import Row, header_safe, inert, int_param
from portal.models import TaskAttempt

NOT_KEPT = ("This attempt's output was not kept: Batch reruns a retry in the same folder, so the next attempt "
            "replaced it before a copy could be told apart.")
NOT_YET = "This attempt's output has not been saved yet. It is saved within a minute of the retry starting."
UNREACHABLE = "Storage did not answer while reading this file. Try again in a moment."


@require_safe
@login_required
def task_attempt_output(request: SignedInRequest, pk: int, number: int) -> HttpResponseBase:
    """stdout.txt or stderr.txt (`path`) of attempt `number` of the task, a window at a time; `download=1` streams
    the whole file."""
    task = selectors.task_get(user=request.user, pk=pk)
    attempt = TaskAttempt.objects.filter(task=task, number=number).first()
    path = request.GET.get("path", SAVED_FILES[0])
    if attempt is None or path not in SAVED_FILES:
        raise Http404("No such attempt or file")
    if not TaskAttempt.objects.filter(task=task, number__gt=number).exists():
        # The last attempt's output is the task's own, read on its page (from the node, or its saved copy).
        return redirect(reverse("task_detail", args=[task.pk]) + "#output")
    context: dict = {"task": task, "job": task.job, "attempt": attempt, "path": path, "files": SAVED_FILES}
    if not attempt.output_kept:
        context["problem"] = NOT_YET if attempt.output_saved_at is None else NOT_KEPT
        return render(request, "logs/attempt_output.html", context)
    blob = attempt_path(task.job.job_id, task.task_id, number, path)
    assert blob is not None
    start, end, line = int_param(request, "start"), int_param(request, "end"), int_param(request, "line")
    store = blob_store()
    try:
        info = store.info(settings.STORAGE_LOGS_CONTAINER, blob)
        if info is None:
            store.close()
            context["problem"] = f"No {path} was kept for this attempt."
            return render(request, "logs/attempt_output.html", context, status=404)
        source = SavedFile(store, info)
        if request.GET.get("download") == "1":
            return _download(request, attempt, path, source, store)
        window = windows.window(source, start=start, end=end)
    except GatewayError:
        store.close()
        context["problem"] = UNREACHABLE
        return render(request, "logs/attempt_output.html", context, status=503)
    store.close()
    first_line = 1 if window.at_start else line
    if end is not None and start is None and line and window.end == end:
        first_line = line - window.text.count("\n")
    context.update(window=window, first_line=first_line,
                   next_line=first_line + window.text.count("\n") if first_line else None,
                   rows=[Row(first_line + i if first_line else None, ansi_to_html(text))
                         for i, text in enumerate(window.lines)])
    return render(request, "logs/attempt_output.html", context)


def _download(request: SignedInRequest, attempt: TaskAttempt, path: str, source: SavedFile,
              store: BlobStore) -> StreamingHttpResponse:
    size = source.size()
    services.task_file_download_record(user=request.user, task=attempt.task, path=f"attempt {attempt.number}/{path}",
                                       source="saved", size=size)

    def chunks() -> Iterator[bytes]:
        try:
            yield from stream(source)
        finally:
            store.close()

    response = StreamingHttpResponse(chunks(), content_type="application/octet-stream")
    name = f"{attempt.task.job.job_id}-{attempt.task.task_id}-attempt{attempt.number}-{path}"
    response["Content-Disposition"] = f'attachment; filename="{header_safe(name)}"'
    response["Content-Length"] = str(size)
    inert(response)
    return response
