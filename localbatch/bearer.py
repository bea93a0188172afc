"""Microsoft Entra ID bearer tokens, verified as Batch verifies them: signed (RS256) by a key of an issuer localbatch
is told to trust (a JWKS file or URL), the right issuer, audience `https://batch.core.windows.net/`, not expired.

A refused token answers 401 `AuthenticationFailed` with the detail in `values`, the shape and words the service
answered for a wrong audience (recorded in Azure/azure-sdk-for-net#8026), and an RFC 6750 challenge in
`WWW-Authenticate` as Azure's front ends send it (Azure/doAzureParallel#346). Uses PyJWT (with `cryptography`
for RS256)."""

from __future__ import annotations

import json
import re
import urllib.error
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt

from .errors import BatchError

BATCH_AUDIENCE = "https://batch.core.windows.net/"
MESSAGE = ("Server failed to authenticate the request. Make sure the value of Authorization header is formed "
           "correctly.")
# Entra signs access tokens with RS256; anything else, `none` above all, is refused.
ALGORITHMS = ("RS256",)


class TokenRefused(BatchError):
    def __init__(self, detail: str, challenge: str):
        super().__init__(401, "AuthenticationFailed", MESSAGE, {"AuthenticationErrorDetail": detail})
        self.challenge = challenge


@dataclass
class BearerAuth:
    """What localbatch trusts: the JWKS (`jwks`: a file path or an http(s) URL), the issuers (`iss` exactly) and the
    audiences. `leeway_seconds`: clock skew allowed on `exp`/`nbf` (Entra's own validators allow 5 minutes; tests
    that need an expired token make one that expired long before)."""

    jwks: str
    issuers: Sequence[str]
    audiences: Sequence[str] = (BATCH_AUDIENCE,)
    leeway_seconds: int = 300
    _keys: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:

        if not self.issuers:
            raise ValueError("bearer auth needs at least one trusted issuer")
        if self.jwks.startswith(("http://", "https://")):
            # Fetches on the first token and again for a key id it has not seen (the issuer rolled its keys).
            self._keys = jwt.PyJWKClient(self.jwks, cache_keys=True, lifespan=3600)
        else:
            with open(self.jwks, encoding="utf-8") as source:
                self._keys = jwt.PyJWKSet.from_dict(json.load(source))

    @property
    def challenge_uri(self) -> str:
        """Where a client gets a token: Entra's authorize endpoint for an `sts.windows.net/<tenant>/` issuer."""
        issuer = self.issuers[0]
        tenant = re.fullmatch(r"https://sts\.windows\.net/([^/]+)/", issuer)
        return f"https://login.microsoftonline.com/{tenant.group(1)}/oauth2/authorize" if tenant else issuer

    def refuse(self, detail: str) -> TokenRefused:
        shown = re.sub(r'[^\x20-\x7e]|"', "", detail)[:300]
        return TokenRefused(detail, f'Bearer authorization_uri="{self.challenge_uri}", error="invalid_token", '
                                    f'error_description="{shown}"')

    def verify(self, authorization: str) -> dict:
        """The token's claims, or TokenRefused. `authorization` is the whole header value ("" when missing)."""

        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if not authorization:
            raise self.refuse("The Authorization header is missing.")
        if scheme.lower() != "bearer" or not token:
            raise self.refuse("The authorization header is missing access token.")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise self.refuse("The access token is not a JSON Web Token.") from None
        if header.get("alg") not in ALGORITHMS:
            raise self.refuse(f"Signature validation failed. The token's algorithm '{header.get('alg')}' is not "
                              f"accepted; tokens must be signed with {', '.join(ALGORITHMS)}.")
        key = self._signing_key(header.get("kid"))
        try:
            return jwt.decode(token, key, algorithms=list(ALGORITHMS), audience=list(self.audiences),
                              issuer=list(self.issuers), leeway=self.leeway_seconds,
                              options={"require": ["exp", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            raise self.refuse("Lifetime validation failed. The token is expired.") from None
        except jwt.ImmatureSignatureError:
            raise self.refuse("Lifetime validation failed. The token is not yet valid.") from None
        except jwt.InvalidAudienceError:
            audience = _claim(token, "aud")
            raise self.refuse(f"The access token has been obtained from wrong audience or resource '{audience}'. It "
                              f"should exactly match (including forward slash) with one of the allowed audiences "
                              f"'{', '.join(self.audiences)}'") from None
        except jwt.InvalidIssuerError:
            raise self.refuse(f"Issuer validation failed. Issuer '{_claim(token, 'iss')}' is not trusted.") from None
        except jwt.InvalidSignatureError:
            raise self.refuse("Signature validation failed.") from None
        except jwt.MissingRequiredClaimError as exc:
            raise self.refuse(f"The access token has no '{exc.claim}' claim.") from None
        except jwt.PyJWTError as exc:
            raise self.refuse(f"The access token is not valid: {type(exc).__name__}.") from None

    def _signing_key(self, kid: object) -> Any:

        try:
            if isinstance(self._keys, jwt.PyJWKClient):
                return self._keys.get_signing_key(kid).key
            return self._keys[kid].key
        except (jwt.PyJWKClientConnectionError, urllib.error.URLError):
            raise self.refuse(f"Signature validation failed. The signing keys could not be fetched from "
                              f"{self.jwks}.") from None
        except (KeyError, jwt.PyJWKClientError, jwt.PyJWKSetError):
            raise self.refuse(f"Signature validation failed. No trusted key has the id '{kid}'.") from None


def _claim(token: str, name: str) -> str:
    """A claim of a token already found wrong, to name it in the answer."""

    value = jwt.decode(token, options={"verify_signature": False}).get(name, "")
    return ", ".join(value) if isinstance(value, list) else str(value)
