"""A pytest plugin: the `localbatch` fixture starts an in-process localbatch on a free port.

Enable it with `pytest_plugins = ["localbatch.testing"]`; the fixture yields a `Running` with
`endpoint`, `account_name`, `account_key` and `app` (for fault injection: `app.faults`)."""

import pytest
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential

from .server import Faults, Running, start


@pytest.fixture
def localbatch(tmp_path_factory) -> Running:
    """A fresh, empty Batch account for one test; nodes start in 50 ms."""
    running = start(str(tmp_path_factory.mktemp("localbatch")), node_start_seconds=0.05)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def batch_client(localbatch):
    """The real azure-batch SDK client, pointed at the `localbatch` fixture."""
    client = BatchClient(localbatch.endpoint, AzureNamedKeyCredential(localbatch.account_name, localbatch.account_key))
    try:
        yield client
    finally:
        client.close()


__all__ = ["Faults", "Running", "localbatch", "batch_client"]
