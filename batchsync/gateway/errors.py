"""The gateway's own errors: every SDK exception leaves the gateway as one of these."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError
from azure.core.rest import HttpResponse

# Batch echoes property values back in its messages, and resource and output file URLs carry SAS tokens: messages
# go through the portal's one redactor, which is plain Python, so the gateway stays free of Django.
from portal.redact import redact

# Batch's 409 codes that say "this id is taken"; every other 409 is a state conflict.
_EXISTS_CODES = frozenset({
    "PoolExists", "JobExists", "TaskExists", "JobScheduleExists", "NodeUserExists",
    "JobWithSameIdExists", "JobScheduleWithSameIdExists",
})
_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Batch's `values` keys that name what it refused, as (name key, value key): e.g. PropertyName and PropertyValue.
_NAMED_VALUES = (("PropertyName", "PropertyValue"), ("QueryParameterName", "QueryParameterValue"),
                 ("HeaderName", "HeaderValue"))
# A value Batch echoes back can be a whole command line; this much of it names it well enough.
_VALUE_CHARS = 120


class GatewayError(Exception):
    """Batch refused or could not answer; `code` is Batch's error code when it sent one, `values` the key/value
    pairs its error body carried (PropertyName, PropertyValue, Reason, …), redacted. `message` is Batch's message
    with those values in words, so whoever shows it names what Batch refused."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 request_id: str | None = None, values: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.request_id = request_id
        self.values = values

    def __str__(self) -> str:
        facts = [f"code {self.code}" if self.code else "", f"HTTP {self.status}" if self.status else "",
                 f"request {self.request_id}" if self.request_id else ""]
        facts = [fact for fact in facts if fact]
        return f"{self.message} ({', '.join(facts)})" if facts else self.message


class NotFound(GatewayError):
    """The pool, job, task, node or file does not exist (any longer)."""


class AlreadyExists(GatewayError):
    """An entity with this id exists already; for idempotent creates this is success."""


class Rejected(GatewayError):
    """Batch refused the request as it stands (bad input, or the entity is in the wrong state)."""


class AuthFailed(GatewayError):
    """The account name or key is wrong, or the account may not do this."""


class Transient(GatewayError):
    """Busy, throttled, timed out or unreachable: the same request may succeed later."""

    def __init__(self, message: str, *, retry_after: float | None = None, **facts: Any):
        super().__init__(message, **facts)
        self.retry_after = retry_after


def refusal_words(message: str,
                  values: Iterable[tuple[object, object]] | None) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Batch's message (its first line) and its `values` pairs, redacted, the message followed by what the values
    name in plain words: "The value provided for one of the properties in the request body is invalid:
    poolInfo.autoPoolSpecification.autoPoolIdPrefix = 'sub-…' (At most 20 …)"."""
    pairs = tuple((redact(str(key)), redact(str(value if value is not None else ""))) for key, value in values or ()
                  if key)
    message = redact(str(message or "").split("\n")[0]).strip()
    given = dict(pairs)
    words, used = [], set()
    for name_key, value_key in _NAMED_VALUES:
        if name_key in given:
            used |= {name_key, value_key}
            words.append(f"{given[name_key]} = {_shown(given[value_key])}" if value_key in given
                         else given[name_key])
    words += [f"{key} {_shown(value)}" for key, value in pairs if key not in used and key != "Reason"]
    details = "; ".join(words)
    if "Reason" in given:
        details = f"{details} ({given['Reason'].rstrip('.')})" if details else given["Reason"].rstrip(".")
    if not details:
        return message, pairs
    return (f"{message.rstrip('.')}: {details}." if message else f"{details}."), pairs


def _shown(value: str) -> str:
    value = " ".join(value.split())
    return f"'{value[:_VALUE_CHARS]}…'" if len(value) > _VALUE_CHARS else f"'{value}'"


def translate(exc: AzureError) -> GatewayError:
    """Our error for an SDK exception, chosen by Batch's error code and HTTP status, not by the SDK's class."""
    response = getattr(exc, "response", None) if isinstance(exc, HttpResponseError) else None
    if response is None and isinstance(exc, ClientAuthenticationError):
        return AuthFailed(f"Batch credentials were refused: {redact(str(exc.message or exc))}")
    if response is None:
        # No answer at all: connection refused or reset, DNS, a timeout, or retries ran out.
        return Transient(f"Batch could not be reached: {redact(str(exc.message or exc))}")

    status = response.status_code
    error = getattr(exc, "error", None)
    code, message = getattr(error, "code", None), getattr(error, "message", None)
    # The SDK hands Batch's `values` on as the error's details, each key as a code and its value as a message.
    values = [(getattr(detail, "code", None), getattr(detail, "message", None))
              for detail in getattr(error, "details", None) or ()]
    if not code:
        code, message, values = _error_from_streamed_body(response)
    # Batch appends "\nRequestId:…\nTime:…" to its messages; the request id is kept separately.
    # `reason` is HttpResponseError's (an answer came back, so exc is one).
    message, pairs = refusal_words(message or getattr(exc, "reason", None) or exc.message, values)
    facts = {"code": code, "status": status, "request_id": response.headers.get("request-id"), "values": pairs}

    if code in _EXISTS_CODES:
        return AlreadyExists(message, **facts)
    if status == 404 or (code or "").endswith("NotFound"):
        return NotFound(message, **facts)
    if status in (401, 403):
        return AuthFailed(message, **facts)
    if status in _TRANSIENT_STATUSES:
        return Transient(message, retry_after=retry_after_seconds(response.headers), **facts)
    if 400 <= status < 500:
        return Rejected(message, **facts)
    return GatewayError(message, **facts)


def _error_from_streamed_body(response: HttpResponse) -> tuple[str | None, str | None, list]:
    """Batch's code, message and values from an error body the SDK did not read.

    File downloads are streamed, so the SDK raises before reading the body and the exception has no code."""
    try:
        body = json.loads(response.read())
        values = [(item.get("key"), item.get("value")) for item in body.get("values") or () if isinstance(item, dict)]
        return body.get("code"), (body.get("message") or {}).get("value"), values
    except Exception:  # not JSON, already consumed, or the connection dropped: keep status-only facts
        return None, None, []


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds Batch asked the client to wait (retry-after-ms, or Retry-After in seconds or as a date), or None."""
    if headers.get("retry-after-ms"):
        return float(headers["retry-after-ms"]) / 1000
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None
