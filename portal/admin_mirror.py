"""What the admin pages of the Batch mirror share: read-only, since only batchsync/sync.py writes those rows, and a
filter for rows Batch has deleted."""

from django.contrib import admin


class GoneFilter(admin.SimpleListFilter):
    title = "in Batch"
    parameter_name = "gone"

    def lookups(self, request, model_admin):
        return [("no", "still there"), ("yes", "deleted in Batch")]

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(gone_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(gone_at__isnull=False)
        return queryset


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable, never added, changed or deleted here: the next sync would overwrite any edit."""

    # Big tables: no second COUNT(*) of the whole table for "N total".
    show_full_result_count = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
