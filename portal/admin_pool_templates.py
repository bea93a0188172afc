"""Admin for pool templates: the one place templates are written. Imported by PortalConfig.ready()."""

from django.contrib import admin

from portal.admin_audit import AuditedAdminMixin
from portal.models import PoolTemplate


@admin.register(PoolTemplate)
class PoolTemplateAdmin(AuditedAdminMixin, admin.ModelAdmin):
    audit_type = "pool_template"
    list_display = ["name", "vm_size", "node_agent_sku_id", "default_dedicated_nodes", "default_low_priority_nodes",
                    "task_slots_per_node", "node_fill_type", "updated_at"]
    search_fields = ["name", "description", "vm_size"]
    readonly_fields = ["created_at", "updated_at", "audit_history"]
    fieldsets = [
        (None, {"fields": ["name", "description"]}),
        ("Machines", {"fields": ["vm_size", "image_publisher", "image_offer", "image_sku", "image_version",
                                 "node_agent_sku_id"]}),
        ("Size and scheduling", {"fields": ["default_dedicated_nodes", "default_low_priority_nodes",
                                            "task_slots_per_node", "node_fill_type"]}),
        ("Start task", {"fields": ["start_task_command_line", "start_task_resource_files",
                                   "start_task_wait_for_success"]}),
        ("History", {"fields": ["created_at", "updated_at", "audit_history"]}),
    ]
