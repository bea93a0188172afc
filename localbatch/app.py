"""One localbatch account: its state, scheduler and operations, and the dispatch of a request to its route."""

import os
import time
import traceback
import uuid
from collections import deque
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

from . import auth, errors, wire
from .autoscale import Autoscaler
from .bearer import BearerAuth, TokenRefused
from .faults import Faults
from .node_actions import NodeActions
from .routes import autoscale, faults, files, jobs, node_actions, nodes, pools, schedules, tasks, timing
from .routes.base import Handler, Request, Response
from .scheduler import Scheduler
from .schedules import JobSchedules
from .service import BatchService
from .state import AccountState
from .store import Store
from .timing import Timers, Timing

ROUTES = (pools.ROUTES + autoscale.ROUTES + nodes.ROUTES + node_actions.ROUTES + files.ROUTES + jobs.ROUTES
          + schedules.ROUTES + tasks.ROUTES + faults.ROUTES + timing.ROUTES)


class Served(NamedTuple):
    """One request localbatch answered, for clients' tests and benchmarks that count what they sent."""
    at: float        # time.time() when the answer was ready
    method: str
    path: str        # without the query
    status: int


class LocalBatch:
    def __init__(self, data_dir: str, account_name: str, account_key: str, account_url: str,
                 node_start_seconds: float = 0.5, faults: Faults | None = None, bearer: BearerAuth | None = None):
        os.makedirs(data_dir, exist_ok=True)
        self.account_name = account_name
        self.account_key = account_key
        # With bearer auth on, a request may carry an Entra ID token or a SharedKey signature (an account whose
        # allowed authentication modes include both).
        self.bearer = bearer
        self.account_url = account_url.rstrip("/")
        self.faults = faults or Faults()
        # The latest requests answered (health checks aside); bounded, so a long-running server does not grow.
        self.served: deque[Served] = deque(maxlen=50_000)
        self.state = AccountState(Store(os.path.join(data_dir, "state.sqlite3")))
        self.scheduler = Scheduler(self.state, data_dir, account_name, self.account_url, node_start_seconds)
        self.timing = Timing()
        self.autoscaler = Autoscaler(self.state, self.timing)
        self.service = BatchService(self.state, self.scheduler, self.account_url, self.autoscaler)
        self.node_actions = NodeActions(self.state, self.scheduler.nodes, self.scheduler.workers, account_name,
                                        self.account_url)
        self.schedules = JobSchedules(self.state, self.service, self.timing, self.account_url)
        self.timers = Timers(self.state, [self.autoscaler.tick, self.node_actions.tick, self.schedules.tick])
        self.routes = [(method, pattern.split("/"), handler) for method, pattern, handler in ROUTES]
        # The routes a path of a given first segment and length can match, in their order: matching every route
        # against every request was a good part of a request's CPU here.
        self._firsts = {pattern[0] for _, pattern, _ in self.routes if not pattern[0].startswith("{")}
        self._candidates: dict[tuple[str | None, int], list] = {}

    def start(self) -> None:
        self.scheduler.start()
        self.timers.start()

    def stop(self) -> None:
        self.timers.stop()
        self.scheduler.stop()
        with self.state.lock:
            self.state.store.close()

    def match(self, method: str, segments: list[str]) -> tuple[Handler, dict]:
        allowed = False
        first = segments[0] if segments and segments[0] in self._firsts else None
        candidates = self._candidates.get((first, len(segments)))
        if candidates is None:
            candidates = self._candidates[(first, len(segments))] = [
                route for route in self.routes if _may_match(route[1], first, len(segments))]
        for route_method, pattern, handler in candidates:
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
            self.faults.inject(split.path)
            self._authenticate(method, raw_url, headers)
            query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
            if segments[:1] != ["_localbatch"]:
                _check_api_version(query.get("api-version"))
            handler, params = self.match(method, segments)
            request = Request(method, raw_url, split.path, params, query, headers, body, request_id)
            response = handler(self, request)
        except errors.BatchError as exc:
            # A 304 has no body: an HTTP client reads none, and one that is sent breaks the connection.
            response = Response(exc.status, None if exc.status == 304 else exc.body(request_id, self.account_url))
            if exc.retry_after is not None:
                response.headers["Retry-After"] = str(exc.retry_after)
            if isinstance(exc, TokenRefused):
                response.headers["WWW-Authenticate"] = exc.challenge
        except Exception:  # noqa: BLE001 - a bug answers 500 with Batch's error body, never a dropped connection
            traceback.print_exc()
            response = Response(500, errors.BatchError(500, "InternalError", "localbatch failed to serve the request.")
                                .body(request_id, self.account_url))
        response.headers.setdefault("request-id", request_id)
        self.served.append(Served(time.time(), method, raw_url.split("?", 1)[0], response.status))
        # As on the service, client-request-id comes back only when the client asks for it.
        if headers.get("client-request-id") and headers.get("return-client-request-id", "").lower() == "true":
            response.headers["client-request-id"] = headers["client-request-id"]
        return response

    def _authenticate(self, method: str, raw_url: str, headers: dict[str, str]) -> None:
        authorization = headers.get("authorization", "")
        if self.bearer is not None and not authorization.startswith("SharedKey "):
            self.bearer.verify(authorization)
            return
        auth.verify(method, raw_url, headers, self.account_name, self.account_key)


def _check_api_version(version: str | None) -> None:
    if version is None:
        raise errors.BatchError(400, "MissingRequiredQueryParameter",
                                "A query parameter that's mandatory for this request is not specified.",
                                {"QueryParameterName": "api-version"})
    if version not in wire.API_VERSIONS:
        raise errors.BatchError(400, "UnsupportedRequestVersion", "The specified request version is not supported.",
                                {"QueryParameterName": "api-version", "QueryParameterValue": version})


def _may_match(pattern: list[str], first: str | None, length: int) -> bool:
    """Whether `_match` can match `pattern` to a path of `length` segments whose first is `first` (None: one no route
    names)."""
    if not pattern[0].startswith("{") and pattern[0] != first:
        return False
    for index, part in enumerate(pattern):
        if part.endswith("*}"):
            return length > index
    return length == len(pattern)


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
