"""What the admin pages of the Batch mirror share: read-only, since only batchsync/sync/ writes those rows, and a
filter for rows Batch has deleted."""

from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest


class GoneFilter(admin.SimpleListFilter):
    title = "in Batch"
    parameter_name = "gone"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("no", "still there"), ("yes", "deleted in Batch")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "no":
            return queryset.filter(gone_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(gone_at__isnull=False)
        return queryset


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable, never added, changed or deleted here: the next sync would overwrite any edit."""

    # Big tables: no second COUNT(*) of the whole table for "N total".
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
