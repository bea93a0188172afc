"""Login throttling: django-axes' backend, for sign-ins that come with a request.

Axes refuses `authenticate()` calls without a request. Only the sign-in pages face the network, and they always pass
one; a call without a request comes from code on the server (a management command, a test), where there is no
address to throttle, so this backend stands aside for it and the next backend checks the password as usual.

Axes locks a username at one address (AXES_LOCKOUT_PARAMETERS) after a few failures. Password spraying tries a few
passwords on each of many usernames from one address, which never trips that lock; so an address is also locked
once its failures across every username reach LOGIN_ADDRESS_FAILURE_LIMIT within the cool-off. That limit is
higher, because one office behind one address shares it."""

from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.exceptions import AxesBackendPermissionDenied
from axes.helpers import get_client_ip_address
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Sum
from django.http import HttpRequest
from django.utils import timezone


def address_failures(request: HttpRequest) -> int:
    """Failed sign-ins from the request's address, across every username, within the cool-off."""
    since = timezone.now() - settings.AXES_COOLOFF_TIME
    attempts = AccessAttempt.objects.filter(ip_address=get_client_ip_address(request), attempt_time__gte=since)
    return attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0


class LoginThrottleBackend(AxesStandaloneBackend):
    def authenticate(self, request: HttpRequest | None, username: str | None = None, password: str | None = None,
                     **kwargs: Any) -> AbstractBaseUser | None:
        if request is None:
            return None
        if address_failures(request) >= settings.LOGIN_ADDRESS_FAILURE_LIMIT:
            # The flag is what axes' middleware turns into the lockout page, as for its own locks.
            request.axes_locked_out = True  # type: ignore[attr-defined]
            raise AxesBackendPermissionDenied("Too many failed sign-ins from this address")
        return super().authenticate(request, username=username, password=password, **kwargs)
