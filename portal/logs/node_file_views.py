"""Files on a compute node that belong to no task: a pool's start task output, and a job preparation (and release)
task's output on each node it ran on. Shown in windows like a task's output, with the same line numbers and colours."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.views.decorators.http import require_safe

from batchsync.accounts import AccountNotConfigured, gateway_for
from batchsync.gateway import BatchGateway, GatewayError, NotFound
from portal.access import SignedInRequest
from portal.downloads import header_safe, inert
from portal.jobs.selectors import job_get
from portal.jobs.waiting import preparation_failing
from portal.logs import node_files as on_node
from portal.logs.ansi import ansi_to_html
from portal.logs.files import InvalidFileName, stream
from portal.logs.views import Row, int_param
from portal.logs.windows import LogWindow
from portal.models import Job, Node, Pool
from portal.pools.selectors import pool_get

DEFAULT_PATH = "startup/stdout.txt"
STANDARD_FILES = ("stdout.txt", "stderr.txt")
# Batch's node ids: letters, digits and a few separators (tvm-1695681911_2-20161122t193202z).
NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")

NODE_GONE = ("This node is no longer in the pool, so its files are gone with it: Batch keeps a node's files only "
             "while the node exists.")
NO_FILE = "The node has no file by this name (yet): the task that writes it may not have started on this node."
UNREACHABLE = "Batch did not answer while reading this file. Try again in a moment."


def _problem(error: GatewayError | AccountNotConfigured) -> str:
    if isinstance(error, AccountNotConfigured):
        return str(error)   # which account, and which setting this process lacks
    if isinstance(error, NotFound):
        return NODE_GONE if error.code in ("NodeNotFound", "PoolNotFound") else NO_FILE
    return UNREACHABLE


def _rows(window: LogWindow, first_line: int | None) -> list[Row]:
    return [Row(first_line + i if first_line else None, ansi_to_html(line)) for i, line in enumerate(window.lines)]


def _prep_folder(gateway: BatchGateway, pool: Pool, node_id: str, path: str) -> tuple[str, Job, str]:
    """The job preparation or release folder `path` lies in on this node, its job, and which of the two tasks it
    belongs to ("Preparation" or "Release"); 404 unless Batch says that task of the job ran on this node of this
    pool in exactly that folder."""
    job = Job.objects.filter(account_id=pool.account_id, job_id=on_node.job_of(path)).first()
    if job is None:
        raise Http404("No such file")
    for status in gateway.list_job_preparation_status(job.job_id):
        if status.node_id != node_id or status.pool_id != pool.pool_id:
            continue
        roots = [(status.task_root_directory, "Preparation"),
                 (status.release.task_root_directory if status.release else None, "Release")]
        for root, kind in roots:
            if root and path.startswith(root + "/"):
                return root, job, kind
    raise Http404("No such file")


@require_safe
@login_required
def node_files(request: SignedInRequest, pk: int, node_id: str) -> HttpResponseBase:
    """One file of the start task or of a job preparation task on a node, a window at a time."""
    pool = pool_get(user=request.user, pk=pk)
    if not NODE_ID.match(node_id):
        raise Http404("No such node")
    path = request.GET.get("path", DEFAULT_PATH)
    try:
        on_node.validate_node_path(path)
    except InvalidFileName:
        raise Http404("No such file") from None
    if request.GET.get("download") == "1":
        return _download(pool, node_id, path)
    start, end, line = int_param(request, "start"), int_param(request, "end"), int_param(request, "line")
    node = Node.objects.filter(pool=pool, node_id=node_id).first()
    context: dict[str, Any] = {"pool": pool, "node": node, "node_id": node_id, "path": path, "job": None}
    try:
        with gateway_for(pool.account) as gateway:
            folder = on_node.START_TASK_FOLDER
            if on_node.job_of(path) is not None:
                folder, context["job"], context["job_task"] = _prep_folder(gateway, pool, node_id, path)
            context["folder"] = folder
            # Listed first: a node that is gone answers NodeNotFound here, a missing file only a bare 404 below.
            files = gateway.list_node_files(pool.pool_id, node_id, prefix=folder + "/")
            window = on_node.read_window(gateway, pool.pool_id, node_id, path, start=start, end=end)
    except (GatewayError, AccountNotConfigured) as error:
        context["problem"] = _problem(error)
        return render(request, "logs/node_file.html", context)
    names = {f.name for f in files if not f.is_directory}
    standard = [f"{folder}/{name}" for name in STANDARD_FILES]
    context["files"] = [n for n in standard if n in names] + sorted(n for n in names - set(standard)
                                                                    if n.count("/") <= folder.count("/") + 1)
    first_line = 1 if window.at_start else line
    if end is not None and start is None and line and window.end == end:
        # "Load earlier" passes the number of the line at `end`; this window's lines come just before it.
        first_line = line - window.text.count("\n")
    context.update(window=window, rows=_rows(window, first_line), first_line=first_line,
                   next_line=first_line + window.text.count("\n") if first_line else None)
    return render(request, "logs/node_file.html", context)


def _download(pool: Pool, node_id: str, path: str) -> HttpResponseBase:
    """The whole file as an attachment, streamed from the node in ranges with constant memory."""
    try:
        gateway = gateway_for(pool.account)
    except AccountNotConfigured as missing:
        return HttpResponse(_problem(missing), status=503, content_type="text/plain; charset=utf-8")
    try:
        if on_node.job_of(path) is not None:
            _prep_folder(gateway, pool, node_id, path)
        source = on_node.NodeRootFile(gateway, pool.pool_id, node_id, path)
        size = source.size()
    except GatewayError as error:
        try:
            if isinstance(error, NotFound) and not error.code:
                # A HEAD answer carries no error code: the node's file list tells a gone node from a missing file.
                gateway.list_node_files(pool.pool_id, node_id, prefix=on_node.START_TASK_FOLDER + "/")
        except GatewayError as listing:
            error = listing if isinstance(listing, NotFound) else error
        finally:
            gateway.close()
        return HttpResponse(_problem(error), status=404 if isinstance(error, NotFound) else 503,
                            content_type="text/plain; charset=utf-8")
    except BaseException:
        gateway.close()
        raise

    def chunks() -> Iterator[bytes]:
        try:
            yield from stream(source)
        finally:
            gateway.close()

    response = StreamingHttpResponse(chunks(), content_type="application/octet-stream")
    name = f"{pool.pool_id}-{node_id}-{path.replace('/', '_')}"
    response["Content-Disposition"] = f'attachment; filename="{header_safe(name)}"'
    response["Content-Length"] = str(size)
    inert(response)
    return response


@require_safe
@login_required
def job_preparation(request: SignedInRequest, pk: int) -> HttpResponseBase:
    """The job page's "Preparation and release task output": the nodes its preparation task ran on, from Batch,
    with how it and the job's release task (once the job has ended) ran there, and links to each one's stdout and
    stderr on that node. Loaded after the page, so the page never waits on Batch."""
    job = job_get(user=request.user, pk=pk)
    context = {"job": job, "rows": []}
    try:
        with gateway_for(job.account) as gateway:
            statuses = gateway.list_job_preparation_status(job.job_id)
    except NotFound:
        statuses = []
    except (GatewayError, AccountNotConfigured) as error:
        context["problem"] = _problem(error) if isinstance(error, AccountNotConfigured) else UNREACHABLE
        return render(request, "logs/_preparation.html", context)
    pools = {p.pool_id: p for p in Pool.objects.filter(account_id=job.account_id,
                                                       pool_id__in={s.pool_id for s in statuses})}
    context["rows"] = [(status, pools.get(status.pool_id)) for status in sorted(statuses, key=lambda s: s.node_id)]
    context["reasons"] = [reason for reason in [preparation_failing(job, statuses)] if reason]
    return render(request, "logs/_preparation.html", context)
