"""Admin for the mirror of jobs and tasks: read-only, since only batchsync/sync/ writes them."""

from django.contrib import admin

from portal.admin_mirror import GoneFilter, ReadOnlyAdmin
from portal.models import Job, Task


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
