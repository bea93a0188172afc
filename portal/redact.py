"""The one redactor: what counts as a secret in text (SAS signatures, account keys, passwords, tokens), blanked
in log records, Batch's error messages and the audit history alike.

Plain Python, without Django: batchsync/gateway uses it for Batch's errors and must stay free of Django."""

from __future__ import annotations

import logging
import math
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# What replaces a secret inside text ("sig=REDACTED"), and what replaces a whole value in the audit history.
REDACTED = "REDACTED"
WITHHELD = "[redacted]"

# Each pattern's group 1 is what stays (the name, or the URL up to the password); the rest of the match is the
# secret, ending at the next separator of the format it sits in.
_SECRETS = [
    # A SAS signature in a URL's query or a SAS string.
    re.compile(r"(?i)((?<![A-Za-z])sig=)[^&\s'\"<>]+"),
    # Storage connection strings.
    re.compile(r"(?i)(AccountKey=)[^;\s'\"<>]+"),
    re.compile(r"(?i)(SharedAccessKey=)[^;\s'\"<>]+"),
    re.compile(r"(?i)(SharedAccessSignature=)[^;\s'\"<>]+"),
    # Authorization headers Batch and Storage echo back: SharedKey <account>:<signature>, Bearer <token>.
    re.compile(r"(SharedKey\s+[^:\s]+:)\S+"),
    re.compile(r"(?i)(\bBearer\s+)[^\s'\"<>]+"),
    # password= in a URL or a key=value list, and postgres://user:secret@host, redis://:secret@host.
    re.compile(r"(?i)(password=)[^&;\s'\"<>]+"),
    # The scheme must start a word, or a long run of letters would be tried from each of its positions.
    re.compile(r"(?i)((?<![a-z0-9+.-])[a-z][a-z0-9+.-]*://[^/:@\s]*:)[^@/\s]+(?=@)"),
]

# Names whose values are secrets wherever they appear in the audit history's `details` and `changes`.
_SECRET_NAME = re.compile(r"(?i)(password|passwd|secret|token|credential|connection_?string|"
                          r"(^|_)(key|sig|sas)$|account_?key|access_?key|api_?key)")
_URL = re.compile(r"(?i)\bhttps?://[^\s\"'<>]+")


def redact(text: str) -> str:
    """`text` with each secret blanked in place: "…&sig=REDACTED", "AccountKey=REDACTED;"."""
    for pattern in _SECRETS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def has_secret(text: str) -> bool:
    return any(pattern.search(text) for pattern in _SECRETS)


def sanitised(value: object, *, _depth: int = 0) -> Any:
    """`value` as the audit history keeps it: values under secret-looking names become "[redacted]"; text with a
    secret in a URL's query keeps the URL's path and loses its query; any other text with a secret becomes
    "[redacted]" whole. Returns plain JSON types (tuples become lists, other objects their text)."""
    if _depth > 20:
        return WITHHELD
    if isinstance(value, dict):
        return {str(k): (WITHHELD if _SECRET_NAME.search(str(k)) and v not in (None, "")
                         else sanitised(v, _depth=_depth + 1)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [sanitised(item, _depth=_depth + 1) for item in items]
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        # NaN and infinities are not JSON; the database would refuse them.
        return value if math.isfinite(value) else str(value)
    return sanitised_text(value.isoformat() if isinstance(value, datetime) else str(value))


def sanitised_text(text: str) -> str:
    """One text field of the audit history, as `sanitised` keeps it."""
    # PostgreSQL refuses NUL in text and JSON; it is never meaningful here.
    text = text.replace("\x00", "")
    if not has_secret(text):
        return text
    # Every URL loses its query string (where SAS tokens sit); a secret left after that redacts the whole text.
    stripped = _URL.sub(_without_query, text)
    return WITHHELD if has_secret(stripped) else stripped


def _without_query(match: re.Match) -> str:
    parts = urlsplit(match.group(0))
    if not parts.query:
        return match.group(0)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")) + "?" + WITHHELD


class RedactSecretsFilter(logging.Filter):
    """Rewrites the record's message (with its arguments merged in) and any exception text, so nothing downstream,
    formatter, handler or error e-mail, sees the secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record goes on as it is; logging reports the error itself
            return True
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
