"""Admin for pools: the mirror of pools and nodes (read-only) and pool templates, the one place templates are
written (with each save recorded in the audit history)."""

from django.contrib import admin

from portal.admin_mirror import GoneFilter, ReadOnlyAdmin
from portal.audit.admin import AuditedAdminMixin
from portal.models import Node, Pool, PoolTemplate


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


@admin.register(PoolTemplate)
class PoolTemplateAdmin(AuditedAdminMixin, admin.ModelAdmin):
    audit_type = "pool_template"
    list_display = ["name", "vm_size", "node_agent_sku_id", "default_dedicated_nodes", "default_low_priority_nodes",
                    "task_slots_per_node", "node_fill_type", "updated_at"]
    search_fields = ["name", "description", "vm_size"]
    readonly_fields = ["created_at", "updated_at", "audit_history"]
    fieldsets = [
        (None, {"fields": ["name", "description", "account"]}),
        ("Machines", {"fields": ["vm_size", "image_publisher", "image_offer", "image_sku", "image_version",
                                 "node_agent_sku_id"]}),
        ("Size and scheduling", {"fields": ["default_dedicated_nodes", "default_low_priority_nodes",
                                            "task_slots_per_node", "node_fill_type"]}),
        ("Start task", {"fields": ["start_task_command_line", "start_task_resource_files",
                                   "start_task_wait_for_success"]}),
        ("History", {"fields": ["created_at", "updated_at", "audit_history"]}),
    ]
