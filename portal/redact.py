"""Keeps keys, SAS signatures and passwords out of the logs: a logging filter that blanks them in every record.

SAS URLs reach log lines through SDK errors and our own messages (a resource file's URL, a container URL), and
connection strings through configuration errors; whatever the message, the secret part is replaced before any
handler formats it."""

from __future__ import annotations

import logging
import re

from django.views.debug import SafeExceptionReporterFilter

REDACTED = "REDACTED"

# A SAS signature in a URL's query (`sig=`), an account key in a connection string (`AccountKey=`), a shared-access
# key, and `password=` in a URL or a key=value list. Values end at the next separator of the format they sit in.
_PATTERNS = [
    re.compile(r"(?i)(?<![A-Za-z])(sig=)[^&\s'\"<>]+"),
    re.compile(r"(?i)(AccountKey=)[^;\s'\"<>]+"),
    re.compile(r"(?i)(SharedAccessKey=)[^;\s'\"<>]+"),
    re.compile(r"(?i)(SharedAccessSignature=)[^;\s'\"<>]+"),
    re.compile(r"(?i)(password=)[^&;\s'\"<>]+"),
    # postgres://user:secret@host, redis://:secret@host
    re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^/:@\s]*:)[^@/\s]+(?=@)"),
]


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


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


class SecretsExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter for error reports, also hiding settings that hold keys inside URLs or connection strings
    (the defaults hide names with KEY, SECRET, PASS, TOKEN or SIGNATURE only), and redacting any other value."""

    hidden_settings = re.compile(
        "API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|CONNECTION_STRING|CONTAINER_URL|DATABASE|BROKER_URL|REDIS_URL",
        flags=re.IGNORECASE)

    def cleanse_setting(self, key, value):
        cleaned = super().cleanse_setting(key, value)
        return redact(cleaned) if isinstance(cleaned, str) else cleaned
