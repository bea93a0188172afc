"""Login throttling: django-axes' backend, for sign-ins that come with a request.

Axes refuses `authenticate()` calls without a request. Only the sign-in pages face the network, and they always pass
one; a call without a request comes from code on the server (a management command, a test), where there is no
address to throttle, so this backend stands aside for it and the next backend checks the password as usual."""

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest


class LoginThrottleBackend(AxesStandaloneBackend):
    def authenticate(self, request: HttpRequest | None, username: str | None = None, password: str | None = None,
                     **kwargs: Any) -> AbstractBaseUser | None:
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
