"""Shared pieces of the benchmarks: the command line and its smoke mode, the benchmark database, a localbatch
subprocess, an SDK client, timing and printing.

Benchmarks measure against `python -m localbatch serve` in its own process, so the client's
CPU (SDK serialisation, threads) does not share the server's GIL."""

import argparse
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from localbatch import API_VERSION, DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME  # noqa: E402
from localbatch.auth import authorization_header  # noqa: E402

SERVER_MODE = "localbatch in a subprocess (python -m localbatch serve), client in this process"
DEFAULT_DATABASE = "portal_bench"


def arguments(parser: argparse.ArgumentParser, smoke: dict[str, object]) -> argparse.Namespace:
    """The command line, with `--smoke`: every option named in `smoke` that was left at its default takes the smoke
    value, sizes small enough to run in seconds through the same processes, so `make bench-smoke` shows the script
    still works. Smoke figures say nothing about speed."""
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, seconds instead of minutes: shows the script runs, not how fast things are")
    args = parser.parse_args()
    if args.smoke:
        changed = []
        for name, value in smoke.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
                changed.append(f"--{name.replace('_', '-')} {value}")
        print(f"smoke mode ({', '.join(changed)}): the figures below show the script works, not how fast", flush=True)
    return args


def database_url() -> str:
    """The PostgreSQL database the benchmarks fill: BENCH_DATABASE_URL; otherwise a database called portal_bench on
    the server DATABASE_URL names (CI's), or on 127.0.0.1. Never the portal's own database: benchmarks delete rows."""
    from urllib.parse import urlsplit, urlunsplit

    if os.environ.get("BENCH_DATABASE_URL"):
        return os.environ["BENCH_DATABASE_URL"]
    base = urlsplit(os.environ.get("DATABASE_URL", ""))
    if base.scheme.startswith("postgres"):
        return urlunsplit(base._replace(path=f"/{DEFAULT_DATABASE}"))
    return f"postgres://postgres@127.0.0.1:5432/{DEFAULT_DATABASE}"


def ensure_database(url: str) -> None:
    """Create the benchmark database if it is missing; the benchmarks measure PostgreSQL only."""
    import dj_database_url
    import psycopg
    from psycopg import sql

    config = dj_database_url.parse(url)
    if "postgresql" not in config["ENGINE"]:
        raise SystemExit(f"the benchmarks measure PostgreSQL, not {config['ENGINE']}: set BENCH_DATABASE_URL")
    with psycopg.connect(host=config["HOST"], port=config["PORT"] or 5432, user=config["USER"],
                         password=config["PASSWORD"] or None, dbname="postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(config["NAME"])))


def setup_django(url: str | None = None, **environment: str) -> str:
    """Django on the benchmark database (created and migrated if needed), with `environment` set first: settings are
    read once, here. The test Client speaks plain HTTP, so HTTPS redirects are off unless DJANGO_HTTPS says
    otherwise. Returns the database URL."""
    import warnings

    url = url or database_url()
    ensure_database(url)
    os.environ["DATABASE_URL"] = url
    os.environ.update(environment)
    os.environ.setdefault("DJANGO_HTTPS", "0")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    # A page benchmark times what a request costs when it renders the page itself, not a copy another viewer's
    # request rendered (portal/pages.py's shared sections); one that times the shared page says so.
    os.environ.setdefault("PAGE_SHARED_SECONDS", "0")
    # WhiteNoise warns once that collectstatic has not run; benchmarks never serve static files.
    warnings.filterwarnings("ignore", message="No directory at")
    from django.core.management import call_command

    # Set up as a web process is (portal/wsgi.py: Django, then its startup heap frozen), so pages and the services
    # they call are timed as gunicorn's workers run them; the Celery workers freeze theirs too.
    import portal.wsgi  # noqa: F401
    # django-axes logs every sign-in; a benchmark signs in its clients and has no use for those lines.
    logging.getLogger("axes").setLevel(logging.WARNING)
    call_command("migrate", verbosity=0)
    return url


def remove_account(name: str) -> None:
    """The Batch account called `name` and its mirror rows, from this or an earlier run of a benchmark; other
    benchmarks' accounts are left alone."""
    from portal.models import BatchAccount, Job, Node, Pool, Task

    old = BatchAccount.objects.filter(name=name)
    Task.objects.filter(job__account__in=old).delete()
    Job.objects.filter(account__in=old).delete()
    Node.objects.filter(pool__account__in=old).delete()
    Pool.objects.filter(account__in=old).delete()
    old.delete()


def user_with_role(username: str, role: str):
    """A user holding `role` (one of portal.accounts.roles.ROLE_NAMES): every page needs a role, submitting the
    Submitter's."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user, _ = get_user_model().objects.get_or_create(username=username)
    user.groups.add(Group.objects.get(name=role))
    return user


@dataclass
class Server:
    endpoint: str
    account_name: str
    account_key: str
    data_dir: str
    process: subprocess.Popen


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def localbatch_server(node_start_seconds: float = 0.1):
    """A fresh localbatch subprocess on a free port with a temporary data dir; removed afterwards."""
    data_dir = tempfile.mkdtemp(prefix="localbatch-bench-")
    port = _free_port()
    log = open(os.path.join(data_dir, "server.log"), "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "localbatch", "serve", "--port", str(port), "--data-dir", data_dir,
         "--node-start-seconds", str(node_start_seconds)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"localbatch exited with {process.returncode}; see {data_dir}/server.log")
            try:
                if requests.get(f"{endpoint}/_localbatch/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("localbatch did not answer its health check within 20 s")
            time.sleep(0.05)
        yield Server(endpoint, DEV_ACCOUNT_NAME, DEV_ACCOUNT_KEY, data_dir, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


AZURITE_BLOB = os.path.join(ROOT, "node_modules", ".bin", "azurite-blob")
# Azurite's published development account (documented by Microsoft; not a secret).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@contextmanager
def azurite_server(in_memory: bool = False):
    """A fresh Azurite blob service on a free port with a temporary data dir; yields its connection string.

    `in_memory`: blobs and their metadata kept in Azurite's memory only. Its on-disk metadata store rewrites one JSON
    file as blobs are added, which makes tens of thousands of uploads take minutes; reads are the same either way."""
    data_dir = tempfile.mkdtemp(prefix="azurite-bench-")
    port = _free_port()
    log = open(os.path.join(data_dir, "azurite.log"), "wb")
    where = ["--inMemoryPersistence"] if in_memory else ["--location", os.path.join(data_dir, "data")]
    process = subprocess.Popen(
        [AZURITE_BLOB, "--blobHost", "127.0.0.1", "--blobPort", str(port), *where,
         "--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry"],
        stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}/devstoreaccount1"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"azurite exited with {process.returncode}; see {data_dir}/azurite.log")
            try:
                requests.get(endpoint + "?comp=list", timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError("azurite did not answer within 30 s") from None
                time.sleep(0.1)
        yield (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
               f"BlobEndpoint={endpoint};")
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def batch_client(server: Server, pool_maxsize: int = 10):
    """The real azure-batch SDK client pointed at `server`, with a connection pool big enough for
    the SDK's create_tasks threads."""
    from azure.batch import BatchClient
    from azure.core.credentials import AzureNamedKeyCredential
    from azure.core.pipeline.transport import RequestsTransport

    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=pool_maxsize, pool_maxsize=pool_maxsize)
    session.mount("http://", adapter)
    return BatchClient(server.endpoint, AzureNamedKeyCredential(server.account_name, server.account_key),
                       transport=RequestsTransport(session=session, session_owner=True))


def signed_get(session: requests.Session, server: Server, path_and_query: str) -> requests.Response:
    """A GET signed with SharedKey exactly as the SDK signs it, without the SDK."""
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
    headers = {"ocp-date": date}
    headers["Authorization"] = authorization_header("GET", path_and_query, headers, server.account_name,
                                                    server.account_key)
    return session.get(server.endpoint + path_and_query, headers=headers)


def wait_for(check, timeout: float = 60.0, interval: float = 0.02, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout}s waiting for {message}")


def make_pool(client, pool_id: str, nodes: int, slots: int = 1) -> str:
    from azure.batch import models
    client.create_pool(models.BatchPoolCreateOptions(
        id=pool_id, vm_size="standard_d2s_v3", target_dedicated_nodes=nodes, task_slots_per_node=slots,
        task_scheduling_policy=models.BatchTaskSchedulingPolicy(node_fill_type="spread")))
    wait_for(lambda: client.get_pool(pool_id).allocation_state == "steady", message=f"pool {pool_id} steady")
    if nodes:
        wait_for(lambda: all(n.state == "idle" for n in client.list_nodes(pool_id))
                 and len(list(client.list_nodes(pool_id))) == nodes, message=f"pool {pool_id} nodes idle")
    return pool_id


def make_job(client, job_id: str, pool_id: str) -> str:
    from azure.batch import models
    client.create_job(models.BatchJobCreateOptions(id=job_id, pool_info=models.BatchPoolInfo(pool_id=pool_id)))
    return job_id


class Timer:
    """`with Timer() as t: ...` then `t.seconds`."""

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        return False


def percentile(values, pct: float) -> float:
    """Linear-interpolated percentile (pct in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def header(title: str) -> None:
    print(f"{title}\n  setup: {SERVER_MODE}; {os.cpu_count()} CPUs; Python {sys.version.split()[0]}; "
          f"Batch API {API_VERSION}")


def result(name: str, value: float, unit: str, goal: str = "", met: bool | None = None, compared: str = "") -> None:
    """One line per figure: name, value and unit, the goal (and whether it is met), the compared figure."""
    line = f"  {name:<46} {value:>10.3f} {unit:<8}"
    if goal:
        line += f"  goal {goal}" + ("" if met is None else f" [{'MET' if met else 'MISSED'}]")
    if compared:
        line += f"  | compared with: {compared}"
    print(line, flush=True)
