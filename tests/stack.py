"""The production stack, started for real: gunicorn, a Celery worker for `submit`, another for `sync`, exactly one
beat, a private redis-server, localbatch and Azurite, each its own process, with production settings (DJANGO_DEBUG
off; only plain HTTP instead of HTTPS, DJANGO_HTTPS=0). The README's "Run it in production" describes the same
processes; tests/test_production_stack.py and bench/stack_load.py start them from here, so there is one launcher.

PostgreSQL is not started here: the caller names a database every process can open (DATABASE_URL), already
migrated or migrated by `Stack.migrate()`. A TcpRelay in front of it lets a test take the database away and give it
back without touching the server others use."""

from __future__ import annotations

import os
import secrets
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = REPO_ROOT / ".venv" / "bin"
AZURITE_BLOB = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
# Published development credentials of localbatch and Azurite (not secrets).
LOCALBATCH_NAME = "localbatch"
LOCALBATCH_KEY = "bG9jYWxiYXRjaC1kZXYta2V5LW5vdC1hLXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVmZ2hpams="
AZURITE_NAME = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# The sync worker and beat run at this niceness (README, "Run it in production": `Nice=10`).
BACKGROUND = ["nice", "-n", "10"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def http_answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
        return True
    except urllib.error.HTTPError:
        return True  # Any HTTP answer means the server is up.
    except OSError:
        return False


def wait(check: Callable[[], object], *, timeout: float, what: str, interval: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class Service:
    """One process of the stack: how to start it, and how to know it is up."""

    name: str
    command: list[str]
    log: Path
    up: Callable[[], bool] = lambda: True
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    def start(self, base_env: dict[str, str], *, timeout: float = 60) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command, cwd=REPO_ROOT, env={**base_env, **self.env},
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.process.returncode}:\n{self.tail()}")
            return self.up()
        wait(ready, timeout=timeout, what=f"{self.name} to start")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


class TcpRelay:
    """Forwards a local port to another (the database), and can drop every connection and refuse new ones: the
    database going away for the processes behind it, while the server itself, shared with others, runs on."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            if self._listener is not None:
                # shutdown() first: close() alone leaves a thread blocked in accept() listening on.
                try:
                    self._listener.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self._listener.close()
                self._listener = None
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 1.0)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (b if sock is a else a).sendall(data)
        except (OSError, ValueError):
            return
        finally:
            a.close()
            b.close()


class Stack:
    """The processes of a production installation on this machine, each on a free port, with their logs and data
    under `workdir`. `database_url` is a PostgreSQL database every process can open."""

    def __init__(self, workdir: Path, database_url: str, *, web_workers: int = 2, worker_concurrency: int = 1,
                 extra_env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url
        self.redis_port, self.batch_port, self.blob_port, self.web_port = (free_port() for _ in range(4))
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.batch_url = f"http://127.0.0.1:{self.batch_port}"
        self.blob_endpoint = f"http://127.0.0.1:{self.blob_port}/{AZURITE_NAME}"
        self.storage_connection_string = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_NAME};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.blob_endpoint};")
        # The settings of every portal process: production (DJANGO_DEBUG off) as the README lists them.
        self.env = {
            key: value for key, value in os.environ.items()
            if not key.startswith(("DJANGO_", "BATCH_", "AZURE_", "STORAGE_", "CELERY_", "REDIS_", "CACHE_", "PAGE_",
                                   "DASHBOARD_"))
        }
        self.env.update({
            "PYTHONPATH": str(REPO_ROOT),
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            # The one difference from a real installation: this stack is served over plain HTTP.
            "DJANGO_HTTPS": "0",
            "DJANGO_STATIC_ROOT": str(workdir / "static"),
            "PORTAL_VAR_DIR": str(workdir / "var"),
            "PORTAL_BASE_URL": self.url,
            "DATABASE_URL": database_url,
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "BATCH_ACCOUNT_URL": self.batch_url,
            "BATCH_ACCOUNT_NAME": LOCALBATCH_NAME,
            "BATCH_ACCOUNT_KEY": LOCALBATCH_KEY,
            "AZURE_STORAGE_CONNECTION_STRING": self.storage_connection_string,
            "AUDIT_HMAC_KEY": secrets.token_urlsafe(32),
            "READINESS_TIMEOUT_SECONDS": "1",
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        })
        self.env.update({"GUNICORN_BIND": f"127.0.0.1:{self.web_port}", "WEB_CONCURRENCY": str(web_workers)})
        self.env.update(extra_env or {})
        log = workdir.joinpath
        celery = [str(BIN / "celery"), "-A", "batchsync"]
        worker = [*celery, "worker", "--loglevel", "INFO", "--concurrency", str(worker_concurrency),
                  "--without-mingle", "--without-gossip"]
        self.services: dict[str, Service] = {
            "redis": Service("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port),
                                       "--save", "", "--appendonly", "no"], log("redis.log"),
                             up=lambda: port_answers(self.redis_port)),
            "localbatch": Service("localbatch", [str(BIN / "python"), "-m", "localbatch", "serve", "--host",
                                                 "127.0.0.1", "--port", str(self.batch_port), "--data-dir",
                                                 str(workdir / "localbatch"), "--node-start-seconds", "0.1"],
                                  log("localbatch.log"), up=lambda: http_answers(self.batch_url)),
            "azurite": Service("azurite", [str(AZURITE_BLOB), "--blobHost", "127.0.0.1", "--blobPort",
                                           str(self.blob_port), "--location", str(workdir / "azurite"),
                                           "--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry"],
                               log("azurite.log"), up=lambda: http_answers(f"{self.blob_endpoint}?comp=list")),
            # gunicorn.conf.py in the checkout (the working directory) is the production configuration.
            "web": Service("web", [str(BIN / "gunicorn"), "portal.wsgi:application"],
                           log("web.log"), up=lambda: http_answers(f"{self.url}/healthz")),
            "worker-submit": Service("worker-submit", [*worker, "-Q", "submit", "--hostname", "submit@%h"],
                                     log("worker-submit.log")),
            # Background work at a lower CPU priority, as the README's production layout runs it: on a machine
            # shared with the web process, a sync pass takes what pages leave rather than delaying them.
            "worker-sync": Service("worker-sync", [*BACKGROUND, *worker, "-Q", "sync", "--hostname", "sync@%h"],
                                   log("worker-sync.log")),
            "beat": Service("beat", [*BACKGROUND, *celery, "beat", "--loglevel", "INFO", "--schedule",
                                     str(workdir / "celerybeat-schedule")], log("beat.log")),
        }

    def manage(self, *args: str, database_url: str | None = None) -> str:
        """Run `manage.py` with the stack's settings (`database_url`: as another role, the owner's for `migrate`);
        its output, or an error with it."""
        env = {**self.env, "DATABASE_URL": database_url or self.database_url}
        result = subprocess.run([str(BIN / "python"), "manage.py", *args], cwd=REPO_ROOT, env=env,
                                capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}")
        return result.stdout

    def start(self, *names: str) -> None:
        """Start the named services in order (all of them when none is named)."""
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (the redis-server package)")
        for name in names or tuple(self.services):
            self.services[name].start(self.env)

    def stop(self, *names: str) -> None:
        """Stop the named services (all, in reverse order, when none is named)."""
        for name in names or tuple(reversed(self.services)):
            self.services[name].stop()

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{service.tail()}" for name, service in self.services.items())


APP_ROLE_SQL = REPO_ROOT / "deploy" / "postgres-app-role.sql"


def grant_app_role(cursor: Any, role: str) -> None:
    """Run deploy/postgres-app-role.sql for `role` (in place of portal_app) with `cursor`, the owner's."""
    statements = [line for line in APP_ROLE_SQL.read_text().splitlines() if line and not line.startswith("--")]
    for statement in statements:
        cursor.execute(statement.replace("portal_app", role))


def main() -> None:
    """`python tests/stack.py DATABASE_URL`: start the whole stack and keep it up until Ctrl-C (to look around)."""
    stack = Stack(Path(sys.argv[2] if len(sys.argv) > 2 else "/tmp/portal-stack"), sys.argv[1])
    try:
        stack.start("redis", "localbatch", "azurite")
        stack.manage("migrate", "--noinput")
        stack.manage("collectstatic", "--noinput")
        stack.start("web", "worker-submit", "worker-sync", "beat")
        print(f"up: {stack.url} (logs in {stack.workdir})", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
