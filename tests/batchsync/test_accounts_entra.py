"""Accounts reached with Microsoft Entra ID: the gateway signs with a TokenCredential, over HTTPS, beside accounts
signed with a shared key. The token issuer stands in for Entra's sign-in; localbatch verifies the tokens as Batch
does, and the real azure-batch SDK carries them."""

import pytest
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from batchsync import accounts
from batchsync.accounts import default_account, gateway_for
from batchsync.gateway import AuthFailed, entra_credential, identity
from batchsync.sync import sync_account
from portal.models import BatchAccount, Job, Pool
from tests.entra import IssuedCredential, Issuer, host_managed_identity, start_entra_localbatch
from tests.localbatch.helpers import make_job, make_pool

pytestmark = pytest.mark.django_db

IDENTITY = "6f1c3a52-0d4e-4b8e-9a43-2f7c9b1e5d10"


@pytest.fixture
def issuer():
    return Issuer()


@pytest.fixture
def entra_batch(tmp_path, issuer, settings):
    running = start_entra_localbatch(tmp_path / "entra", issuer)
    settings.BATCH_CA_BUNDLE = running.ca_path
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def signed_in(monkeypatch, issuer):
    """Entra's sign-in, stood in: which managed identity the portal asked for, and the credential it got."""
    asked: list[str] = []
    credential = IssuedCredential(issuer)

    def sign_in(client_id: str = "") -> IssuedCredential:
        asked.append(client_id)
        return credential

    monkeypatch.setattr(accounts, "entra_credential", sign_in)
    return asked, credential


def entra_account(running, name: str = "entra") -> BatchAccount:
    return BatchAccount.objects.create(name=name, account_url=running.endpoint, account_name=running.account_name,
                                       auth=BatchAccount.Auth.ENTRA_ID, managed_identity_client_id=IDENTITY,
                                       key_env_var="NO_SUCH_VARIABLE_IS_NEEDED")


def test_a_key_account_and_an_entra_account_sync_side_by_side(localbatch, entra_batch, signed_in, monkeypatch):
    asked, credential = signed_in
    monkeypatch.setenv("KEYED_BATCH_KEY", localbatch.account_key)
    keyed = BatchAccount.objects.create(name="keyed", account_url=localbatch.endpoint,
                                        account_name=localbatch.account_name, key_env_var="KEYED_BATCH_KEY")
    entra = entra_account(entra_batch)
    # The same ids in both accounts, made with the real SDK: each with its own way in.
    keyed_client = BatchClient(localbatch.endpoint, AzureNamedKeyCredential(localbatch.account_name,
                                                                            localbatch.account_key))
    entra_client = BatchClient(entra_batch.endpoint, credential, connection_verify=entra_batch.ca_path)
    for client in (keyed_client, entra_client):
        with client:
            make_pool(client, "shared-pool", nodes=0)
            make_job(client, "nightly", "shared-pool")
    with BatchClient(entra_batch.endpoint, credential, connection_verify=entra_batch.ca_path) as client:
        make_job(client, "entra-only", "shared-pool")

    sync_account(keyed, tasks=False)
    sync_account(entra, tasks=False)

    assert sorted(Job.objects.filter(account=keyed).values_list("job_id", flat=True)) == ["nightly"]
    assert sorted(Job.objects.filter(account=entra).values_list("job_id", flat=True)) == ["entra-only", "nightly"]
    assert Pool.objects.filter(pool_id="shared-pool").count() == 2
    assert set(asked) == {IDENTITY}   # the account's managed identity, and only for the Entra account
    # Every request to the Entra account carried a token it accepted (it accepts no other way in but the key).
    assert entra_batch.app.served and not [s for s in entra_batch.app.served if s.status == 401]


def test_a_refused_token_is_an_auth_failure_that_names_what_batch_said(entra_batch, issuer, monkeypatch):
    monkeypatch.setattr(accounts, "entra_credential", lambda client_id="": IssuedCredential(issuer, lifetime=-7200))
    with gateway_for(entra_account(entra_batch)) as gateway:
        with pytest.raises(AuthFailed) as refused:
            gateway.list_jobs()
    assert refused.value.status == 401 and refused.value.code == "AuthenticationFailed"
    assert "The token is expired" in str(refused.value)


def test_an_entra_account_over_plain_http_is_refused_before_anything_is_sent(localbatch, signed_in):
    """azure-core will not send a bearer token without TLS: a plain error naming the URL, not "Batch is down"."""
    account = entra_account(localbatch)
    served = len(localbatch.app.served)
    with pytest.raises(AuthFailed, match="only over HTTPS"):
        gateway_for(account)
    assert len(localbatch.app.served) == served


def test_the_default_account_follows_batch_auth_in_settings(settings):
    settings.BATCH_AUTH, settings.BATCH_MANAGED_IDENTITY_CLIENT_ID = "entra_id", IDENTITY
    account = default_account()
    assert (account.auth, account.managed_identity_client_id) == ("entra_id", IDENTITY)
    settings.BATCH_AUTH, settings.BATCH_MANAGED_IDENTITY_CLIENT_ID = "shared_key", ""
    assert default_account().auth == "shared_key"


def test_credentials_are_azure_identitys_and_made_once_per_identity():
    """A client id means exactly that user-assigned managed identity; none means DefaultAzureCredential. One per
    process, so their cached tokens are shared by every gateway. Making them asks Entra nothing."""
    assert isinstance(entra_credential(IDENTITY), ManagedIdentityCredential)
    assert entra_credential(IDENTITY) is entra_credential(IDENTITY)
    assert isinstance(entra_credential(""), DefaultAzureCredential)
    assert entra_credential("") is not entra_credential(IDENTITY)


@pytest.fixture
def managed_identity_endpoint(issuer, monkeypatch):
    with host_managed_identity(issuer, monkeypatch) as asked:
        monkeypatch.setattr(identity, "_credentials", {})   # credentials made before the variables were set
        yield asked


def test_azure_identitys_managed_identity_credential_signs_the_sync_in(entra_batch, managed_identity_endpoint):
    """No credential of ours: the account's managed identity client id goes to azure-identity, which asks the host's
    managed identity endpoint for a Batch token; localbatch verifies it as Batch would."""
    account = entra_account(entra_batch)
    with BatchClient(entra_batch.endpoint, AzureNamedKeyCredential(entra_batch.account_name, entra_batch.account_key),
                     connection_verify=entra_batch.ca_path) as by_key:
        make_job(by_key, "made-by-key", "p")

    sync_account(account, tasks=False)

    assert list(Job.objects.filter(account=account).values_list("job_id", flat=True)) == ["made-by-key"]
    assert managed_identity_endpoint and set(managed_identity_endpoint) == {("https://batch.core.windows.net/",
                                                                             IDENTITY)}
    assert not [s for s in entra_batch.app.served if s.status == 401]
