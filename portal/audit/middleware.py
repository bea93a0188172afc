"""Where a request came from: the middleware puts the request and its address aside for the audit records written
while it is served, far from the view."""

import contextvars
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse


@dataclass(frozen=True)
class RequestContext:
    ip: str | None
    request: object


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("portal_audit_request",
                                                                                default=None)


def client_ip(request: HttpRequest) -> str | None:
    """The address the request came from. X-Forwarded-For is written by whoever sent the request, so it is
    believed only as far as TRUSTED_PROXY_COUNT proxies of ours appended to it: with one proxy, the last entry
    is the address that proxy saw; anything before it could be made up by the client."""
    trusted = settings.TRUSTED_PROXY_COUNT
    candidate = request.META.get("REMOTE_ADDR")
    if trusted > 0:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
        if len(hops) >= trusted:
            candidate = hops[-trusted]
    return normalised_ip(candidate)


def normalised_ip(value: object) -> str | None:
    """One spelling per address (the database would normalise it otherwise, and the hash must match what is
    read back); None for anything that is not an address."""
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        return None


class AuditRequestMiddleware:
    """Puts the request (and its address) aside for `record_event` and the signal receivers below, which are
    called far from the view. Goes after AuthenticationMiddleware."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _current.set(RequestContext(ip=client_ip(request), request=request))
        try:
            return self.get_response(request)
        finally:
            _current.reset(token)


def current_ip() -> str | None:
    context = _current.get()
    return context.ip if context else None


def current_user() -> User | None:
    """The signed-in person of the current request, or None (a worker, a shell, an anonymous visitor)."""
    context = _current.get()
    user = getattr(context.request, "user", None) if context else None
    return user if user is not None and user.is_authenticated else None
