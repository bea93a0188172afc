"""The error pages (400, 403, 404, 500, a refused CSRF check) in the portal's layout, each saying what happened and
what to do, and /favicon.ico. Cross-cutting, so not in a domain package; wired in portal/urls.py and settings."""

from __future__ import annotations

import logging

from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.shortcuts import render
from django.templatetags.static import static
from django.utils import timezone
from django.views.decorators.csrf import requires_csrf_token
from django.views.decorators.http import require_safe

from portal import access

logger = logging.getLogger(__name__)

# What the 500 page falls back to when the page itself cannot be drawn (the database is down, say): plain markup
# with nothing from the request or the error in it.
BARE_500 = ("<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Something went wrong · Batch portal"
            "</title><h1>Something went wrong on our side</h1><p>It has been logged. Try again in a minute; if it "
            "keeps happening, tell the people who run the portal.</p><p><a href=\"/\">Back to the dashboard</a></p>")


@requires_csrf_token
def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "errors/400.html", status=400)


@requires_csrf_token
def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    # Only a refusal from portal.access carries words written for the person; any other (Django's admin, a
    # library) gets the general sentence of the template.
    reason = str(exception) if isinstance(exception, access.Refused) else ""
    return render(request, "errors/403.html", {"reason": reason}, status=403)


@requires_csrf_token
def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    # Our views raise Http404 with a short message in plain words ("No such job"); the resolver's own carries the
    # patterns it tried, which is none of a visitor's business.
    message = ""
    if type(exception) is Http404 and exception.args and isinstance(exception.args[0], str):
        message = exception.args[0]
    return render(request, "errors/404.html", {"message": message}, status=404)


@requires_csrf_token
def server_error(request: HttpRequest) -> HttpResponse:
    # Nothing from the error reaches the page; the time lets whoever reads the log find the traceback.
    try:
        return render(request, "errors/500.html", {"now": timezone.now()}, status=500)
    except Exception:
        logger.exception("The 500 page could not be drawn; sent the bare one instead")
        return HttpResponse(BARE_500, status=500)


@requires_csrf_token
def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    # `reason` is Django's wording for developers ("CSRF cookie not set."), which django.security.csrf has logged
    # already; the page says what to do instead.
    return render(request, "errors/csrf.html", status=403)


@login_not_required
@require_safe
def favicon(request: HttpRequest) -> HttpResponse:
    """Clients that ignore the page's <link rel=icon> still ask /favicon.ico; answer once, for good."""
    return HttpResponsePermanentRedirect(static("favicon.ico"))
