"""Prepare the embedded development setup: a demo admin whose password is made once and kept in var/, printed; a demo
pool on localbatch."""

import json
import os
import secrets
import time
import urllib.error
import urllib.request
from argparse import ArgumentParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from batchsync.accounts import blob_store, default_account, gateway_for
from batchsync.gateway import (
    AlreadyExists,
    BatchGateway,
    GatewayError,
    ImageSpec,
    JobSpec,
    PoolSpec,
    TaskSpec,
    Transient,
)

ADMIN_USERNAME = "admin"
PORTAL_URL = "http://127.0.0.1:8000"

DEMO_POOL_ID = "demo-pool"
DEMO_JOB_ID = "demo-job"


class Command(BaseCommand):
    help = (
        "Create the demo user 'admin' with a random password written to var/admin-password (made once, kept "
        "while that file exists), report which Celery broker is in use, and print where to log in. With "
        "--demo-pool, also create a small demo pool and job on localbatch once it answers. For development only."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--demo-pool",
            action="store_true",
            help=f"Create the pool {DEMO_POOL_ID} (2 nodes x 2 slots) and the job {DEMO_JOB_ID} with a few "
                 "tasks (one fails) on localbatch, once it answers; what exists already is left as it is.",
        )
        parser.add_argument(
            "--skip-admin",
            action="store_true",
            help="Leave the admin's password alone (for the bootstrap process of `make dev`, which runs "
                 "after the password was printed).",
        )
        parser.add_argument(
            "--storage",
            action="store_true",
            help="Create the storage containers on Azurite (or the configured account) once it answers, and let "
                 "the portal's origins (PORTAL_BASE_URL, and localhost) upload to it from the browser (CORS).",
        )
        parser.add_argument("--wait-seconds", type=float, default=60.0,
                            help="How long to wait for localbatch to answer (default %(default)s).")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["skip_admin"]:
            login = self.ensure_admin()
            self.report_broker()
        if options["storage"]:
            self.prepare_storage(options["wait_seconds"])
        if options["demo_pool"]:
            self.create_demo_pool(options["wait_seconds"])
        if not options["skip_admin"]:
            self.stdout.write("")
            self.stdout.write(self.style.SUCCESS(f"Portal: {PORTAL_URL}  login: {login}"))
            self.stdout.write("")

    def ensure_admin(self) -> str:
        """The admin, with the password in var/admin-password: made once, and left alone while that file exists, so
        a password changed in the admin survives a restart. Returns what to print after "login: "."""
        path = admin_password_path()
        user = get_user_model().objects.filter(username=ADMIN_USERNAME).first()
        password = path.read_text().strip() if path.exists() else ""
        if not password:
            password = secrets.token_urlsafe(12)
            write_private(path, password + "\n")
            user = None   # a new password: set it below
        if user is None:
            user, _ = get_user_model().objects.get_or_create(username=ADMIN_USERNAME)
            user.is_active = user.is_staff = user.is_superuser = True
            user.set_password(password)
            user.save()
        if not user.check_password(password):
            return (f"{ADMIN_USERNAME}, with the password you set in the admin ({path} holds the first one; delete it "
                    "and run `make dev` again for a new one)")
        return f"{ADMIN_USERNAME} / {password}  (kept in {path})"

    def report_broker(self) -> None:
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
        self.stdout.write(f"Cache: {settings.CACHE_REASON}.")

    def prepare_storage(self, wait_seconds: float) -> None:
        origins = portal_origins(settings.PORTAL_BASE_URL)
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                with blob_store() as store:
                    store.ensure_containers(cors_origins=origins)
                break
            except Transient as exc:
                # Azurite starts alongside this command in `make dev`.
                if time.monotonic() >= deadline:
                    self.stdout.write(self.style.WARNING(f"Storage: skipped, it did not answer ({exc}); uploads "
                                                         "from the browser will fail until it does."))
                    return
                time.sleep(0.5)
            except GatewayError as exc:
                self.stdout.write(self.style.WARNING(f"Storage: refused ({exc}); uploads from the browser will "
                                                     "fail."))
                return
        self.stdout.write(f"Storage: containers ready; browsers at {', '.join(origins)} may upload.")

    def create_demo_pool(self, wait_seconds: float) -> None:
        url = settings.BATCH_ACCOUNT_URL
        problem = wait_for_localbatch(url, wait_seconds)
        if problem:
            self.stdout.write(self.style.WARNING(f"Demo pool: skipped, {problem}."))
            return
        try:
            with gateway_for(default_account()) as gateway:
                created = create_demo(gateway)
        except GatewayError as exc:
            self.stdout.write(self.style.WARNING(f"Demo pool: localbatch at {url} refused it ({exc}); "
                                                 "the portal works without it."))
            return
        what = ", ".join(created) if created else "nothing new, it was all there"
        self.stdout.write(f"Demo pool: {DEMO_POOL_ID} (2 nodes x 2 slots) and {DEMO_JOB_ID} on localbatch "
                          f"at {url}: created {what}.")


def admin_password_path() -> Path:
    return settings.VAR_DIR / "admin-password"


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by its owner only (0600) from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def portal_origins(base_url: str) -> list[str]:
    """The origins a browser may upload from: the portal's own, and the same port on localhost and 127.0.0.1 (people
    type either)."""
    parts = urlsplit(base_url)
    origins = {f"{parts.scheme}://{parts.netloc}"}
    if parts.hostname in ("127.0.0.1", "localhost"):
        port = f":{parts.port}" if parts.port else ""
        origins |= {f"{parts.scheme}://127.0.0.1{port}", f"{parts.scheme}://localhost{port}"}
    return sorted(origins)


def wait_for_localbatch(url: str, wait_seconds: float) -> str | None:
    """None once localbatch's health check answers at `url`; otherwise why not.

    Only localbatch answers /_localbatch/health: a real Batch account never gets a demo pool (it costs money)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/_localbatch/health", timeout=2) as response:
                if json.loads(response.read()).get("status") == "ok":
                    return None
        except urllib.error.HTTPError:
            return f"{url} is not a localbatch (the demo pool is only ever created on localbatch)"
        except (OSError, ValueError):
            pass   # not listening yet, or still starting
        if time.monotonic() >= deadline:
            return f"no localbatch answered at {url} within {wait_seconds:g} s"
        time.sleep(0.25)


def create_demo(gateway: BatchGateway) -> list[str]:
    """The demo pool, job and tasks; what exists already counts as done. Returns what was created."""
    created = []
    try:
        gateway.create_pool(PoolSpec(
            id=DEMO_POOL_ID, display_name="Demo pool", vm_size="standard_d2s_v3",
            image=ImageSpec(publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts",
                            node_agent_sku_id="batch.node.ubuntu 22.04"),
            target_dedicated_nodes=2, task_slots_per_node=2,
            start_task_command_line="/bin/sh -c 'echo demo node $AZ_BATCH_NODE_ID is ready'"))
        created.append("the pool")
    except AlreadyExists:
        pass
    try:
        gateway.create_job(JobSpec(id=DEMO_JOB_ID, pool_id=DEMO_POOL_ID, display_name="Demo job"))
        created.append("the job")
    except AlreadyExists:
        pass
    tasks = [TaskSpec(id=f"frame-{n}", display_name=f"Render frame {n}",
                      command_line=f"/bin/sh -c 'echo rendering frame {n}; sleep {n}; echo frame {n} done'")
             for n in range(1, 6)]
    tasks.append(TaskSpec(id="frame-6", display_name="Render frame 6 (fails)",
                          command_line="/bin/sh -c 'echo rendering frame 6; echo out of memory >&2; exit 3'"))
    existing = {task.id for task in gateway.list_tasks(DEMO_JOB_ID)}
    missing = [task for task in tasks if task.id not in existing]
    if missing:
        # add_tasks counts a task that exists already as added, so a half-finished earlier run is completed.
        gateway.add_tasks(DEMO_JOB_ID, missing)
        created.append(f"{len(missing)} tasks")
    # Once its tasks are in, the job ends by itself when they have all completed, as a submission's job does;
    # otherwise it stays "active" at 100% for ever. Set after the tasks (a job with none would end at once), and
    # on every run, so a demo job made by an earlier version ends too.
    gateway.set_terminate_on_complete(DEMO_JOB_ID)
    return created
