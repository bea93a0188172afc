"""Django app configuration for the portal."""

from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Batch portal"

    def ready(self):
        # Pool templates register their admin from their own module, so portal/admin.py (the mirror's admin)
        # and this feature change independently.
        from portal import admin_pool_templates  # noqa: F401
        from portal.submit import admin as submit_admin  # noqa: F401
        from portal.audit import connect_receivers

        # Sign-in and membership changes happen inside Django; the audit history hears of them by signal.
        connect_receivers()
