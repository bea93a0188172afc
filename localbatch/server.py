"""The HTTP front of localbatch: routing, SharedKey auth, conditional headers, paging, fault injection."""

import bisect
import json
import os
import random
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from . import API_VERSION, auth, errors, files
from .odata import ODataError, compile_filter, parse_select, project
from .runtime import Runtime
from .service import (JOB_FILTER_FIELDS, NODE_FILTER_FIELDS, POOL_FILTER_FIELDS, PREP_STATUS_FILTER_FIELDS,
                      TASK_FILTER_FIELDS, BatchService)
from .state import AccountState
from .store import Store
from .timeutil import from_iso, from_rfc1123, to_rfc1123

MAX_BODY_BYTES = 4 * 1024 * 1024
FILE_CHUNK = 1 << 20


@dataclass
class Faults:
    """Opt-in failure injection, so clients can be tested against a service that misbehaves."""
    rate: float = 0.0            # share of requests answered with `status`
    status: int = 503            # 503 ServerBusy or 429 TooManyRequests
    retry_after: int = 1         # seconds, sent with 429/503 only
    delay_ms: int = 0            # added to every request
    path_pattern: str = ""       # only requests whose path matches this regex (empty: all)

    def as_dict(self) -> dict:
        return {"rate": self.rate, "status": self.status, "retryAfter": self.retry_after,
                "delayMs": self.delay_ms, "pathPattern": self.path_pattern}


@dataclass
class Request:
    method: str
    raw_url: str
    path: str
    params: dict
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def json(self):
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise errors.BatchError(400, "InvalidRequestBody", "The request body is not valid JSON.") from None


@dataclass
class Response:
    status: int
    body: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    file: tuple[str, int, int] | None = None   # (path, offset, length) streamed from disk


class LocalBatch:
    """One account: its state, scheduler, operations and HTTP routes."""

    def __init__(self, data_dir: str, account_name: str, account_key: str, account_url: str,
                 node_start_seconds: float = 0.5, faults: Faults | None = None):
        os.makedirs(data_dir, exist_ok=True)
        self.account_name = account_name
        self.account_key = account_key
        self.account_url = account_url.rstrip("/")
        self.faults = faults or Faults()
        self.state = AccountState(Store(os.path.join(data_dir, "state.sqlite3")))
        self.runtime = Runtime(self.state, data_dir, account_name, self.account_url, node_start_seconds)
        self.service = BatchService(self.state, self.runtime, self.account_url)
        self.routes = self._routes()

    def start(self) -> None:
        self.runtime.start()

    def stop(self) -> None:
        self.runtime.stop()
        with self.state.lock:
            self.state.store.close()

    # -- routing ------------------------------------------------------------------------------
    def _routes(self):
        s = self
        table = [
            ("GET", "pools", s.list_pools), ("POST", "pools", s.create_pool),
            ("GET", "pools/{pool}", s.get_pool), ("HEAD", "pools/{pool}", s.get_pool),
            ("DELETE", "pools/{pool}", s.delete_pool), ("PATCH", "pools/{pool}", s.patch_pool),
            ("POST", "pools/{pool}/updateproperties", s.replace_pool_properties),
            ("POST", "pools/{pool}/resize", s.resize_pool), ("POST", "pools/{pool}/stopresize", s.stop_resize),
            ("GET", "nodecounts", s.node_counts), ("GET", "supportedimages", s.supported_images),
            ("GET", "pools/{pool}/nodes", s.list_nodes), ("GET", "pools/{pool}/nodes/{node}", s.get_node),
            ("GET", "pools/{pool}/nodes/{node}/files", s.list_node_files),
            ("GET", "pools/{pool}/nodes/{node}/files/{path*}", s.get_node_file),
            ("HEAD", "pools/{pool}/nodes/{node}/files/{path*}", s.get_node_file),
            ("DELETE", "pools/{pool}/nodes/{node}/files/{path*}", s.delete_node_file),
            ("GET", "jobs", s.list_jobs), ("POST", "jobs", s.create_job),
            ("GET", "jobs/{job}", s.get_job), ("HEAD", "jobs/{job}", s.get_job),
            ("PATCH", "jobs/{job}", s.patch_job), ("PUT", "jobs/{job}", s.put_job),
            ("DELETE", "jobs/{job}", s.delete_job), ("POST", "jobs/{job}/terminate", s.terminate_job),
            ("POST", "jobs/{job}/disable", s.disable_job), ("POST", "jobs/{job}/enable", s.enable_job),
            ("GET", "jobs/{job}/taskcounts", s.task_counts),
            ("GET", "jobs/{job}/jobpreparationandreleasetaskstatus", s.prep_release_status),
            ("GET", "jobs/{job}/tasks", s.list_tasks), ("POST", "jobs/{job}/tasks", s.create_task),
            ("POST", "jobs/{job}/addtaskcollection", s.add_task_collection),
            ("GET", "jobs/{job}/tasks/{task}", s.get_task), ("PUT", "jobs/{job}/tasks/{task}", s.replace_task),
            ("DELETE", "jobs/{job}/tasks/{task}", s.delete_task),
            ("POST", "jobs/{job}/tasks/{task}/terminate", s.terminate_task),
            ("POST", "jobs/{job}/tasks/{task}/reactivate", s.reactivate_task),
            ("GET", "jobs/{job}/tasks/{task}/subtasksinfo", s.list_subtasks),
            ("GET", "jobs/{job}/tasks/{task}/files", s.list_task_files),
            ("GET", "jobs/{job}/tasks/{task}/files/{path*}", s.get_task_file),
            ("HEAD", "jobs/{job}/tasks/{task}/files/{path*}", s.get_task_file),
            ("DELETE", "jobs/{job}/tasks/{task}/files/{path*}", s.delete_task_file),
            ("GET", "_localbatch/faults", s.get_faults), ("PUT", "_localbatch/faults", s.put_faults),
        ]
        return [(method, pattern.split("/"), handler) for method, pattern, handler in table]

    def match(self, method: str, segments: list[str]):
        allowed = False
        for route_method, pattern, handler in self.routes:
            params = _match(pattern, segments)
            if params is None:
                continue
            allowed = True
            if route_method == method:
                return handler, params
        if allowed:
            raise errors.BatchError(405, "UnsupportedHttpVerb", f"The resource doesn't support the {method} verb.")
        raise errors.BatchError(404, "ResourceNotFound", "The specified resource does not exist.")

    def handle(self, request_line: tuple[str, str], headers: dict[str, str], body: bytes) -> Response:
        method, raw_url = request_line
        request_id = str(uuid.uuid4())
        try:
            split = urlsplit(raw_url)
            segments = [unquote(p) for p in split.path.strip("/").split("/")] if split.path.strip("/") else []
            if segments == ["_localbatch", "health"]:
                return Response(200, {"status": "ok"})
            self._inject_faults(split.path)
            auth.verify(method, raw_url, headers, self.account_name, self.account_key)
            query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
            if segments[:1] != ["_localbatch"] and "api-version" not in query:
                raise errors.BatchError(400, "MissingRequiredQueryParameter",
                                        "A query parameter that's mandatory for this request is not specified.",
                                        {"QueryParameterName": "api-version"})
            handler, params = self.match(method, segments)
            request = Request(method, raw_url, split.path, params, query, headers, body, request_id)
            response = handler(request)
        except errors.BatchError as exc:
            response = Response(exc.status, exc.body(request_id))
            if exc.retry_after is not None:
                response.headers["Retry-After"] = str(exc.retry_after)
        response.headers.setdefault("request-id", request_id)
        if headers.get("client-request-id"):
            response.headers["client-request-id"] = headers["client-request-id"]
        return response

    def _inject_faults(self, path: str) -> None:
        faults = self.faults
        if faults.delay_ms:
            time.sleep(faults.delay_ms / 1000)
        if faults.rate and (not faults.path_pattern or re.search(faults.path_pattern, path)) \
                and not path.startswith("/_localbatch") and random.random() < faults.rate:
            if faults.status == 429:
                raise errors.BatchError(429, "TooManyRequests", "The request was throttled (injected fault).",
                                        retry_after=faults.retry_after)
            raise errors.BatchError(faults.status, "ServerBusy", "The server is busy (injected fault).",
                                    retry_after=faults.retry_after if faults.status in (429, 503) else None)

    # -- helpers ------------------------------------------------------------------------------
    def _entity_response(self, request: Request, entity: dict, presented: dict, status: int = 200) -> Response:
        self._check_conditions(request, entity, read=True)
        select = self._select(request)
        body = project(presented, select) if select else presented
        return Response(status, None if request.method == "HEAD" else body, self._entity_headers(entity, presented))

    def _entity_headers(self, entity: dict, presented: dict | None = None) -> dict[str, str]:
        headers = {"ETag": entity["eTag"], "Last-Modified": to_rfc1123(entity["lastModified"])}
        if presented and presented.get("url"):
            headers["DataServiceId"] = presented["url"]
        return headers

    @staticmethod
    def _check_conditions(request: Request, entity: dict, read: bool) -> None:
        headers = request.headers
        etag = entity.get("eTag")
        modified = from_iso(entity["lastModified"]).replace(microsecond=0) if entity.get("lastModified") else None
        if_match = headers.get("if-match")
        if if_match and if_match != "*" and etag not in _etags(if_match):
            raise errors.condition_not_met(412)
        since = headers.get("if-unmodified-since")
        if since and modified and modified > from_rfc1123(since):
            raise errors.condition_not_met(412)
        if_none = headers.get("if-none-match")
        if if_none and (if_none == "*" or etag in _etags(if_none)):
            raise errors.condition_not_met(304 if read else 412)
        since = headers.get("if-modified-since")
        if since and modified and modified <= from_rfc1123(since):
            raise errors.condition_not_met(304 if read else 412)

    @staticmethod
    def _select(request: Request):
        try:
            return parse_select(request.query.get("$select"))
        except ODataError as exc:
            raise errors.invalid_query("$select", request.query.get("$select"), str(exc)) from None

    def _page(self, request: Request, entities, fields: dict, present) -> Response:
        """One page of a list: filter, $select and a nextLink that carries every list parameter."""
        query = request.query
        try:
            predicate = compile_filter(query.get("$filter"), fields)
        except ODataError as exc:
            raise errors.invalid_query("$filter", query.get("$filter"), str(exc)) from None
        select = self._select(request)
        try:
            page_size = int(query.get("maxresults") or 1000)
        except ValueError:
            raise errors.invalid_query("maxresults", query.get("maxresults"), "Expected an integer.") from None
        if not 1 <= page_size <= 1000:
            raise errors.BatchError(400, "OutOfRangeQueryParameterValue",
                                    "maxresults must be between 1 and 1000.",
                                    {"QueryParameterName": "maxresults", "QueryParameterValue": page_size})
        try:
            after = int(query.get("$skiptoken") or 0)
        except ValueError:
            raise errors.invalid_query("$skiptoken", query.get("$skiptoken"), "The skip token is not valid.") from None
        items, last_seq, more = [], None, False
        for seq, entity in entities:
            if seq <= after:
                continue
            presented = present(entity)
            if not predicate(presented):
                continue
            if len(items) == page_size:
                more = True
                break
            items.append(project(presented, select) if select else presented)
            last_seq = seq
        body = {"odata.metadata": f"{self.account_url}/$metadata", "value": items}
        if more:
            next_query = {"api-version": query.get("api-version", API_VERSION), "maxresults": page_size,
                          "$skiptoken": last_seq}
            for name in ("$filter", "$select", "$expand", "recursive"):
                if query.get(name):
                    next_query[name] = query[name]
            body["odata.nextLink"] = f"{self.account_url}{request.path}?{urlencode(next_query, quote_via=quote)}"
        return Response(200, body)

    @staticmethod
    def _after(entities: dict, request: Request):
        """(seq, entity) pairs in creation order, starting near the skip token so deep pages stay cheap."""
        values = list(entities.values())
        try:
            after = int(request.query.get("$skiptoken") or 0)
        except ValueError:
            after = 0
        if after:
            start = bisect.bisect_right(values, after, key=lambda e: e["_seq"])
            values = values[start:]
        return ((e["_seq"], e) for e in values)

    # -- pools --------------------------------------------------------------------------------
    def create_pool(self, request):
        with self.state.tx():
            pool = self.service.create_pool(request.json())
            return Response(201, None, self._entity_headers(pool, self.service.present_pool(pool)))

    def get_pool(self, request):
        with self.state.tx():
            pool = self.service.pool(request.params["pool"])
            return self._entity_response(request, pool, self.service.present_pool(pool))

    def list_pools(self, request):
        with self.state.tx():
            return self._page(request, self._after(self.state.pools, request), POOL_FILTER_FIELDS,
                              self.service.present_pool)

    def _write(self, request, entity_of, action, status: int, include_headers: bool = True):
        with self.state.tx():
            entity = entity_of()
            self._check_conditions(request, entity, read=False)
            action()
            headers = self._entity_headers(entity) if include_headers and entity.get("eTag") else {}
            return Response(status, None, headers)

    def delete_pool(self, request):
        pool_id = request.params["pool"]
        return self._write(request, lambda: self.service.pool(pool_id), lambda: self.service.delete_pool(pool_id), 202)

    def patch_pool(self, request):
        pool_id = request.params["pool"]
        return self._write(request, lambda: self.service.pool(pool_id),
                           lambda: self.service.update_pool(pool_id, request.json() or {}, replace=False), 200)

    def replace_pool_properties(self, request):
        pool_id = request.params["pool"]
        return self._write(request, lambda: self.service.pool(pool_id),
                           lambda: self.service.update_pool(pool_id, request.json() or {}, replace=True), 204)

    def resize_pool(self, request):
        pool_id = request.params["pool"]
        return self._write(request, lambda: self.service.pool(pool_id),
                           lambda: self.service.resize_pool(pool_id, request.json() or {}), 202)

    def stop_resize(self, request):
        pool_id = request.params["pool"]
        return self._write(request, lambda: self.service.pool(pool_id), lambda: self.service.stop_resize(pool_id), 202)

    def node_counts(self, request):
        with self.state.tx():
            rows = self.service.node_counts()
        return self._page(request, enumerate(rows, start=1), {"poolId": "string"}, lambda row: row)

    def supported_images(self, request):
        images = [{"nodeAgentSKUId": "batch.node.ubuntu 22.04", "osType": "linux", "verificationType": "verified",
                   "capabilities": [], "imageReference": {"publisher": "canonical", "offer": "0001-com-ubuntu-server-jammy",
                                                          "sku": "22_04-lts", "version": "latest"}},
                  {"nodeAgentSKUId": "batch.node.ubuntu 24.04", "osType": "linux", "verificationType": "verified",
                   "capabilities": [], "imageReference": {"publisher": "canonical", "offer": "ubuntu-24_04-lts",
                                                          "sku": "server", "version": "latest"}}]
        return self._page(request, enumerate(images, start=1), {"osType": "enum", "nodeAgentSKUId": "string"},
                          lambda image: image)

    # -- nodes --------------------------------------------------------------------------------
    def list_nodes(self, request):
        with self.state.tx():
            pool = self.service.pool(request.params["pool"])
            nodes = self.state.nodes[pool["id"].lower()]
            return self._page(request, self._after(nodes, request), NODE_FILTER_FIELDS,
                              lambda node: self.service.present_node(pool, node))

    def get_node(self, request):
        with self.state.tx():
            pool = self.service.pool(request.params["pool"])
            node = self.service.node(request.params["pool"], request.params["node"])
            presented = self.service.present_node(pool, node)
            select = self._select(request)
            return Response(200, project(presented, select) if select else presented)

    def _node_files_base(self, request) -> tuple[str, str]:
        with self.state.tx():
            root = self.service.node_root(request.params["pool"], request.params["node"])
        url = f"{self.account_url}/pools/{request.params['pool']}/nodes/{request.params['node']}/files"
        return root, url

    def list_node_files(self, request):
        root, url = self._node_files_base(request)
        return self._file_listing(request, root, url)

    def get_node_file(self, request):
        root, url = self._node_files_base(request)
        return self._serve_file(request, root, url)

    def delete_node_file(self, request):
        root, _ = self._node_files_base(request)
        return self._delete_file(request, root)

    # -- jobs ---------------------------------------------------------------------------------
    def create_job(self, request):
        with self.state.tx():
            job = self.service.create_job(request.json())
            return Response(201, None, self._entity_headers(job, self.service.present_job(job)))

    def get_job(self, request):
        with self.state.tx():
            job = self.service.job(request.params["job"])
            return self._entity_response(request, job, self.service.present_job(job))

    def list_jobs(self, request):
        with self.state.tx():
            return self._page(request, self._after(self.state.jobs, request), JOB_FILTER_FIELDS, self.service.present_job)

    def patch_job(self, request):
        job_id = request.params["job"]
        return self._write(request, lambda: self.service.job(job_id),
                           lambda: self.service.update_job(job_id, request.json() or {}, replace=False), 200)

    def put_job(self, request):
        job_id = request.params["job"]
        return self._write(request, lambda: self.service.job(job_id),
                           lambda: self.service.update_job(job_id, request.json() or {}, replace=True), 200)

    def delete_job(self, request):
        job_id = request.params["job"]
        return self._write(request, lambda: self.service.job(job_id), lambda: self.service.delete_job(job_id), 202)

    def terminate_job(self, request):
        job_id = request.params["job"]
        return self._write(request, lambda: self.service.job(job_id),
                           lambda: self.service.terminate_job(job_id, request.json()), 202)

    def disable_job(self, request):
        job_id = request.params["job"]
        return self._write(request, lambda: self.service.job(job_id),
                           lambda: self.service.disable_job(job_id, request.json() or {}), 202)

    def enable_job(self, request):
        job_id = request.params["job"]
        return self._write(request, lambda: self.service.job(job_id), lambda: self.service.enable_job(job_id), 202)

    def task_counts(self, request):
        with self.state.tx():
            return Response(200, self.service.task_counts(request.params["job"]))

    def prep_release_status(self, request):
        with self.state.tx():
            rows = self.service.prep_release_status(request.params["job"])
            return self._page(request, enumerate(rows, start=1), PREP_STATUS_FILTER_FIELDS, lambda row: row)

    # -- tasks --------------------------------------------------------------------------------
    def create_task(self, request):
        with self.state.tx():
            job = self.service.job(request.params["job"])
            task = self.service.create_task(request.params["job"], request.json())
            return Response(201, None, self._entity_headers(task, self.service.present_task(job, task)))

    def add_task_collection(self, request):
        with self.state.tx():
            results = self.service.add_task_collection(request.params["job"], request.json(), len(request.body))
        return Response(200, {"value": results})

    def get_task(self, request):
        with self.state.tx():
            job = self.service.job(request.params["job"])
            task = self.service.task(request.params["job"], request.params["task"])
            return self._entity_response(request, task, self.service.present_task(job, task))

    def list_tasks(self, request):
        with self.state.tx():
            job = self.service.job(request.params["job"])
            tasks = self.state.tasks[job["id"].lower()]
            return self._page(request, self._after(tasks, request), TASK_FILTER_FIELDS,
                              lambda task: self.service.present_task(job, task))

    def replace_task(self, request):
        job_id, task_id = request.params["job"], request.params["task"]
        return self._write(request, lambda: self.service.task(job_id, task_id),
                           lambda: self.service.replace_task(job_id, task_id, request.json() or {}), 200)

    def delete_task(self, request):
        job_id, task_id = request.params["job"], request.params["task"]
        return self._write(request, lambda: self.service.task(job_id, task_id),
                           lambda: self.service.delete_task(job_id, task_id), 200, include_headers=False)

    def terminate_task(self, request):
        job_id, task_id = request.params["job"], request.params["task"]
        return self._write(request, lambda: self.service.task(job_id, task_id),
                           lambda: self.service.terminate_task(job_id, task_id), 204)

    def reactivate_task(self, request):
        job_id, task_id = request.params["job"], request.params["task"]
        return self._write(request, lambda: self.service.task(job_id, task_id),
                           lambda: self.service.reactivate_task(job_id, task_id), 204)

    def list_subtasks(self, request):
        with self.state.tx():
            self.service.task(request.params["job"], request.params["task"])
        return Response(200, {"value": []})

    def _task_files_base(self, request) -> tuple[str, str]:
        with self.state.tx():
            root = self.service.task_root(request.params["job"], request.params["task"])
        return root, f"{self.account_url}/jobs/{request.params['job']}/tasks/{request.params['task']}/files"

    def list_task_files(self, request):
        root, url = self._task_files_base(request)
        return self._file_listing(request, root, url)

    def get_task_file(self, request):
        root, url = self._task_files_base(request)
        return self._serve_file(request, root, url)

    def delete_task_file(self, request):
        root, _ = self._task_files_base(request)
        return self._delete_file(request, root)

    # -- files --------------------------------------------------------------------------------
    def _file_listing(self, request, root: str, url: str) -> Response:
        recursive = request.query.get("recursive", "false").lower() == "true"
        entries = files.list_entries(root, recursive, url)
        return self._page(request, enumerate(entries, start=1), {"name": "string"}, lambda e: e)

    def _serve_file(self, request, root: str, url: str) -> Response:
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

    def _delete_file(self, request, root: str) -> Response:
        path = files.resolve(root, request.params["path"])
        if not os.path.exists(path):
            raise errors.BatchError(404, "FileNotFound", "The specified file does not exist.",
                                    {"FilePath": request.params["path"]})
        if os.path.isdir(path):
            if request.query.get("recursive", "false").lower() != "true" and os.listdir(path):
                raise errors.conflict("DirectoryNotEmpty", "The directory is not empty; pass recursive=true.")
            shutil.rmtree(path)
        else:
            os.remove(path)
        return Response(200)

    # -- admin --------------------------------------------------------------------------------
    def get_faults(self, request):
        return Response(200, self.faults.as_dict())

    def put_faults(self, request):
        body = request.json() or {}
        try:
            faults = Faults(rate=float(body.get("rate", 0.0)), status=int(body.get("status", 503)),
                            retry_after=int(body.get("retryAfter", 1)), delay_ms=int(body.get("delayMs", 0)),
                            path_pattern=str(body.get("pathPattern", "")))
            re.compile(faults.path_pattern)
        except (TypeError, ValueError, re.error) as exc:
            raise errors.BatchError(400, "InvalidRequestBody", f"Bad fault settings: {exc}.") from None
        if not 0 <= faults.rate <= 1 or faults.status not in (429, 500, 503):
            raise errors.BatchError(400, "InvalidRequestBody", "rate must be 0..1 and status one of 429, 500, 503.")
        self.faults = faults
        return Response(200, self.faults.as_dict())


def _etags(header: str) -> list[str]:
    """The entity tags of an If-Match/If-None-Match header. The SDK quotes them ('"0x8D..."', via
    azure-core's quote_etag) although Batch sends ETag unquoted, so quotes and W/ are dropped."""
    tags = []
    for tag in header.split(","):
        tag = tag.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if len(tag) >= 2 and tag[0] == tag[-1] and tag[0] in "\"'":
            tag = tag[1:-1]
        tags.append(tag)
    return tags


def _match(pattern: list[str], segments: list[str]) -> dict | None:
    params = {}
    for index, part in enumerate(pattern):
        if part.endswith("*}"):
            rest = segments[index:]
            if not rest or not "/".join(rest):
                return None
            params[part[1:-2]] = "/".join(rest)
            return params
        if index >= len(segments):
            return None
        if part.startswith("{"):
            if not segments[index]:
                return None
            params[part[1:-1]] = segments[index]
        elif part != segments[index]:
            return None
    return params if len(pattern) == len(segments) else None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "localbatch"
    # Headers and body leave in two writes; with Nagle on, the body waits for the client's delayed
    # ACK of the headers, which added ~40 ms to every response on loopback.
    disable_nagle_algorithm = True
    app: LocalBatch

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
        if os.environ.get("LOCALBATCH_ACCESS_LOG"):
            super().log_message(format, *args)

    def _dispatch(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.rfile.read(length)
            response = Response(413, errors.BatchError(413, "RequestBodyTooLarge",
                                                       "The request body is too large.").body())
        else:
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            response = self.server.app.handle((self.command, self.path), headers, body)
        self._send(response)

    def _send(self, response: Response):
        payload = b""
        if response.body is not None:
            payload = json.dumps(response.body, separators=(",", ":")).encode()
            response.headers["Content-Type"] = "application/json;odata=minimalmetadata"
            response.headers["DataServiceVersion"] = "3.0"
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.file:
            path, offset, length = response.file
            self.send_header("Content-Length", str(length))
            self.end_headers()
            if length:   # socket.sendfile refuses a count of 0 (an empty stdout.txt)
                with open(path, "rb") as source:
                    self.wfile.flush()
                    self.connection.sendfile(source, offset, length)
            return
        if "Content-Length" not in response.headers:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    app: LocalBatch


class Running:
    """A started localbatch: its endpoint and credentials, and how to stop it."""

    def __init__(self, server: Server, app: LocalBatch):
        self.server = server
        self.app = app
        self.endpoint = app.account_url
        self.account_name = app.account_name
        self.account_key = app.account_key

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.app.stop()


def start(data_dir: str, host: str = "127.0.0.1", port: int = 0, account_name: str = "localbatch",
          account_key: str = "", node_start_seconds: float = 0.5, faults: Faults | None = None) -> Running:
    """Bind (port 0 picks a free one), start the scheduler and serve in a background thread."""
    from . import DEV_ACCOUNT_KEY
    server = Server((host, port), Handler)
    bound_port = server.server_address[1]
    app = LocalBatch(data_dir, account_name, account_key or DEV_ACCOUNT_KEY, f"http://{host}:{bound_port}",
                     node_start_seconds, faults)
    server.app = app
    app.start()
    # serve_forever checks for shutdown() every poll_interval; the default 0.5 s made every stop
    # (one per test) take half a second.
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="localbatch-http",
                     daemon=True).start()
    return Running(server, app)
