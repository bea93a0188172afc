"""Prepare the embedded development setup: a demo admin with a fresh password, printed."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

ADMIN_USERNAME = "admin"
PORTAL_URL = "http://127.0.0.1:8000"


class Command(BaseCommand):
    help = (
        "Create the demo user 'admin' (or give it a new random password), report which "
        "Celery broker is in use, and print where to log in. For development only."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--demo-pool",
            action="store_true",
            help="Create a demo pool on localbatch. Not implemented yet: skipped with a notice.",
        )

    def handle(self, *args, **options):
        password = self.reset_admin()
        self.report_broker()
        if options["demo_pool"]:
            self.create_demo_pool()
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"Portal: {PORTAL_URL}  login: {ADMIN_USERNAME} / {password}"))
        self.stdout.write("")

    def reset_admin(self) -> str:
        # A new password on every run, so no password is ever shared between machines or stored.
        password = secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(username=ADMIN_USERNAME)
        user.is_active = user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        return password

    def report_broker(self):
        if settings.CELERY_BROKER_URL == "filesystem://":
            self.stdout.write(
                self.style.WARNING(
                    f"Celery broker: {settings.BROKER_REASON}.\n"
                    f"  Falling back to the filesystem broker under {settings.VAR_DIR / 'broker'}:"
                    " it works for the processes of this machine only.\n"
                    "  To use Redis, start it (or set REDIS_URL) and run `make dev` again."
                )
            )
        else:
            self.stdout.write(f"Celery broker: {settings.BROKER_REASON}.")

    def create_demo_pool(self):
        # TODO(demo-pool): create a small demo pool on localbatch through batchsync's gateway
        # once the sync code exists. It also needs localbatch to be up, which it is not yet
        # at this point of `make dev` (honcho starts it afterwards).
        self.stdout.write(self.style.WARNING("Demo pool: skipped, not implemented yet (TODO(demo-pool))."))
