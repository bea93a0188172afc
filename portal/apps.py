"""Django app configuration for the portal."""

from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Batch portal"

    def ready(self) -> None:
        # Imported here, not at the top: receivers need the models, which are not loaded when this module is.
        from portal.accounts import permissions  # noqa: PLC0415
        from portal.audit.receivers import connect_receivers  # noqa: PLC0415

        # Sign-in and membership changes happen inside Django; the audit history hears of them by signal, and so
        # does the shared cache of who may do what.
        connect_receivers()
        permissions.connect_receivers()
