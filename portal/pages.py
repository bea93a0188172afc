"""What every page view shares: choosing the whole page or one partial of it for htmx requests, and the parts of
pages that every viewer sees alike, rendered once and shared for a moment.

Shared fragments. Everyone with a role reads the whole mirror (portal.access), so what a status section shows
depends on the mirror, not on who looks: fifty open dashboards should cost one rendering per refresh, not fifty.
Templates wrap such sections in `{% shared "<name>" <version> <vary on>... %}` (portal/templatetags/portal_shared.py:
Django's `{% cache %}`, with one rendering at a time), and views pass what a section reads as `lazy` values, so a
shared section costs neither its queries nor its rendering. A section's version is `row_version` of the rows the
view has read anyway, so the first request that reads a change to them renders it; a section also varies on what
else it names (the request's path, …). A copy is rendered again after PAGE_SHARED_SECONDS. While one request renders
a section again, the others are served the copy it replaces: no viewer waits for another's rendering, and what a
section shows is at most PAGE_SHARED_SECONDS and one rendering old (never more than twice PAGE_SHARED_SECONDS).
Anything that depends on the viewer (actions they may take, history they may read, their name, the CSRF token) stays
outside these sections.
"""

import functools
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

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


@dataclass(frozen=True)
class SharedCopy:
    """A shared value as kept: `fresh_until` it is served as is; after that and until `usable_until`, only while
    another request computes its successor. Wall-clock moments, the same for every process."""

    fresh_until: float
    usable_until: float
    value: Any


class FoundCopy(NamedTuple):
    """What `read_copy` found: a `current` copy (fresh and accepted), served as is; else the newest copy still
    `usable`, served only while another request computes its successor; else neither."""

    current: SharedCopy | None = None
    usable: SharedCopy | None = None


# Every shared value is also kept in this process's memory until its shared copy is no longer usable (the same moment
# for every process, as the copy carries it): a web process serves most requests for a section it has seen without
# a round trip to the cache. Bounded: emptied past LOCAL_COPIES keys.
LOCAL_COPIES = 2000
_local_copies: dict[str, SharedCopy] = {}
_now = time.time   # wall clock: the moments are compared across processes


def read_shared(key: str) -> Any:
    """The shared value under `key` while it is fresh; None when there is none or it is not fresh."""
    found = read_copy(key)
    return found.current.value if found.current is not None else None


def read_copy(key: str, accept: Callable[[Any], bool] = lambda value: True) -> FoundCopy:
    """The copy under `key`: a current one (fresh, and its value `accept`ed) from this process's memory or else from
    the shared cache; failing that the newest copy still usable (its caller computes a successor, or serves it while
    another request does)."""
    now = _now()
    local = _local_copies.get(key)
    if local is not None and local.fresh_until > now and accept(local.value):
        return FoundCopy(current=local)
    stored = cache.get(key)
    # Anything else was written by a version of the portal that kept its copies otherwise.
    shared = SharedCopy(*stored) if isinstance(stored, tuple) and len(stored) == 3 else None
    if shared is not None and shared.fresh_until > now and accept(shared.value):
        _keep_locally(key, shared)
        return FoundCopy(current=shared)
    usable = [copy for copy in (shared, local) if copy is not None and copy.usable_until > now]
    return FoundCopy(usable=max(usable, key=lambda copy: copy.fresh_until) if usable else None)


def keep_shared(key: str, value: Any, seconds: int, *, usable_seconds: int = 0) -> None:
    """Share `value` under `key` with every process: fresh for `seconds`, then usable `usable_seconds` more."""
    fresh_until = _now() + seconds
    copy = SharedCopy(fresh_until, fresh_until + usable_seconds, value)
    cache.set(key, (copy.fresh_until, copy.usable_until, copy.value), seconds + usable_seconds)
    _keep_locally(key, copy)


def _keep_locally(key: str, copy: SharedCopy) -> None:
    if len(_local_copies) >= LOCAL_COPIES:
        _local_copies.clear()
    _local_copies[key] = copy


def forget_local_copies() -> None:
    """Drop this process's copies (tests that empty the cache between them)."""
    _local_copies.clear()
