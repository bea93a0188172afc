"""Shared Key request signing, computed exactly as the azure-batch SDK computes it."""

import base64
import hashlib
import hmac
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from .errors import BatchError
from .timeutil import from_rfc1123, utcnow

SIGNED_HEADERS = (
    "content-encoding", "content-language", "content-length", "content-md5", "content-type", "date",
    "if-modified-since", "if-match", "if-none-match", "if-unmodified-since", "range",
)
MAX_CLOCK_SKEW = timedelta(minutes=15)


def string_to_sign(method: str, raw_url: str, headers: dict[str, str], account_name: str,
                   lowercase_query_names: bool = False) -> str:
    """The canonical string. `raw_url` is the path and query exactly as sent (still percent-encoded);
    `headers` maps lowercase names to values."""
    headers = {k.lower(): v for k, v in headers.items() if v}
    if method not in ("GET", "HEAD") and "content-length" not in headers:
        # The SDK signs "0" for a bodiless POST/DELETE; the transport then sends Content-Length: 0.
        headers["content-length"] = "0"
    lines = [method] + [headers.get(name, "") for name in SIGNED_HEADERS]
    text = "\n".join(lines) + "\n"
    for name, value in sorted((k, v) for k, v in headers.items() if "ocp-" in k):
        text += f"{name}:{value}\n"
    url = urlsplit(raw_url)
    text += f"/{account_name}{url.path}"
    query = parse_qs(url.query)
    if lowercase_query_names:
        query = {k.lower(): v for k, v in query.items()}
    for name in sorted(query):
        if query[name][0]:
            text += f"\n{name}:{query[name][0]}"
    return text


def sign(key: str, text: str) -> str:
    digest = hmac.new(base64.b64decode(key), text.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def authorization_header(method: str, raw_url: str, headers: dict[str, str], account_name: str, key: str) -> str:
    return f"SharedKey {account_name}:{sign(key, string_to_sign(method, raw_url, headers, account_name))}"


def _failed(detail: str) -> BatchError:
    return BatchError(403, "AuthenticationFailed",
                      "Server failed to authenticate the request. Make sure the value of Authorization header "
                      "is formed correctly including the signature.",
                      {"AuthenticationErrorDetail": detail})


def verify(method: str, raw_url: str, headers: dict[str, str], account_name: str, key: str) -> None:
    """Raise 403 AuthenticationFailed unless the request carries a valid, fresh SharedKey signature."""
    headers = {k.lower(): v for k, v in headers.items()}
    authorization = headers.get("authorization", "")
    if not authorization:
        raise _failed("The Authorization header is missing.")
    scheme, _, credential = authorization.partition(" ")
    if scheme != "SharedKey" or ":" not in credential:
        raise _failed("The Authorization header must use the SharedKey scheme: 'SharedKey <account>:<signature>'.")
    name, _, signature = credential.partition(":")
    if name != account_name:
        raise _failed(f"The account name '{name}' in the Authorization header does not match this account.")
    date_header = headers.get("ocp-date") or headers.get("date")
    if not date_header:
        raise _failed("The request must carry an ocp-date header.")
    try:
        sent_at = from_rfc1123(date_header)
    except (TypeError, ValueError):
        raise _failed(f"The ocp-date header '{date_header}' is not an RFC 1123 date.") from None
    if abs(utcnow() - sent_at) > MAX_CLOCK_SKEW:
        raise _failed("Request date header too old: ocp-date must be within 15 minutes of the server's time.")
    candidates = []
    for lowercase in (False, True):  # Storage-style tools lowercase query names; the Python SDK does not.
        text = string_to_sign(method, raw_url, headers, account_name, lowercase_query_names=lowercase)
        if hmac.compare_digest(sign(key, text), signature):
            return
        candidates.append(text)
    raise _failed(f"The MAC signature found in the HTTP request '{signature}' is not the same as any computed "
                  f"signature. Server used following string to sign: '{candidates[0]}'.")
