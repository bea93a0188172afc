"""A signed-in account without a role sees a page that says so, not the portal: reads need a role (portal.access).

Django's LoginRequiredMiddleware keeps anonymous people out of every view not marked `login_not_required`; this
does the same for accounts that can sign in but were given no role (a new single sign-on user, say), so a page
that forgets a check still shows nothing to them. The admin keeps its own staff check."""

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from portal import access


class RoleRequiredMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func: Callable[..., HttpResponse], view_args: tuple,
                     view_kwargs: dict[str, Any]) -> HttpResponse | None:
        if not getattr(view_func, "login_required", True):
            return None  # login, logout, health, single sign-on callbacks
        match = getattr(request, "resolver_match", None)
        if match is not None and "admin" in match.namespaces:
            return None
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or access.can_read(user):
            return None
        return render(request, "accounts/no_role.html", status=403)
