"""What the Django admin pages of templates share with the audit history: their saves and deletes are recorded
("job_template.change", "pool_template.delete", …) with the fields that changed, and their change pages show the
latest records with a link to the rest."""

from typing import Any

from django.contrib import admin
from django.db import transaction
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from portal.audit.selectors import audit_change_lines, audit_for_object, audit_list_url
from portal.audit.services import describe, field_changes, record_event

HISTORY_IN_ADMIN = 5


class AuditedAdminMixin:
    """For a ModelAdmin: `audit_type` names the object type ("job_template"). The admin's add, change and delete
    views run in one transaction, so a record and the change it describes commit together."""

    audit_type = ""

    def save_model(self, request: HttpRequest, obj: Model, form: Any, change: bool) -> None:
        before = type(obj)._default_manager.filter(pk=obj.pk).first() if change else None
        super().save_model(request, obj, form, change)  # type: ignore[misc]  # mixed into a ModelAdmin
        changes = field_changes(before, obj)
        if change and not changes:
            return
        record_event(actor=request.user, action=f"{self.audit_type}.{'change' if change else 'create'}",
                     obj=obj, object_type=self.audit_type, changes=changes)

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        described = describe(obj)
        super().delete_model(request, obj)  # type: ignore[misc]  # mixed into a ModelAdmin
        self._record_delete(request, described)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        # The changelist's bulk delete is not wrapped in a transaction by the admin; the records must not
        # outlive a delete that failed halfway.
        with transaction.atomic():
            described = [describe(obj) for obj in queryset]
            super().delete_queryset(request, queryset)  # type: ignore[misc]  # mixed into a ModelAdmin
            for one in described:
                self._record_delete(request, one)

    def _record_delete(self, request: HttpRequest, described: tuple[str, str, str, int | None]) -> None:
        _, object_id, label, team_id = described
        record_event(actor=request.user, action=f"{self.audit_type}.delete", object_type=self.audit_type,
                     object_id=object_id, object_label=label, team_id=team_id)

    @admin.display(description="history")
    def audit_history(self, obj: Model | None) -> SafeString | str:
        if obj is None or obj.pk is None:
            return "–"
        events = audit_for_object(self.audit_type, obj.pk, limit=HISTORY_IN_ADMIN)
        lines = format_html_join(
            "", "<li>{} · {} · <span style='font-family: monospace'>{}</span>{}</li>",
            ((f"{event.at:%Y-%m-%d %H:%M}", event.actor_name or "system", event.action,
              "".join(f" · {field}: {before} → {after}" for field, before, after in
                      audit_change_lines(event))[:300])
             for event in events))
        shown = format_html("<ul style='margin: 0; padding-left: 1rem'>{}</ul>", lines) if events else "Nothing yet."
        url = audit_list_url(self.audit_type, obj.pk)
        return format_html("{}<p><a href='{}'>Every record of this template in the audit history</a> "
                           "(Operators and Admins)</p>", shown, url)
