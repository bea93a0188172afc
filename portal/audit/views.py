"""The audit history: the filtered list of what people did, and its CSV export.

Both need portal.view_auditevent (Operators and Admins); anyone else gets a 404, as for an object they may not
see."""

import csv
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_safe

from portal import access
from portal.access import SignedInRequest
from portal.audit import selectors
from portal.audit.services import KNOWN_ACTIONS, OBJECT_TYPES, audit_export_record
from portal.models import AuditEvent
from portal.pages import partial_for, render_page

CSV_COLUMNS = ["id", "when (UTC)", "who", "who id", "from", "action", "object type", "object id", "object",
               "team id", "reason", "changes", "details", "hash", "previous hash"]


def _check_access(user: User) -> None:
    if not access.can_view_audit(user):
        raise Http404("No such page")


@require_safe
@login_required
def audit_list(request: SignedInRequest) -> HttpResponse:
    _check_access(request.user)
    filters = selectors.audit_filters_from(request.GET)
    page = selectors.audit_list(filters=filters, after=request.GET.get("after"), before=request.GET.get("before"))
    selectors.audit_rows(page.items, user=request.user)
    export_url = reverse("audit_export") + (f"?{urlencode(filters.as_params())}" if filters.active else "")
    context = {"page": page, "filters": filters, "actions": KNOWN_ACTIONS, "object_types": OBJECT_TYPES,
               "export_url": export_url}
    return render_page(request, "audit/list.html", context, partial_for(request, {}, default="events"))


class _Echo:
    """csv.writer writes into this and gets the line back, so each row is yielded as it is made."""

    def write(self, value: str) -> str:
        return value


def csv_cell(value: object) -> str:
    """A cell a spreadsheet shows as text: one starting with = + - @ (or a tab or carriage return, which some
    spreadsheets skip before reading a formula) would run as a formula, so it gets a leading quote."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_line(writer: Any, event: AuditEvent) -> str:  # writer: a csv writer (no public type)
    changes = "; ".join(f"{field}: {before} → {after}" for field, before, after in
                        selectors.audit_change_lines(event))
    details = selectors.audit_value_text(event.details) if event.details else ""
    return writer.writerow([csv_cell(value) for value in (
        event.id, event.at.isoformat(timespec="seconds"), event.actor_name, event.actor_id, event.ip_address,
        event.action, event.object_type, event.object_id, event.object_label, event.team_id, event.reason,
        changes, details, event.hash, event.prev_hash)])


@require_safe
@login_required
def audit_export(request: SignedInRequest) -> StreamingHttpResponse:
    """The filtered events as CSV, newest first, streamed from a database cursor in chunks, so memory stays the
    same for ten rows or ten million. The export is itself recorded: audit data leaving the portal is an action."""
    _check_access(request.user)
    filters = selectors.audit_filters_from(request.GET)
    audit_export_record(user=request.user, filters=filters.as_params())
    events = selectors.audit_events(filters).order_by("-id").iterator(chunk_size=2000)
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow(CSV_COLUMNS)
        for event in events:
            yield _csv_line(writer, event)

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.csv"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
