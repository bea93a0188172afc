"""The results pages: a job's output files a page at a time (or one task's), the task page's Results section, a
preview of one file (text escaped and capped, images as images, nothing else), a download of one file and of all of
a job's files as one zip. The same reading rule as the job's logs (`jobs.selectors.job_get` / `task_get`)."""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.views.decorators.http import require_safe

from batchsync.accounts import blob_store
from batchsync.gateway import BlobInfo, BlobStore, GatewayError
from portal.access import SignedInRequest
from portal.downloads import attachment, inert, stream, too_many_tasks
from portal.jobs.selectors import job_get, task_get
from portal.logs.files import InvalidFileName, SavedFile, validate_name
from portal.models import Task
from portal.results import files, selectors, services, zips
from portal.units import human_bytes

UNREACHABLE = "Storage did not answer while listing the results. Try again in a moment."
STALE_PAGE = "This page of results can no longer be read (storage changed since). Start again from the first page."
NO_FILE = "This task has no output file of that name."
UPLOAD_FAILED = ("Some of this task's output files could not be uploaded to storage, so they are missing here. "
                 "What Batch said:")


def _task_param(request: HttpRequest) -> str | None:
    value = request.GET.get("task", "")
    if not value:
        return None
    if not selectors.TASK_ID.fullmatch(value):
        raise Http404("No such task")
    return value


def _token_param(request: HttpRequest) -> str | None:
    value = request.GET.get("page", "")
    if not value:
        return None
    if not selectors.TOKEN.fullmatch(value):
        raise Http404("No such page")
    return value


def _name_param(request: HttpRequest) -> str:
    """The output file asked for, or 404 for a name no output could have (checked before storage is asked)."""
    name = request.GET.get("name", "")
    try:
        validate_name(name)
    except InvalidFileName:
        raise Http404("No such file") from None
    return name


@require_safe
@login_required
def job_results(request: SignedInRequest, pk: int) -> HttpResponseBase:
    """A page of the job's output files (PAGE_SIZE, one listing request to storage), or of one task's (`task`)."""
    job = job_get(user=request.user, pk=pk)
    task_id, token = _task_param(request), _token_param(request)
    context: dict = {"job": job, "task_id": task_id, "token": token, "rules": selectors.output_rules(job),
                     "failures": selectors.upload_failures(job), "page": None}
    try:
        with blob_store() as store:
            context["page"] = selectors.results_page(job, store=store, task_id=task_id, token=token)
    except GatewayError as error:
        context["problem"] = STALE_PAGE if token and error.status == 400 else UNREACHABLE
    return render(request, "results/job.html", context)


@require_safe
@login_required
def task_results(request: SignedInRequest, pk: int) -> HttpResponseBase:
    """The task page's Results section (loaded after the page): the task's first files and whether it has more."""
    task = task_get(user=request.user, pk=pk)
    context: dict = {"task": task, "job": task.job, "page": None, "upload_failed": UPLOAD_FAILED}
    try:
        with blob_store() as store:
            context["page"] = selectors.results_page(task.job, store=store, task_id=task.task_id,
                                                     size=selectors.TASK_PAGE_SIZE)
    except GatewayError:
        context["problem"] = UNREACHABLE
    return render(request, "results/task.html", context)


def _find(task: Task, name: str, store: BlobStore) -> BlobInfo:
    info = selectors.result_info(task, name, store=store)
    if info is None:
        raise Http404(NO_FILE)
    return info


def _unreachable() -> HttpResponse:
    return HttpResponse("Storage did not answer. Try again in a moment.", status=503,
                        content_type="text/plain; charset=utf-8")


@require_safe
@login_required
def task_result_preview(request: SignedInRequest, pk: int) -> HttpResponseBase:
    """A page showing one output file: text and CSV as escaped text, at most PREVIEW_TEXT_BYTES of it; images as an
    <img> of `task_result_image`; any other kind only described, with its download."""
    task = task_get(user=request.user, pk=pk)
    name = _name_param(request)
    kind = files.preview_kind(name)
    context: dict = {"task": task, "job": task.job, "name": name, "kind": kind,
                     "text_cap": files.PREVIEW_TEXT_BYTES, "image_cap": files.PREVIEW_IMAGE_BYTES}
    try:
        with blob_store() as store:
            info = _find(task, name, store)
            context["info"] = info
            if kind == "text":
                data = store.read_range(info.container, info.path, 0, files.PREVIEW_TEXT_BYTES)
                context["text"] = data.decode("utf-8", errors="replace")
                context["cut"] = info.size > len(data)
    except GatewayError:
        return _unreachable()
    context["size_text"] = human_bytes(info.size)
    return render(request, "results/preview.html", context)


@require_safe
@login_required
def task_result_image(request: SignedInRequest, pk: int) -> HttpResponseBase:
    """An image output as an image, for the preview's <img>: the type comes from the extension (never sniffed, never
    storage's), the response is sandboxed, and only raster images up to PREVIEW_IMAGE_BYTES are served."""
    task = task_get(user=request.user, pk=pk)
    name = _name_param(request)
    content_type = files.image_type(name)
    if content_type is None:
        raise Http404("Only images are shown this way")
    found = _open_result(task, name)
    if isinstance(found, HttpResponse):
        return found
    opened, info = found
    if info.size > files.PREVIEW_IMAGE_BYTES:
        opened.close()
        return HttpResponse("This image is too big to show; download it instead.", status=413,
                            content_type="text/plain; charset=utf-8")
    response = StreamingHttpResponse(_closing(stream(SavedFile(opened, info)), opened), content_type=content_type)
    response["Content-Length"] = str(info.size)
    response["Content-Disposition"] = "inline"
    inert(response)
    return response


def _open_result(task: Task, name: str) -> tuple[BlobStore, BlobInfo] | HttpResponse:
    """An open store and the result's blob, for a response that streams it and closes the store when done; or the
    page saying storage did not answer. Http404 when there is no such result (the store closed either way)."""
    opened = blob_store()
    try:
        return opened, _find(task, name, opened)
    except GatewayError:
        opened.close()
        return _unreachable()
    except BaseException:
        opened.close()
        raise


def _closing(chunks: Iterator[bytes], store: BlobStore) -> Iterator[bytes]:
    try:
        yield from chunks
    finally:
        store.close()


@require_safe
@login_required
def task_result_download(request: SignedInRequest, pk: int) -> HttpResponseBase:
    """One output file as an attachment, streamed in ranged reads with constant memory, and recorded."""
    task = task_get(user=request.user, pk=pk)
    name = _name_param(request)
    found = _open_result(task, name)
    if isinstance(found, HttpResponse):
        return found
    opened, info = found
    services.result_download_record(user=request.user, task=task, name=name, size=info.size)
    response = StreamingHttpResponse(_closing(stream(SavedFile(opened, info)), opened),
                                     content_type="application/octet-stream")
    response["Content-Length"] = str(info.size)
    return attachment(response, f"{task.job.job_id}-{task.task_id}-{name.replace('/', '_')}")


@require_safe
@login_required
def job_results_zip(request: SignedInRequest, pk: int) -> HttpResponseBase:
    """Every output file of the job as <task id>/<name> in one zip, written while it is sent; the same limit and
    audit as the job's logs zip."""
    job = job_get(user=request.user, pk=pk)
    refused = too_many_tasks(job, "results", settings.STORAGE_OUTPUTS_CONTAINER)
    if refused:
        return refused
    store = blob_store()
    services.job_results_zip_record(user=request.user, job=job, tasks=job.tasks.count())
    response = StreamingHttpResponse(_closing(zips.zip_job_results(job.job_id, store=store), store),
                                     content_type="application/zip")
    return attachment(response, f"{job.job_id}-results.zip")
