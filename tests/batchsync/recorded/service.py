"""A stand-in Batch endpoint on 127.0.0.1 that answers with bodies recorded from the real service, so the
gateway's readers meet, through the real SDK and real HTTP, exactly what Azure sends."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

RECORDED = Path(__file__).resolve().parent


def recorded(name: str) -> dict:
    """A recorded response from this folder: its source, request, status, headers and body (README.md)."""
    return json.loads((RECORDED / name).read_text())


def recorded_body(name: str):
    return recorded(name)["body"]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    body: object = None                 # JSON-serialisable, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)


    @classmethod
    def recorded(cls, name: str) -> Answer:
        """The recorded response `name`, as the service sent it."""
        response = recorded(name)
        body = response["body"]
        return cls(response["status"], body.encode() if isinstance(body, str) else body, response["headers"])


Route = Callable[[Request], Answer]


class RecordedService:
    """Answers `routes[(method, path)]`; every request is kept in `requests` for the test to inspect.
    Paths not routed get Batch's 404 body, so a test never silently reads something it did not mean to."""

    account_name = "recorded"
    account_key = "cmVjb3JkZWQ="   # any base64: nothing here checks the signature

    def __init__(self):
        self.routes: dict[tuple[str, str], Route | Answer] = {}
        self.requests: list[Request] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(self.command, url.path, parse_qs(url.query), dict(self.headers),
                                  self.rfile.read(length) if length else b"")
                service.requests.append(request)
                route = service.routes.get((self.command, url.path))
                answer = route(request) if callable(route) else route
                if answer is None:
                    answer = Answer(404, {"odata.metadata": "", "code": "ResourceNotFound", "message": {
                        "lang": "en-US", "value": "The specified resource does not exist."}})
                body = answer.body if isinstance(answer.body, bytes) else (
                    b"" if answer.body is None else json.dumps(answer.body).encode())
                self.send_response(answer.status)
                # A HEAD answer keeps the recorded Content-Length: it is the file's size, not this (empty) body's.
                headers = {"Content-Type": "application/json;odata=minimalmetadata", "request-id": "recorded",
                           **answer.headers}
                if self.command != "HEAD" or "Content-Length" not in headers:
                    headers["Content-Length"] = str(len(body))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _answer

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def requests_to(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
