"""Routes for the files of a task and of a node: list, read (with ranges), properties, delete."""

import os
import shutil

from .. import errors, files
from ..timeutil import from_rfc1123
from .base import Account, Request, Response, numbered, page


def _task_files_base(app: Account, request: Request) -> tuple[str, str]:
    with app.state.tx():
        root = app.service.task_root(request.params["job"], request.params["task"])
    return root, f"{app.account_url}/jobs/{request.params['job']}/tasks/{request.params['task']}/files"


def _node_files_base(app: Account, request: Request) -> tuple[str, str]:
    with app.state.tx():
        root = app.service.node_root(request.params["pool"], request.params["node"])
    url = f"{app.account_url}/pools/{request.params['pool']}/nodes/{request.params['node']}/files"
    return root, url


def list_task_files(app: Account, request: Request) -> Response:
    return _listing(app, request, *_task_files_base(app, request))


def get_task_file(app: Account, request: Request) -> Response:
    return _serve(request, *_task_files_base(app, request))


def delete_task_file(app: Account, request: Request) -> Response:
    root, _ = _task_files_base(app, request)
    return _delete(request, root)


def list_node_files(app: Account, request: Request) -> Response:
    return _listing(app, request, *_node_files_base(app, request))


def get_node_file(app: Account, request: Request) -> Response:
    return _serve(request, *_node_files_base(app, request))


def delete_node_file(app: Account, request: Request) -> Response:
    root, _ = _node_files_base(app, request)
    return _delete(request, root)


def _listing(app: Account, request: Request, root: str, url: str) -> Response:
    recursive = request.query.get("recursive", "false").lower() == "true"
    entries = files.list_entries(root, recursive, url)
    return page(app, request, numbered(entries, request), {"name": "string"}, lambda e: e, "files")


def _serve(request: Request, root: str, url: str) -> Response:
    path = files.resolve(root, request.params["path"])
    if not os.path.exists(path):
        raise errors.BatchError(404, "FileNotFound", "The specified file does not exist.",
                                {"FilePath": request.params["path"]})
    headers = files.properties_headers(path, f"{url}/{request.params['path']}")
    modified = from_rfc1123(headers["Last-Modified"])
    since = request.headers.get("if-modified-since")
    if since and modified <= from_rfc1123(since):
        raise errors.condition_not_met(304)
    since = request.headers.get("if-unmodified-since")
    if since and modified > from_rfc1123(since):
        raise errors.condition_not_met(412)
    if os.path.isdir(path):
        headers["Content-Length"] = "0"
        return Response(200, None, headers)
    size = os.path.getsize(path)
    if request.method == "HEAD":
        headers["Content-Length"] = str(size)
        return Response(200, None, headers)
    start, length = files.parse_range(request.headers.get("ocp-range"), size)
    if request.headers.get("ocp-range"):
        headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{size}"
    # A ranged read still answers 200: the SDK refuses 206.
    return Response(200, None, headers, file=(path, start, length))


def _delete(request: Request, root: str) -> Response:
    path = files.resolve(root, request.params["path"])
    if not os.path.lexists(path):
        raise errors.BatchError(404, "FileNotFound", "The specified file does not exist.",
                                {"FilePath": request.params["path"]})
    if os.path.isdir(path) and not os.path.islink(path):
        if request.query.get("recursive", "false").lower() != "true" and os.listdir(path):
            raise errors.conflict("DirectoryNotEmpty", "The directory is not empty; pass recursive=true.")
        shutil.rmtree(path)
    else:
        os.remove(path)
    return Response(200)


ROUTES = [
    ("GET", "pools/{pool}/nodes/{node}/files", list_node_files),
    ("GET", "pools/{pool}/nodes/{node}/files/{path*}", get_node_file),
    ("HEAD", "pools/{pool}/nodes/{node}/files/{path*}", get_node_file),
    ("DELETE", "pools/{pool}/nodes/{node}/files/{path*}", delete_node_file),
    ("GET", "jobs/{job}/tasks/{task}/files", list_task_files),
    ("GET", "jobs/{job}/tasks/{task}/files/{path*}", get_task_file),
    ("HEAD", "jobs/{job}/tasks/{task}/files/{path*}", get_task_file),
    ("DELETE", "jobs/{job}/tasks/{task}/files/{path*}", delete_task_file),
]
