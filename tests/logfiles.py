"""Helpers for the log tests: a Batch account row on the test's localbatch, the portal's blob store on the test's
Azurite, tasks that write real output, and a gateway that counts what it reads from Batch (the reads themselves
are real)."""

import threading
import uuid

import pytest
from azure.batch import models
from django.core.cache import cache

from batchsync.accounts import blob_store
from batchsync.gateway import BatchGateway, GatewayError
from portal.models import BatchAccount
from portal.pages import forget_local_copies
from tests.localbatch.helpers import make_job, make_pool, wait_for

KEY_VARIABLE = "PORTAL_TEST_LOGS_BATCH_KEY"


class CountingGateway:
    """A real BatchGateway that records each file call, so a test can assert how much it asked Batch for."""

    def __init__(self, gateway: BatchGateway):
        self._gateway = gateway
        self._lock = threading.Lock()
        self.size_calls = 0
        self.reads: list[int] = []           # bytes each read_task_file brought back

    def get_task_file_size(self, *args, **kwargs):
        with self._lock:
            self.size_calls += 1
        return self._gateway.get_task_file_size(*args, **kwargs)

    def read_task_file(self, *args, **kwargs):
        data = self._gateway.read_task_file(*args, **kwargs)
        with self._lock:
            self.reads.append(len(data))
        return data

    @property
    def calls(self) -> int:
        return self.size_calls + len(self.reads)

    def close(self):
        self._gateway.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __getattr__(self, name):
        return getattr(self._gateway, name)


@pytest.fixture
def account(localbatch, monkeypatch):
    monkeypatch.setenv(KEY_VARIABLE, localbatch.account_key)
    return BatchAccount.objects.create(name="logs", account_url=localbatch.endpoint,
                                       account_name=localbatch.account_name, key_env_var=KEY_VARIABLE)


LOCAL_CACHE = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "log-tests"}}


@pytest.fixture
def local_cache(settings):
    """This process's own memory cache, emptied: the configured cache is the shared Redis, which other test runs use
    at the same time (and whose clear() would empty the broker's database too)."""
    settings.CACHES = LOCAL_CACHE
    cache.clear()
    forget_local_copies()
    yield cache
    cache.clear()
    forget_local_copies()


@pytest.fixture
def store(azurite, settings):
    """The portal's blob store on the test Azurite, with a logs container of this test's own."""
    settings.AZURE_STORAGE_CONNECTION_STRING = azurite.connection_string
    settings.STORAGE_LOGS_CONTAINER = f"logs-{uuid.uuid4().hex[:12]}"
    with blob_store() as store:
        store.ensure_containers()
        yield store


def save_copy(store, job_id: str, task_id: str, name: str, data: bytes) -> None:
    """Put a saved copy where the tasks' output-file rules and the archiver put them."""
    store.put(store.containers.logs, f"{job_id}/{task_id}/logs/{name}", data)


@pytest.fixture
def gateway(localbatch):
    with BatchGateway(localbatch.endpoint, localbatch.account_name, localbatch.account_key) as gateway:
        yield gateway


@pytest.fixture
def batch_job(batch_client):
    """A pool of one node with four slots and a job on it, in the test's localbatch."""
    make_pool(batch_client, "logs-pool", nodes=1, slots=4)
    wait_for(lambda: [n.state for n in batch_client.list_nodes("logs-pool")] == ["idle"], message="an idle node")
    return make_job(batch_client, "logs-job", "logs-pool")


def add_task(batch_client, task_id: str, script: str, job_id: str = "logs-job") -> str:
    batch_client.create_task(job_id, models.BatchTaskCreateOptions(
        id=task_id, command_line=f"/bin/sh -c {shell_quote(script)}"))
    return task_id


def shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def file_size(gateway: BatchGateway, task_id: str, path: str = "stdout.txt", job_id: str = "logs-job") -> int:
    """The file's size, or -1 while the task has no files yet."""
    try:
        return gateway.get_task_file_size(job_id, task_id, path)
    except GatewayError:
        return -1
