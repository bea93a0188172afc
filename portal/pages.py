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
import time
from collections.abc import Callable
from typing import Any, TypeVar

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
    value = read_shared(f"shared:{key}")
    if value is None:
        value = compute()
        keep_shared(f"shared:{key}", value, seconds)
    return value


# Every shared value is also kept in this process's memory until the moment its shared copy expires (the same moment
# for every process, as the copy carries it): a web process serves most requests for a section it has seen without
# a round trip to the cache, and nothing is older than PAGE_SHARED_SECONDS. Bounded: emptied past LOCAL_COPIES keys.
LOCAL_COPIES = 2000
_local_copies: dict[str, tuple[float, Any]] = {}
_now = time.time   # wall clock: the expiry is compared across processes


def read_shared(key: str) -> Any:
    """The shared value under `key`, None when there is none or it expired."""
    now = _now()
    local = _local_copies.get(key)
    if local is not None and local[0] > now:
        return local[1]
    stored = cache.get(key)
    if not isinstance(stored, tuple) or len(stored) != 2 or stored[0] <= now:
        return None   # none, expired, or written by a version of the portal that kept the value alone
    _keep_locally(key, *stored)
    return stored[1]


def keep_shared(key: str, value: Any, seconds: int) -> None:
    """Share `value` under `key` for `seconds`, with every process."""
    expires = _now() + seconds
    cache.set(key, (expires, value), seconds)
    _keep_locally(key, expires, value)


def _keep_locally(key: str, expires: float, value: Any) -> None:
    if len(_local_copies) >= LOCAL_COPIES:
        _local_copies.clear()
    _local_copies[key] = (expires, value)


def forget_local_copies() -> None:
    """Drop this process's copies (tests that empty the cache between them)."""
    _local_copies.clear()
