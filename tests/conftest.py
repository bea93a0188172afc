"""Fixtures shared by the whole suite: the localbatch plugin and a real Azurite blob service."""

import importlib.util
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.db.backends.base.creation import BaseDatabaseCreation

from portal.access import WRITE_COMMAND_LINES
from tests.personas import person, role, team

# localbatch.testing provides the `localbatch` fixture; load it once it exists. tests.logfiles provides the log
# tests' fixtures (account, store, gateway, batch_job, local_cache), so test modules use them without importing.
if importlib.util.find_spec("localbatch") and importlib.util.find_spec("localbatch.testing"):
    pytest_plugins = ["localbatch.testing", "tests.logfiles"]

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE_BLOB = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
# Azurite's published development account (documented by Microsoft; not a secret).
AZURITE_ACCOUNT_NAME = "devstoreaccount1"
AZURITE_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass(frozen=True)
class Azurite:
    blob_endpoint: str
    account_name: str
    account_key: str

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
            f"AccountKey={self.account_key};BlobEndpoint={self.blob_endpoint};"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_answers(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"azurite-blob exited with code {process.returncode} before answering")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # Any HTTP answer (an unauthenticated request gets 403) means it is up.
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"azurite-blob did not answer at {url} within {timeout:.0f}s")


@pytest.fixture(scope="session")
def azurite():
    """A real Azurite blob service on a free loopback port, with its data in a temp folder."""
    if not AZURITE_BLOB.exists():
        pytest.fail(f"{AZURITE_BLOB} is missing: run `npm ci` (or `make test`, which does it)")
    workdir = Path(tempfile.mkdtemp(prefix="azurite-"))
    log_path = workdir / "azurite.log"
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT_NAME}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                str(AZURITE_BLOB),
                "--blobHost", "127.0.0.1",
                "--blobPort", str(port),
                "--location", str(workdir / "data"),
                "--skipApiVersionCheck",
                "--loose",
                "--silent",
                # Azurite reports telemetry to Microsoft by default; tests send nothing out.
                "--disableTelemetry",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        try:
            wait_until_answers(endpoint + "?comp=list", process)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; its output:\n{log_path.read_text()[-2000:]}") from None
        yield Azurite(endpoint, AZURITE_ACCOUNT_NAME, AZURITE_ACCOUNT_KEY)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def user(django_user_model):
    """An ordinary portal user: a Submitter (reads everything, submits, acts on their own work), in no team."""
    alice = django_user_model.objects.create_user(username="alice", password="correct horse battery staple")
    alice.groups.add(role("Submitter"))
    return alice


# --- Personas: one per role (tests/personas.py). Team A and team B; the Submitter and operator_a are in team A. ---

@pytest.fixture
def team_a(db):
    return team("Team A")


@pytest.fixture
def team_b(db):
    return team("Team B")


@pytest.fixture
def viewer(db):
    return person("vic-viewer", "Viewer")


@pytest.fixture
def submitter(team_a):
    return person("sue-submitter", "Submitter", teams=[team_a])


@pytest.fixture
def other_submitter(team_b):
    return person("sid-submitter", "Submitter", teams=[team_b])


@pytest.fixture
def operator_a(team_a):
    return person("opal-operator", "Operator", teams=[team_a])


@pytest.fixture
def operator_b(team_b):
    return person("otis-operator", "Operator", teams=[team_b])


@pytest.fixture
def portal_admin(db):
    """The Admin role, with the staff flag the admin site needs (not a superuser)."""
    return person("ada-admin", "Admin", is_staff=True)


@pytest.fixture
def engineer(db):
    """A Submitter who may also write a template's command line (the permission engineers are given)."""
    return person("erin-engineer", "Submitter", permissions=[WRITE_COMMAND_LINES])


@pytest.fixture
def no_role(db):
    """Can sign in, has no role: reads nothing."""
    return person("nora-norole")


@pytest.fixture
def batch(localbatch, settings, monkeypatch):
    """localbatch, with the portal's default account pointing at it."""
    settings.BATCH_ACCOUNT_URL = localbatch.endpoint
    settings.BATCH_ACCOUNT_NAME = localbatch.account_name
    settings.BATCH_ACCOUNT_KEY = localbatch.account_key
    # An exported key in the shell running the tests must not send the portal elsewhere.
    monkeypatch.delenv("BATCH_ACCOUNT_KEY", raising=False)
    return localbatch


@pytest.fixture
def real_redis():
    """The Redis at REDIS_URL, as the portal uses it; a test that needs it fails plainly when none answers."""
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail(f"no Redis answers at {settings.REDIS_URL}: start one (.ci/run does) or set REDIS_URL")
    return client


def _restore_into_an_empty_database(creation: Any, data: str) -> None:
    """Django's serialized rollback puts the shipped rows (roles, example templates, content types) back before a
    transactional test. It assumes the previous test left the database empty, but a transactional test without it
    lets `flush` recreate the content types and permissions with new ids, and the restore then collides with them
    (IntegrityError on django_content_type, depending on the order the tests ran in). Emptying first makes the
    restore the same whatever ran before."""
    call_command("flush", verbosity=0, interactive=False, database=creation.connection.alias,
                 inhibit_post_migrate=True)
    _restore_shipped_rows(creation, data)


_restore_shipped_rows = BaseDatabaseCreation.deserialize_db_from_string
BaseDatabaseCreation.deserialize_db_from_string = _restore_into_an_empty_database  # type: ignore[method-assign]
