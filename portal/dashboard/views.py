"""The team dashboard and the health check."""

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
from portal.pages import partial_for, render_page


@require_safe
@login_required
def dashboard(request: SignedInRequest) -> HttpResponse:
    data = selectors.dashboard_data(user=request.user, scope=account_scope(user=request.user, params=request.GET))
    partial = partial_for(request, {}, default="live")
    # Each active job's leading "why is it waiting?" reason (its own partial, dashboard/_waiting.html).
    reasons = waiting.first_reasons(data.active_jobs) if settings.WAITING_REASONS else {}
    return render_page(request, "dashboard/index.html", {"d": data, "waiting_reasons": reasons}, partial)


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
