"""Admin for Batch accounts: read-only, like the rest of the mirror (accounts are set up by dev_bootstrap or the
environment)."""

from django.contrib import admin

from portal.admin_mirror import ReadOnlyAdmin
from portal.models import BatchAccount


@admin.register(BatchAccount)
class BatchAccountAdmin(ReadOnlyAdmin):
    list_display = ["name", "account_name", "account_url", "key_env_var", "is_default", "last_synced_at"]
    search_fields = ["name", "account_name"]
