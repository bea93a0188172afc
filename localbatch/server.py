"""The HTTP server of localbatch: reads requests, hands them to the account, writes the answers."""

import json
import os
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import DEV_ACCOUNT_KEY, errors, wire
from .app import LocalBatch
from .bearer import BearerAuth
from .faults import Faults
from .routes.base import Response
from .tls import TlsFiles, self_signed, server_context

MAX_BODY_BYTES = 4 * 1024 * 1024

__all__ = ["BearerAuth", "Faults", "LocalBatch", "Running", "Server", "TlsFiles", "start"]


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
            response = Response(413, errors.BatchError(413, "RequestBodyTooLarge", "The request body is too large.")
                                .body(account_url=self.server.app.account_url))
        else:
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            response = self.server.app.handle((self.command, self.path), headers, body)
        self._send(response)

    def _send(self, response: Response):
        payload = b""
        if response.body is not None:
            payload = json.dumps(response.body, separators=(",", ":")).encode()
            response.headers["Content-Type"] = wire.JSON_CONTENT_TYPE
        response.headers.setdefault("DataServiceVersion", "3.0")
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
        if "Content-Length" not in response.headers and response.status != 304:
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

    def handle_error(self, request, client_address):
        # A client that gives up the TLS handshake (or does not trust the certificate) is not localbatch's error.
        if isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError)):
            return
        super().handle_error(request, client_address)


class Running:
    """A started localbatch: its endpoint and credentials, and how to stop it."""

    def __init__(self, server: Server, app: LocalBatch):
        self.server = server
        self.app = app
        self.endpoint = app.account_url
        self.account_name = app.account_name
        self.account_key = app.account_key
        # What a client must trust to reach an https endpoint (None over http).
        self.ca_path: str | None = None

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.app.stop()


def start(data_dir: str, host: str = "127.0.0.1", port: int = 0, account_name: str = "localbatch",
          account_key: str = "", node_start_seconds: float = 0.5, faults: Faults | None = None,
          bearer: BearerAuth | None = None, tls: TlsFiles | bool = False) -> Running:
    """Bind (port 0 picks a free one), start the scheduler and serve in a background thread.

    `tls`: serve HTTPS with these files, or with a certificate made now (True). Bearer auth turns HTTPS on: the SDKs
    send tokens only over TLS."""
    server = Server((host, port), Handler)
    bound_port = server.server_address[1]
    files = self_signed(os.path.join(data_dir, "tls")) if tls is True or (bearer and not tls) else tls or None
    if files:
        # The handshake happens on the first read, in the request's own thread, so a slow client cannot hold up
        # accept() for everyone else.
        server.socket = server_context(files).wrap_socket(server.socket, server_side=True,
                                                          do_handshake_on_connect=False)
    scheme = "https" if files else "http"
    app = LocalBatch(data_dir, account_name, account_key or DEV_ACCOUNT_KEY, f"{scheme}://{host}:{bound_port}",
                     node_start_seconds, faults, bearer)
    server.app = app
    app.start()
    # serve_forever checks for shutdown() every poll_interval; the default 0.5 s made every stop
    # (one per test) take half a second.
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="localbatch-http",
                     daemon=True).start()
    running = Running(server, app)
    running.ca_path = files.ca_path if files else None
    return running
