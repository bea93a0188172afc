"""Fault injection: the admin route, `app.faults`, the CLI flags, and how the real SDK reacts."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from azure.batch import BatchClient, models
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from localbatch import DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME, admin, auth
from localbatch.server import Faults
from localbatch.timeutil import to_rfc1123, utcnow

from .helpers import make_job, make_pool, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]


def signed(lb, method: str, path: str, body: dict | None = None, key: str | None = None):
    """One raw request signed with SharedKey: (status, headers with lowercase names, parsed JSON body)."""
    endpoint, name, key = lb.endpoint, lb.account_name, key or lb.account_key
    payload = json.dumps(body).encode() if body is not None else b""
    headers = {"ocp-date": to_rfc1123(utcnow())}
    if method not in ("GET", "HEAD"):
        headers["content-type"] = "application/json"
        headers["content-length"] = str(len(payload))
    headers["authorization"] = auth.authorization_header(method, path, headers, name, key)
    parts = urlsplit(endpoint)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request(method, path, body=payload or None, headers=headers)
        response = connection.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(data) if data else None
    finally:
        connection.close()


@dataclass(frozen=True)
class Account:
    endpoint: str
    account_name: str = DEV_ACCOUNT_NAME
    account_key: str = DEV_ACCOUNT_KEY


def client_for(lb, **kwargs) -> BatchClient:
    return BatchClient(lb.endpoint, AzureNamedKeyCredential(lb.account_name, lb.account_key), **kwargs)


class Recorder:
    """A raw_response_hook: the status and Retry-After header of every attempt the SDK makes."""

    def __init__(self):
        self.attempts: list[tuple[int, str | None]] = []
        self.paths: list[str] = []

    def __call__(self, pipeline_response):
        response = pipeline_response.http_response
        self.attempts.append((response.status_code, response.headers.get("Retry-After")))
        self.paths.append(urlsplit(pipeline_response.http_request.url).path)

    def clear(self):
        self.attempts.clear()


# -- the admin route ----------------------------------------------------------------------------

def test_admin_route_sets_and_reads_faults_with_a_signed_request(localbatch):
    status, _, body = signed(localbatch, "PUT", "/_localbatch/faults",
                             {"rate": 0.25, "status": 429, "retryAfter": 2, "delayMs": 5, "pathPattern": "^/jobs"})
    assert status == 200
    assert body == {"rate": 0.25, "status": 429, "retryAfter": 2, "delayMs": 5, "pathPattern": "^/jobs", "count": -1}
    assert localbatch.app.faults == Faults(rate=0.25, status=429, retry_after=2, delay_ms=5, path_pattern="^/jobs")

    status, _, body = signed(localbatch, "GET", "/_localbatch/faults")
    assert (status, body["rate"], body["status"]) == (200, 0.25, 429)


def test_admin_route_refuses_unsigned_and_wrongly_signed_requests(localbatch):
    request = urllib.request.Request(localbatch.endpoint + "/_localbatch/faults", data=b'{"rate": 1.0}',
                                     headers={"content-type": "application/json"}, method="PUT")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 403
    assert json.loads(caught.value.read())["code"] == "AuthenticationFailed"

    other_key = "b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktb3RoZXIta2V5LW90aGVyLWtleQ=="
    status, headers, body = signed(localbatch, "PUT", "/_localbatch/faults", {"rate": 1.0}, key=other_key)
    assert (status, body["code"]) == (403, "AuthenticationFailed")
    assert "retry-after" not in headers
    assert localbatch.app.faults.rate == 0.0


@pytest.mark.parametrize("settings", [{"rate": 1.5}, {"rate": -0.1}, {"status": 404}, {"pathPattern": "("},
                                      {"delayMs": "soon"}])
def test_admin_route_rejects_bad_settings_and_keeps_the_old_ones(localbatch, settings):
    localbatch.app.faults = Faults(rate=0.0, delay_ms=1)
    status, headers, body = signed(localbatch, "PUT", "/_localbatch/faults", settings)
    assert (status, body["code"]) == (400, "InvalidRequestBody")
    assert "retry-after" not in headers
    assert localbatch.app.faults == Faults(rate=0.0, delay_ms=1)


def test_admin_route_answers_while_every_other_request_fails(localbatch):
    localbatch.app.faults = Faults(rate=1.0, status=503, retry_after=1)
    status, headers, body = signed(localbatch, "GET", "/pools?api-version=2025-06-01")
    assert (status, body["code"], headers["retry-after"]) == (503, "ServerBusy", "1")

    status, _, body = signed(localbatch, "PUT", "/_localbatch/faults", {"rate": 0.0})
    assert (status, body["rate"]) == (200, 0.0)
    status, _, body = signed(localbatch, "GET", "/pools?api-version=2025-06-01")
    assert (status, body["value"]) == (200, [])


# -- localbatch.admin ---------------------------------------------------------------------------

def test_admin_client_sets_and_gets_faults(localbatch):
    lb = localbatch
    applied = admin.set_faults(lb.endpoint, lb.account_name, lb.account_key, rate=0.5, status=500, retry_after=0,
                               delay_ms=7, path_pattern="addtaskcollection")
    assert applied == {"rate": 0.5, "status": 500, "retryAfter": 0, "delayMs": 7, "pathPattern": "addtaskcollection",
                       "count": -1}
    assert admin.get_faults(lb.endpoint, lb.account_name, lb.account_key) == applied
    assert lb.app.faults == Faults(rate=0.5, status=500, retry_after=0, delay_ms=7, path_pattern="addtaskcollection")

    cleared = admin.set_faults(lb.endpoint + "/", lb.account_name, lb.account_key)
    assert cleared == {"rate": 0.0, "status": 503, "retryAfter": 1, "delayMs": 0, "pathPattern": "", "count": -1}
    assert lb.app.faults == Faults()


def test_admin_client_raises_admin_error_on_refusal(localbatch):
    lb = localbatch
    with pytest.raises(admin.AdminError) as caught:
        admin.set_faults(lb.endpoint, lb.account_name, lb.account_key, rate=2.0)
    assert (caught.value.status, caught.value.code) == (400, "InvalidRequestBody")

    other_key = "b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktb3RoZXIta2V5LW90aGVyLWtleQ=="
    with pytest.raises(admin.AdminError) as caught:
        admin.get_faults(lb.endpoint, lb.account_name, other_key)
    assert (caught.value.status, caught.value.code) == (403, "AuthenticationFailed")
    assert lb.app.faults == Faults()


# -- how the SDK sees faults --------------------------------------------------------------------

def test_every_request_busy_makes_the_sdk_retry_then_raise_server_busy(localbatch):
    recorder = Recorder()
    client = client_for(localbatch, raw_response_hook=recorder)
    admin.set_faults(localbatch.endpoint, localbatch.account_name, localbatch.account_key, rate=1.0, retry_after=1)
    started = time.monotonic()
    with pytest.raises(HttpResponseError) as caught:
        client.create_pool(models.BatchPoolCreateOptions(id="busy-pool", vm_size="standard_d2s_v3",
                                                         target_dedicated_nodes=1))
    elapsed = time.monotonic() - started

    assert caught.value.error.code == "ServerBusy"
    assert caught.value.status_code == 503
    # azure-core's default: 1 try + 3 status retries, each after the server's Retry-After of 1 s.
    assert recorder.attempts == [(503, "1")] * 4
    assert elapsed >= 3.0

    admin.set_faults(localbatch.endpoint, localbatch.account_name, localbatch.account_key)
    assert list(client.list_pools()) == []
    with pytest.raises(ResourceNotFoundError):
        client.get_pool("busy-pool")


def test_busy_then_healthy_succeeds_after_the_sdk_retries(localbatch, batch_client):
    recorder = Recorder()
    client = client_for(localbatch, raw_response_hook=recorder)
    localbatch.app.faults = Faults(rate=1.0, status=429, retry_after=1)
    threading.Timer(0.5, lambda: setattr(localbatch.app, "faults", Faults())).start()

    client.create_pool(models.BatchPoolCreateOptions(id="late-pool", vm_size="standard_d2s_v3",
                                                     target_dedicated_nodes=0))

    # A POST is retried on 429 only because Retry-After is present.
    assert recorder.attempts[0] == (429, "1")
    assert recorder.attempts[-1] == (201, None)
    assert batch_client.get_pool("late-pool").id == "late-pool"


def test_create_tasks_under_thirty_percent_busy_creates_each_task_exactly_once(localbatch, batch_client):
    make_job(batch_client, "job-1", pool_id="no-such-pool")   # the tasks stay active: nothing runs
    # 50 of the 500 exist already, so create_tasks gets TaskExists for them and must count it as success.
    for i in range(50):
        batch_client.create_task("job-1", models.BatchTaskCreateOptions(id=f"task-{i:03d}", command_line="/bin/true"))

    recorder = Recorder()
    client = client_for(localbatch, raw_response_hook=recorder, retry_total=20, retry_status=20,
                        retry_backoff_factor=0.01)
    admin.set_faults(localbatch.endpoint, localbatch.account_name, localbatch.account_key, rate=0.3, retry_after=0)
    tasks = [models.BatchTaskCreateOptions(id=f"task-{i:03d}", command_line=f"/bin/echo {i}") for i in range(500)]
    result = client.create_tasks("job-1", tasks)
    assert sorted(r.task_id for r in result.result_values) == [f"task-{i:03d}" for i in range(500)]
    # The service spells the statuses "Success" and "ClientError"; the SDK's enum compares without case.
    assert {r.status.lower() for r in result.result_values} == {"success", "clienterror"}
    assert sorted(r.task_id for r in result.result_values if r.status.lower() == "clienterror") == [
        f"task-{i:03d}" for i in range(50)]
    assert {r.error.code for r in result.result_values if r.status.lower() == "clienterror"} == {"TaskExists"}
    # Re-sending the whole collection is idempotent; the repeats also make a run in which no
    # addtaskcollection request was failed practically impossible (0.7 ** 25).
    for _ in range(4):
        again = client.create_tasks("job-1", tasks)
        assert len(again.result_values) == 500
        assert {(r.status.lower(), r.error.code) for r in again.result_values} == {("clienterror", "TaskExists")}
    admin.set_faults(localbatch.endpoint, localbatch.account_name, localbatch.account_key)

    busy = [path for (status, _), path in zip(recorder.attempts, recorder.paths, strict=False) if status == 503]
    assert "/jobs/job-1/addtaskcollection" in busy, "no addtaskcollection request was failed"
    assert {a for a in recorder.attempts if a[0] != 200} == {(503, "0")}
    ids = [t.id for t in batch_client.list_tasks("job-1", select=["id"])]
    assert len(ids) == 500
    assert sorted(ids) == [f"task-{i:03d}" for i in range(500)]
    assert batch_client.get_job_task_counts("job-1").task_counts.active == 500
    # The tasks that existed before were not replaced.
    assert batch_client.get_task("job-1", "task-007").command_line == "/bin/true"
    assert batch_client.get_task("job-1", "task-077").command_line == "/bin/echo 77"


def test_path_pattern_limits_faults_to_matching_requests(localbatch):
    client = client_for(localbatch, retry_total=0)
    admin.set_faults(localbatch.endpoint, localbatch.account_name, localbatch.account_key, rate=1.0,
                     path_pattern="^/jobs")
    assert list(client.list_pools()) == []
    with pytest.raises(HttpResponseError) as caught:
        list(client.list_jobs())
    assert caught.value.error.code == "ServerBusy"


@pytest.mark.parametrize("status, code, retry_after", [(429, "TooManyRequests", "1"), (503, "ServerBusy", "1"),
                                                       (500, "ServerBusy", None)])
def test_fault_statuses_and_retry_after(localbatch, status, code, retry_after):
    localbatch.app.faults = Faults(rate=1.0, status=status, retry_after=1)
    got_status, headers, body = signed(localbatch, "GET", "/jobs?api-version=2025-06-01")
    assert (got_status, body["code"]) == (status, code)
    assert headers.get("retry-after") == retry_after


def test_business_errors_never_carry_retry_after(localbatch, batch_client):
    recorder = Recorder()
    client = client_for(localbatch, raw_response_hook=recorder)
    make_pool(batch_client, "pool-1", nodes=0)

    with pytest.raises(ResourceNotFoundError) as not_found:
        client.get_pool("no-such-pool")
    with pytest.raises(ResourceExistsError) as exists:
        client.create_pool(models.BatchPoolCreateOptions(id="pool-1", vm_size="standard_d2s_v3"))
    with pytest.raises(HttpResponseError) as invalid:
        client.create_pool(models.BatchPoolCreateOptions(id="bad id!", vm_size="standard_d2s_v3"))

    assert not_found.value.error.code == "PoolNotFound"
    assert exists.value.error.code == "PoolExists"
    assert (invalid.value.status_code, invalid.value.error.code) == (400, "InvalidPropertyValue")
    # One attempt each: nothing invited the SDK to retry.
    assert recorder.attempts == [(404, None), (409, None), (400, None)]
    for status, path, method in [(404, "/jobs/nope?api-version=2025-06-01", "GET"),
                                 (400, "/jobs", "GET"),
                                 (409, "/pools?api-version=2025-06-01", "POST")]:
        body = {"id": "pool-1", "vmSize": "standard_d2s_v3"} if method == "POST" else None
        got, headers, _ = signed(localbatch, method, path, body)
        assert got == status
        assert "retry-after" not in headers


def test_delay_ms_slows_every_request(localbatch, batch_client):
    admin.set_faults(localbatch.endpoint, localbatch.account_name, localbatch.account_key, delay_ms=300)
    for _ in range(2):
        started = time.monotonic()
        assert list(batch_client.list_jobs()) == []
        assert time.monotonic() - started >= 0.3

    admin.set_faults(localbatch.endpoint, localbatch.account_name, localbatch.account_key)
    assert localbatch.app.faults.delay_ms == 0


# -- the command line ---------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def cli_server(tmp_path):
    port = _free_port()
    log = open(tmp_path / "server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "localbatch", "serve", "--port", str(port), "--data-dir", str(tmp_path / "data"),
         "--node-start-seconds", "0.1", "--fault-rate", "1.0", "--fault-status", "503"],
        cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    endpoint = f"http://127.0.0.1:{port}"
    try:
        def healthy():
            if process.poll() is not None:
                raise AssertionError(f"localbatch exited: {(tmp_path / 'server.log').read_text()}")
            try:
                return urllib.request.urlopen(endpoint + "/_localbatch/health", timeout=1).status == 200
            except OSError:
                return False
        wait_for(healthy, timeout=30, message="localbatch serve answering")
        yield Account(endpoint), process, tmp_path / "server.log"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_cli_fault_rate_one_answers_503(cli_server):
    account, _, log_path = cli_server
    status, headers, body = signed(account, "GET", "/pools?api-version=2025-06-01")
    assert (status, body["code"], headers.get("retry-after")) == (503, "ServerBusy", "1")
    assert "faults:       100% of requests answer 503" in log_path.read_text()

    assert admin.get_faults(account.endpoint, DEV_ACCOUNT_NAME, DEV_ACCOUNT_KEY) == {
        "rate": 1.0, "status": 503, "retryAfter": 1, "delayMs": 0, "pathPattern": "", "count": -1}
    admin.set_faults(account.endpoint, DEV_ACCOUNT_NAME, DEV_ACCOUNT_KEY)
    status, headers, body = signed(account, "GET", "/pools?api-version=2025-06-01")
    assert (status, body["value"]) == (200, [])
    assert "retry-after" not in headers
