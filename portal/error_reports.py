"""Django's error reports (the debug page, error e-mails) without secrets: settings hidden by name, and every
other value put through portal.redact."""

import re
from typing import Any

from django.views.debug import SafeExceptionReporterFilter

from portal.redact import redact


class SecretsExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter for error reports, also hiding settings that hold keys inside URLs or connection strings
    (the defaults hide names with KEY, SECRET, PASS, TOKEN or SIGNATURE only), and redacting any other value."""

    hidden_settings = re.compile(
        "API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|CONNECTION_STRING|CONTAINER_URL|DATABASE|BROKER_URL|REDIS_URL",
        flags=re.IGNORECASE)

    def cleanse_setting(self, key: int | str, value: Any) -> Any:
        cleaned = super().cleanse_setting(key, value)
        # A lazy string (django-axes' AXES_USERNAME_FORM_FIELD, reverse_lazy URLs) passes isinstance(str) but is
        # not one to `re`: made a real string first, or building the DEBUG error page itself fails.
        return redact(str(cleaned)) if isinstance(cleaned, str) else cleaned
