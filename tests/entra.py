"""A token issuer standing in for Microsoft Entra ID's sign-in, and a real azure-core `TokenCredential` over it.

Entra's sign-in is the only part of the Entra ID path that tests stand in for: the SDKs ask this credential for a
token exactly as they ask DefaultAzureCredential, send it as a bearer token over HTTPS, and localbatch and Azurite
verify it. Tokens look like Entra's v1 access tokens: RS256, a `kid` from the issuer's JWKS,
`iss` `https://sts.windows.net/<tenant>/`, `aud` the resource the scope names."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

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
