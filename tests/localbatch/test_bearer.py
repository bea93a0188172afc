"""Entra ID bearer tokens at localbatch, through the real azure-batch SDK with a real TokenCredential over HTTPS.

A token that is signed by the trusted issuer's key, from that issuer, for Batch's audience and not expired is
accepted; every other token, and a request with none, is refused with 401 AuthenticationFailed, Batch's error body
and a Bearer challenge, and changes nothing. SharedKey keeps working beside it."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from azure.batch import BatchClient, models
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from cryptography.hazmat.primitives.asymmetric import rsa

from localbatch import API_VERSION
from localbatch.bearer import BATCH_AUDIENCE, BearerAuth
from localbatch.server import start
from tests.entra import IssuedCredential, Issuer, start_entra_localbatch


@pytest.fixture(scope="module")
def issuer():
    return Issuer()


@pytest.fixture
def entra_batch(tmp_path, issuer):
    """localbatch over HTTPS (a certificate made at start) that trusts `issuer`'s tokens."""
    running = start_entra_localbatch(tmp_path, issuer)
    try:
        yield running
    finally:
        running.stop()


def client(running, credential) -> BatchClient:
    return BatchClient(running.endpoint, credential, connection_verify=running.ca_path, retry_total=0)


def pool(pool_id: str) -> models.BatchPoolCreateOptions:
    return models.BatchPoolCreateOptions(id=pool_id, vm_size="standard_d2s_v3", target_dedicated_nodes=0)


def refusal(exc: HttpResponseError) -> str:
    """The detail of a refusal, after checking it has Batch's shape; the SDK maps 401 to ClientAuthenticationError."""
    assert isinstance(exc, ClientAuthenticationError)
    assert exc.status_code == 401
    assert exc.error.code == "AuthenticationFailed"
    assert exc.error.message.startswith("Server failed to authenticate the request.")
    challenge = exc.response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer authorization_uri="https://login.microsoftonline.com/')
    assert 'error="invalid_token"' in challenge
    details = {detail.code: detail.message for detail in exc.error.details}
    return details["AuthenticationErrorDetail"]


def test_a_valid_token_works_and_is_reused(entra_batch, issuer):
    credential = IssuedCredential(issuer)
    with client(entra_batch, credential) as batch:
        assert entra_batch.endpoint.startswith("https://")
        batch.create_pool(pool("entra-pool"))
        assert [p.id for p in batch.list_pools()] == ["entra-pool"]
        assert batch.get_pool("entra-pool").vm_size == "standard_d2s_v3"
    assert credential.issued == 1   # the SDK's policy asked once and kept the token


@pytest.mark.parametrize(("options", "detail"), [
    ({"lifetime": -7200}, "Lifetime validation failed. The token is expired."),
    ({"audience": "https://batch.core.windows.net"}, "wrong audience or resource 'https://batch.core.windows.net'"),
    ({"audience": "https://storage.azure.com"}, "wrong audience or resource 'https://storage.azure.com'"),
    ({"issuer": "https://sts.windows.net/00000000-0000-0000-0000-000000000000/"}, "Issuer validation failed"),
    ({"algorithm": "none"}, "Signature validation failed. The token's algorithm 'none' is not accepted"),
    ({"algorithm": "HS256", "key": "a shared secret, not the issuer's key"}, "algorithm 'HS256' is not accepted"),
    ({"key": rsa.generate_private_key(public_exponent=65537, key_size=2048)}, "Signature validation failed."),
    ({"kid": "someone-elses-key"}, "No trusted key has the id 'someone-elses-key'"),
], ids=["expired", "audience-without-slash", "storage-audience", "wrong-issuer", "unsigned", "hmac", "forged",
        "unknown-key"])
def test_bad_tokens_are_refused_with_batchs_error_and_change_nothing(entra_batch, issuer, options, detail):
    with client(entra_batch, IssuedCredential(issuer, **options)) as batch:
        with pytest.raises(HttpResponseError) as refused:
            batch.create_pool(pool("never"))
    assert detail in refusal(refused.value)
    with client(entra_batch, IssuedCredential(issuer)) as batch:
        assert list(batch.list_pools()) == []


def test_a_wrong_issuer_is_refused_even_with_its_own_valid_keys(tmp_path, entra_batch, issuer):
    """Another tenant's token, signed by that tenant's key: its key is not trusted, whatever it claims."""
    other = Issuer()
    with client(entra_batch, IssuedCredential(other)) as batch:
        with pytest.raises(HttpResponseError) as refused:
            list(batch.list_pools())
    assert "Signature validation failed" in refusal(refused.value)


def test_a_request_without_a_token_gets_the_challenge(entra_batch):
    answer = requests.get(f"{entra_batch.endpoint}/pools", params={"api-version": API_VERSION},
                          verify=entra_batch.ca_path, timeout=10)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")
    body = answer.json()
    assert body["code"] == "AuthenticationFailed"
    assert body["message"]["value"].startswith("Server failed to authenticate the request.")
    assert body["values"] == [{"key": "AuthenticationErrorDetail", "value": "The Authorization header is missing."}]
    assert body["odata.metadata"].endswith("#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element")


def test_shared_key_still_works_beside_bearer_tokens(entra_batch, issuer):
    shared = BatchClient(entra_batch.endpoint, AzureNamedKeyCredential(entra_batch.account_name,
                                                                     entra_batch.account_key),
                         connection_verify=entra_batch.ca_path)
    with shared:
        shared.create_pool(pool("by-key"))
    with client(entra_batch, IssuedCredential(issuer)) as batch:
        assert [p.id for p in batch.list_pools()] == ["by-key"]


def test_the_certificate_is_not_trusted_without_the_ca(entra_batch, issuer):
    """The certificate made at start is real TLS: a client that does not trust its CA does not connect."""
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{entra_batch.endpoint}/pools", params={"api-version": API_VERSION}, timeout=10)


def test_keys_can_come_from_a_jwks_url(tmp_path, issuer):
    """As Entra publishes them (`…/discovery/keys`): fetched when the first token arrives."""
    jwks = json.dumps(issuer.jwks()).encode()

    class Keys(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(jwks)))
            self.end_headers()
            self.wfile.write(jwks)

        def log_message(self, *args):
            pass

    keys = ThreadingHTTPServer(("127.0.0.1", 0), Keys)
    threading.Thread(target=keys.serve_forever, daemon=True).start()
    bearer = BearerAuth(f"http://127.0.0.1:{keys.server_address[1]}/keys", [issuer.issuer], [BATCH_AUDIENCE])
    running = start(str(tmp_path / "lb"), node_start_seconds=0.05, bearer=bearer)
    try:
        with client(running, IssuedCredential(issuer)) as batch:
            batch.create_pool(pool("from-url"))
            assert [p.id for p in batch.list_pools()] == ["from-url"]
    finally:
        running.stop()
        keys.shutdown()
        keys.server_close()
