"""A token issuer standing in for Microsoft Entra ID's sign-in, and a real azure-core `TokenCredential` over it.

Entra's sign-in is the only part of the Entra ID path that tests stand in for: the SDKs ask this credential for a
token exactly as they ask DefaultAzureCredential, send it as a bearer token over HTTPS, and localbatch and Azurite
verify it. Tokens look like Entra's v1 access tokens: RS256, a `kid` from the issuer's JWKS,
`iss` `https://sts.windows.net/<tenant>/`, `aud` the resource the scope names."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from azure.core.credentials import AccessToken
from cryptography.hazmat.primitives.asymmetric import rsa

from localbatch.bearer import BearerAuth
from localbatch.server import Running, start


class Issuer:
    """One tenant's signing key. `token()` makes any token, valid or not, for tests of refusal."""

    def __init__(self, tenant_id: str | None = None):
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex
        self.issuer = f"https://sts.windows.net/{self.tenant_id}/"

    def jwks(self) -> dict:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def write_jwks(self, path: Path) -> Path:
        path.write_text(json.dumps(self.jwks()))
        return path

    def token(self, audience: str, *, lifetime: float = 3600, issuer: str | None = None,
              key: Any = None, algorithm: str = "RS256", kid: str | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {"aud": audience, "iss": issuer or self.issuer, "iat": now - 60, "nbf": now - 60,
                   "exp": int(now + lifetime), "tid": self.tenant_id, "oid": str(uuid.uuid4()),
                   "appid": str(uuid.uuid4()), "ver": "1.0", **claims}
        if algorithm == "none":
            return jwt.encode(payload, None, algorithm="none")
        return jwt.encode(payload, key or self.key, algorithm=algorithm, headers={"kid": kid or self.kid})


def audience_of(scope: str) -> str:
    """The resource a `.default` scope names, as Entra puts it in `aud`: the Batch SDK asks for
    `https://batch.core.windows.net//.default` and gets `https://batch.core.windows.net/`."""
    return scope.removesuffix("/.default")


class IssuedCredential:
    """A `TokenCredential` (azure.core.credentials) whose tokens come from `source`. `**token_options` go to
    `Issuer.token` for every token (e.g. `lifetime=-7200` for an expired one, `audience=` to force a wrong one).
    Counts the tokens it issued: the SDK caches a token until shortly before it expires."""

    def __init__(self, source: Issuer, /, **token_options: Any):
        self.source = source
        self.token_options = token_options
        self.issued = 0

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  enable_cae: bool = False, **kwargs: Any) -> AccessToken:
        options = dict(self.token_options)
        audience = options.pop("audience", None) or audience_of(scopes[0])
        lifetime = options.get("lifetime", 3600)
        self.issued += 1
        return AccessToken(self.source.token(audience, **options), int(time.time() + lifetime))

    def close(self) -> None:
        pass


def start_entra_localbatch(directory: Path, issuer: Issuer) -> Running:
    """localbatch over HTTPS (a certificate made at start; trust `.ca_path`) that accepts `issuer`'s tokens."""
    directory.mkdir(parents=True, exist_ok=True)
    bearer = BearerAuth(str(issuer.write_jwks(directory / "jwks.json")), [issuer.issuer])
    return start(str(directory / "localbatch"), node_start_seconds=0.05, bearer=bearer)


@contextmanager
def host_managed_identity(issuer: Issuer, monkeypatch: Any) -> Iterator[list[tuple[str, str]]]:
    """The managed identity endpoint a host gives its apps (App Service's protocol: IDENTITY_ENDPOINT and
    IDENTITY_HEADER in the environment), issuing `issuer`'s tokens: Entra's sign-in stood in, while azure-identity's
    own ManagedIdentityCredential does everything else. Yields the (resource, client_id) pairs asked for."""
    secret = uuid.uuid4().hex
    asked: list[tuple[str, str]] = []

    class Endpoint(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
            if self.headers.get("X-IDENTITY-HEADER") != secret or "resource" not in query:
                self.send_response(400)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            asked.append((query["resource"], query.get("client_id", "")))
            body = json.dumps({"access_token": issuer.token(query["resource"]),
                               "expires_on": str(int(time.time()) + 3600), "resource": query["resource"],
                               "token_type": "Bearer", "client_id": query.get("client_id", "")}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", secret)
    try:
        yield asked
    finally:
        server.shutdown()
        server.server_close()
