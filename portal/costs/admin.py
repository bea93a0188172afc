"""Admin for the price table: Admins edit prices by hand (the Admin role holds its permissions, migration 0020),
each save recorded in the audit history; `manage.py import_prices` fills it from Azure's price list."""

from django.contrib import admin

from portal.audit.admin import AuditedAdminMixin
from portal.models import VmPrice


@admin.register(VmPrice)
class VmPriceAdmin(AuditedAdminMixin, admin.ModelAdmin):
    audit_type = "vm_price"
    list_display = ["vm_size", "region", "dedicated_per_hour", "spot_per_hour", "currency", "taken_on"]
    list_filter = ["currency", "region"]
    search_fields = ["vm_size", "region"]
    readonly_fields = ["updated_at", "audit_history"]
    fields = ["vm_size", "region", "dedicated_per_hour", "spot_per_hour", "currency", "taken_on", "updated_at",
              "audit_history"]
