"""What every page view shares: choosing the whole page or one partial of it for htmx requests."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers


def partial_for(request: HttpRequest, partials: dict[str, str], default: str) -> str | None:
    """The partial an htmx request asked for, picked by the id of the element it swaps
    (HX-Target), or None when the whole page is wanted (a plain visit, or htmx restoring
    history, which needs the page with its layout)."""
    htmx = getattr(request, "htmx", None)
    if not htmx or htmx.boosted or htmx.history_restore_request:
        return None
    return partials.get(htmx.target or "", default)


def render_page(request: HttpRequest, template: str, context: dict, partial: str | None) -> HttpResponse:
    response = render(request, f"{template}#{partial}" if partial else template, context)
    # One URL answers with a page or a fragment: caches must key on the headers that decide.
    patch_vary_headers(response, ["HX-Request", "HX-Target"])
    return response
