"""Two rules every request passes through: query parameters the portal can read, and no copies of signed-in pages.

A query parameter with a NUL character reaches PostgreSQL, which refuses it (a 500 on every search and filter), and a
very long one reaches a `LIKE` scan; both are refused here once, as a 400 that says what was wrong, instead of in
every view. Invalid UTF-8 needs nothing: Django decodes the query string with replacement characters. Pages and
downloads of a signed-in person carry `Cache-Control: no-store`, so a shared computer's browser or a proxy keeps no
copy of task output, results or the audit history after they sign out."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers

# Longer than any id, name or search the portal takes (Batch ids are at most 64 characters, display names 1,024),
# short enough that no filter turns into a scan of kilobytes per row.
MAX_QUERY_VALUE_CHARS = 2048


def query_problem(request: HttpRequest) -> str:
    """What makes the request's query parameters unreadable to the portal, in plain words; empty when nothing."""
    for name, values in request.GET.lists():
        for text in (name, *values):
            if "\x00" in text:
                return f"The address has an invisible NUL character in “{name[:40]}”."
            if len(text) > MAX_QUERY_VALUE_CHARS:
                return (f"The address has a value of {len(text):,} characters in “{name[:40]}”; "
                        f"the portal reads at most {MAX_QUERY_VALUE_CHARS:,}.")
    return ""


class RequestGuardMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        problem = query_problem(request)
        if problem:
            response = render(request, "errors/400.html", {"reason": problem}, status=400)
        else:
            response = self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and not response.has_header("Cache-Control"):
            add_never_cache_headers(response)
        return response
