"""The team dashboard and the health check."""

import functools

from django.conf import settings
from django.contrib.auth.decorators import login_not_required, login_required
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from portal.access import SignedInRequest
from portal.accounts.selectors import account_scope
from portal.dashboard import selectors
from portal.jobs import waiting
from portal.models import Job
from portal.pages import lazy, partial_for, render_page, row_version
from portal.submit import selectors as submit_selectors


@require_safe
@login_required
def dashboard(request: SignedInRequest) -> HttpResponse:
    scope = account_scope(user=request.user, params=request.GET)
    data = functools.cache(lambda: selectors.dashboard_data(user=request.user, scope=scope))
    partial = partial_for(request, {}, default="live")
    # The whole dashboard is one shared section (portal/pages.py), keyed on the accounts it covers: its data, each
    # active job's leading "why is it waiting?" reason (its row in active_rows) and its rendering happen once per
    # PAGE_SHARED_SECONDS for everyone who sees the same accounts.
    def active_rows() -> list[tuple[Job, waiting.Reason | None]]:
        reasons = waiting.first_reasons(data().active_jobs) if settings.WAITING_REASONS else {}
        return [(job, reasons.get(job.pk)) for job in data().active_jobs]

    context = {"d": lazy(data), "active_rows": lazy(active_rows),
               "scope_version": row_version(*scope.accounts, scope.chosen)}
    if partial is None:   # per person, outside the shared section; the live partial's polls do not read it
        context["approvals"] = submit_selectors.submissions_awaiting_approval(user=request.user)
    return render_page(request, "dashboard/index.html", context, partial)


@require_safe
@never_cache
@login_not_required
def healthz(request: HttpRequest) -> HttpResponse:
    # The web process is only useful with its database, so health includes one round trip.
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return HttpResponse("database unavailable\n", status=503, content_type="text/plain")
    return HttpResponse("ok\n", content_type="text/plain")
