"""Django admin for the Batch mirror: read-only, since only batchsync/sync.py writes these rows."""

from django.contrib import admin

from portal.models import BatchAccount, Job, Node, Pool, Task


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


@admin.register(BatchAccount)
class BatchAccountAdmin(ReadOnlyAdmin):
    list_display = ["name", "account_name", "account_url", "key_env_var", "is_default", "last_synced_at"]
    search_fields = ["name", "account_name"]


@admin.register(Pool)
class PoolAdmin(ReadOnlyAdmin):
    list_display = ["pool_id", "account", "state", "allocation_state", "vm_size", "current_dedicated_nodes",
                    "target_dedicated_nodes", "current_low_priority_nodes", "target_low_priority_nodes",
                    "last_synced_at", "gone_at"]
    list_filter = ["state", "allocation_state", GoneFilter, "account"]
    list_select_related = ["account"]
    search_fields = ["pool_id", "display_name"]


@admin.register(Node)
class NodeAdmin(ReadOnlyAdmin):
    list_display = ["node_id", "pool", "state", "scheduling_state", "is_dedicated", "running_tasks_count",
                    "start_task_state", "start_task_exit_code", "last_synced_at", "gone_at"]
    list_filter = ["state", "start_task_result", "is_dedicated", GoneFilter]
    list_select_related = ["pool"]
    search_fields = ["node_id", "pool__pool_id"]


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = ["job_id", "account", "state", "pool_id", "task_active", "task_running", "task_succeeded",
                    "task_failed", "creation_time", "tasks_synced_at", "gone_at"]
    list_filter = ["state", GoneFilter, "account"]
    list_select_related = ["account"]
    search_fields = ["job_id", "display_name", "pool_id"]
    date_hierarchy = "creation_time"


@admin.register(Task)
class TaskAdmin(ReadOnlyAdmin):
    list_display = ["task_id", "job", "state", "exit_code", "result", "node_id", "start_time", "end_time",
                    "duration_seconds", "gone_at"]
    list_filter = ["state", "result", GoneFilter]
    list_select_related = ["job"]
    search_fields = ["task_id", "job__job_id"]
