"""What every page view shares: choosing the whole page or one partial of it for htmx requests, and the parts of
pages that every viewer sees alike, rendered once and shared for a moment.

Shared fragments. Everyone with a role reads the whole mirror (portal.access), so what a status section shows
depends on the mirror, not on who looks: fifty open dashboards should cost one rendering per refresh, not fifty.
Templates wrap such sections in `{% shared "<name>" <vary on> %}` (portal/templatetags/portal_shared.py: Django's
`{% cache %}`, rendered by one request when it expires while the others wait for it), and views pass what a section
reads as `lazy` values, so a shared section costs neither its queries nor its rendering. A section varies on
`row_version` of the rows the view has read anyway (so a change to them shows at once, the viewer's own action
included) and on the request's path; the rest it shows (other rows it reads) is at most PAGE_SHARED_SECONDS older
than the mirror. Anything that depends on the viewer (actions they may take, history they may read, their name, the
CSRF token) stays outside these sections.
"""

import functools
import hashlib
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db.models import Model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers

T = TypeVar("T")


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


def lazy(compute: Callable[[], T]) -> Callable[[], T]:
    """A context value computed the first time a template reads it (templates call a callable they are given), and
    only once: inside a shared section served from the cache, never. Only for templates: Python code that reads the
    context gets the function."""
    return functools.cache(compute)


def row_version(*rows: Model | None) -> str:
    """A digest of every field of `rows` as they were read: a shared section keyed on it is never older than them."""
    digest = hashlib.blake2b(digest_size=12)
    for row in rows:
        if row is None:
            digest.update(b"-")
            continue
        digest.update(row._meta.label.encode())
        for field in row._meta.concrete_fields:
            digest.update(repr(getattr(row, field.attname)).encode())
    return digest.hexdigest()


def shared_value(key: str, compute: Callable[[], T]) -> T:
    """`compute()`, read once per PAGE_SHARED_SECONDS for every viewer: for what a page shows outside its shared
    sections but the same for everyone (a filter form's choices). `key` names everything the value depends on."""
    seconds = settings.PAGE_SHARED_SECONDS
    if seconds <= 0:
        return compute()
    value = cache.get(f"shared:{key}")
    if value is None:
        value = compute()
        cache.set(f"shared:{key}", value, seconds)
    return value
