"""The storage gateway with Microsoft Entra ID, against a real Azurite in OAuth mode over HTTPS: requests carry the
identity's bearer token, and every SAS is a user-delegation SAS (no account key anywhere). The token issuer stands
in for Entra's sign-in; Azurite checks the token's issuer, audience and lifetime (its `--oauth basic` level does not
check signatures, so the signature refusals are tested at localbatch, tests/localbatch/test_bearer.py).

The SDK signs user-delegation SAS as version 2026-10-06 (two more lines in the string-to-sign than the 2025-07-05
form); Azurite verifies that form from 3.37 on (package.json pins it), so these tests read and write through such
a SAS for real."""

import shutil
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from batchsync import accounts
from batchsync.gateway import AuthFailed, BlobStore, Containers, identity
from localbatch.tls import self_signed
from tests.conftest import AZURITE_ACCOUNT_NAME, AZURITE_BLOB, free_port
from tests.entra import IssuedCredential, Issuer, host_managed_identity


@pytest.fixture(scope="module")
def issuer():
    return Issuer()


@pytest.fixture(scope="module")
def azurite_oauth(tmp_path_factory):
    """Azurite's blob service with `--oauth basic`, which needs HTTPS: a certificate made for it. Yields the
    account URL and the CA to trust."""
    workdir = tmp_path_factory.mktemp("azurite-oauth")
    tls = self_signed(str(workdir / "tls"))
    port = free_port()
    process = subprocess.Popen(
        [str(AZURITE_BLOB), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(workdir / "data"),
         "--oauth", "basic", "--cert", tls.cert_path, "--key", tls.key_path,
         "--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry"],
        stdout=(workdir / "azurite.log").open("wb"), stderr=subprocess.STDOUT)
    url = f"https://127.0.0.1:{port}/{AZURITE_ACCOUNT_NAME}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (workdir / "azurite.log").read_text()[-2000:]
            try:
                requests.get(url + "?comp=list", verify=tls.ca_path, timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "Azurite (OAuth, HTTPS) did not answer within 30 s"
                time.sleep(0.1)
        yield url, tls.ca_path
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(Path(workdir), ignore_errors=True)


def entra_store(azurite_oauth, credential) -> BlobStore:
    url, ca = azurite_oauth
    names = uuid.uuid4().hex[:8]
    containers = Containers(inputs=f"in-{names}", logs=f"logs-{names}", outputs=f"out-{names}",
                            audit=f"audit-{names}")
    return BlobStore(containers=containers, account_url=url, credential=credential, ca_bundle=ca)


@pytest.fixture
def store(azurite_oauth, issuer):
    with entra_store(azurite_oauth, IssuedCredential(issuer)) as blob_store:
        blob_store.ensure_containers()
        yield blob_store


def test_reads_and_writes_go_with_the_identitys_token(store):
    store.put(store.containers.logs, "job-1/task-1/stdout.txt", b"hello from a token")
    assert store.read_all(store.containers.logs, "job-1/task-1/stdout.txt") == b"hello from a token"
    assert store.info(store.containers.logs, "job-1/task-1/stdout.txt").size == 18
    assert [b.path for b in store.list_blobs(store.containers.logs, "job-1/")] == ["job-1/task-1/stdout.txt"]
    assert store.put_once(store.containers.audit, "head-1.json", b"{}") is True
    assert store.put_once(store.containers.audit, "head-1.json", b"{}") is False


def test_every_sas_is_signed_with_a_user_delegation_key_from_storage(store):
    """Storage handed out the key for the identity's token (Azurite names the token's tenant in it)."""
    for url in (store.upload_url("a.txt"), store.read_url(store.containers.inputs, "a.txt"),
                store.container_write_url(store.containers.logs, hours=1)):
        query = parse_qs(urlsplit(url).query)
        assert {"skoid", "sktid", "skt", "ske", "sks", "skv", "sig"} <= set(query)


def test_upload_url_writes_one_blob_and_cannot_read(store, azurite_oauth):
    _, ca = azurite_oauth
    url = store.upload_url("sub/abc/report.txt")
    assert requests.put(url, data=b"hello", headers={"x-ms-blob-type": "BlockBlob"}, verify=ca,
                        timeout=10).status_code == 201
    assert store.info(store.containers.inputs, "sub/abc/report.txt").size == 5
    assert requests.get(url, verify=ca, timeout=10).status_code == 403
    other = url.replace("report.txt", "other.txt")
    assert requests.put(other, data=b"x", headers={"x-ms-blob-type": "BlockBlob"}, verify=ca,
                        timeout=10).status_code == 403


def test_read_url_downloads_and_names_the_file(store, azurite_oauth):
    _, ca = azurite_oauth
    store.put(store.containers.outputs, "job-1/result.csv", b"a,b\n1,2\n")
    answer = requests.get(store.read_url(store.containers.outputs, "job-1/result.csv", download_name="result.csv"),
                          verify=ca, timeout=10)
    assert answer.status_code == 200 and answer.content == b"a,b\n1,2\n"
    assert answer.headers["Content-Disposition"] == 'attachment; filename="result.csv"'


def test_container_write_url_lets_a_task_upload_but_not_list_or_read(store, azurite_oauth):
    _, ca = azurite_oauth
    base, token = store.container_write_url(store.containers.logs, hours=24).split("?", 1)
    blob = f"{base}/job-2/task-1/stderr.txt?{token}"
    assert requests.put(blob, data=b"oops", headers={"x-ms-blob-type": "BlockBlob"}, verify=ca,
                        timeout=10).status_code == 201
    assert store.read_all(store.containers.logs, "job-2/task-1/stderr.txt") == b"oops"
    assert requests.get(blob, verify=ca, timeout=10).status_code == 403
    assert requests.get(f"{base}?restype=container&comp=list&{token}", verify=ca, timeout=10).status_code == 403


def test_one_delegation_key_signs_many_urls_and_the_longest_sas_ends_with_it(store):
    """One request to Storage for the key, not one per SAS; a 7-day task SAS cannot outlive the key."""
    first = parse_qs(urlsplit(store.upload_url("a.txt")).query)
    week = parse_qs(urlsplit(store.read_url(store.containers.inputs, "a.txt", hours=7 * 24)).query)
    assert (first["skt"], first["ske"]) == (week["skt"], week["ske"])
    assert week["se"][0] <= week["ske"][0]


@pytest.mark.parametrize("options", [
    {"lifetime": -7200},
    {"audience": "https://batch.core.windows.net/"},
    {"issuer": "https://login.example.com/not-entra/"},
], ids=["expired", "batch-audience", "foreign-issuer"])
def test_tokens_storage_would_refuse_are_refused(azurite_oauth, issuer, options):
    with entra_store(azurite_oauth, IssuedCredential(issuer, **options)) as refused:
        with pytest.raises(AuthFailed):
            refused.ensure_containers()


def test_the_portal_uses_entra_id_when_a_storage_account_url_is_set(azurite_oauth, issuer, settings, monkeypatch):
    """AZURE_STORAGE_ACCOUNT_URL switches the portal's storage to Entra ID (the connection string is not read): the
    managed identity named in settings signs in through azure-identity's own ManagedIdentityCredential, at the
    host's managed identity endpoint (stood in), for Storage's audience."""
    url, ca = azurite_oauth
    client_id = "6f1c3a52-0d4e-4b8e-9a43-2f7c9b1e5d10"
    settings.AZURE_STORAGE_ACCOUNT_URL, settings.AZURE_STORAGE_CA_BUNDLE = url, ca
    settings.AZURE_STORAGE_MANAGED_IDENTITY_CLIENT_ID = client_id
    settings.AZURE_STORAGE_CONNECTION_STRING = "not a connection string: never read with Entra ID"
    settings.STORAGE_LOGS_CONTAINER = f"logs-{uuid.uuid4().hex[:8]}"
    with host_managed_identity(issuer, monkeypatch) as asked:
        monkeypatch.setattr(identity, "_credentials", {})   # credentials made before the variables were set
        with accounts.blob_store() as store:
            store.ensure_containers()
            store.put(settings.STORAGE_LOGS_CONTAINER, "x.txt", b"by the managed identity")
            assert store.read_all(settings.STORAGE_LOGS_CONTAINER, "x.txt") == b"by the managed identity"
    assert set(asked) == {("https://storage.azure.com", client_id)}
