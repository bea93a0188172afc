"""dev_bootstrap makes the demo admin's password once (kept in var/admin-password), prints where to log in, and makes
a demo pool on localbatch."""

import functools
import http.server
import re
import stat
import threading
from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from batchsync.gateway import BatchGateway
from tests.localbatch.helpers import wait_for

pytestmark = pytest.mark.django_db

LOGIN_LINE = re.compile(r"^Portal: http://127\.0\.0\.1:8000  login: admin / (\S+)  \(kept in (\S+)\)$", re.MULTILINE)


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    """A var/ of the test's own: the developer's var/admin-password is never read or written here."""
    settings.VAR_DIR = tmp_path / "var"
    return settings.VAR_DIR


def run_bootstrap(*args) -> str:
    out = StringIO()
    call_command("dev_bootstrap", *args, stdout=out)
    return out.getvalue()


def test_creates_admin_and_prints_a_working_password():
    password = LOGIN_LINE.search(run_bootstrap()).group(1)

    user = authenticate(username="admin", password=password)
    assert user is not None and user.is_superuser and user.is_staff


def test_the_password_is_written_to_var_for_the_developer_only(var_dir):
    match = LOGIN_LINE.search(run_bootstrap())
    path = var_dir / "admin-password"

    assert match.group(2) == str(path)
    assert path.read_text().strip() == match.group(1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_running_again_keeps_the_password(var_dir):
    first = LOGIN_LINE.search(run_bootstrap()).group(1)
    second = LOGIN_LINE.search(run_bootstrap()).group(1)

    assert first == second
    assert authenticate(username="admin", password=first) is not None


def test_a_password_set_in_the_admin_survives_a_restart(var_dir, django_user_model):
    run_bootstrap()
    admin = django_user_model.objects.get(username="admin")
    admin.set_password("set in the admin")
    admin.save()

    output = run_bootstrap()

    assert authenticate(username="admin", password="set in the admin") is not None
    assert "login: admin, with the password you set in the admin" in output and not LOGIN_LINE.search(output)


def test_a_fresh_database_gets_the_admin_back_with_the_kept_password(var_dir, django_user_model):
    first = LOGIN_LINE.search(run_bootstrap()).group(1)
    django_user_model.objects.filter(username="admin").delete()

    second = LOGIN_LINE.search(run_bootstrap()).group(1)

    assert second == first and authenticate(username="admin", password=first).is_superuser


def test_deleting_the_file_makes_a_new_password(var_dir):
    first = LOGIN_LINE.search(run_bootstrap()).group(1)
    (var_dir / "admin-password").unlink()

    second = LOGIN_LINE.search(run_bootstrap()).group(1)

    assert second != first
    assert authenticate(username="admin", password=first) is None
    assert authenticate(username="admin", password=second) is not None


def test_demo_pool_is_created_on_localbatch_and_a_second_run_changes_nothing(settings, localbatch):
    settings.BATCH_ACCOUNT_URL, settings.BATCH_ACCOUNT_NAME = localbatch.endpoint, localbatch.account_name
    settings.BATCH_ACCOUNT_KEY = localbatch.account_key

    first = run_bootstrap("--demo-pool")
    second = run_bootstrap("--demo-pool")

    assert "created the pool, the job, 6 tasks." in first
    assert "created nothing new, it was all there." in second
    with BatchGateway(localbatch.endpoint, localbatch.account_name, localbatch.account_key) as gateway:
        pool = gateway.get_pool("demo-pool")
        assert (pool.target_dedicated_nodes, pool.task_slots_per_node) == (2, 2)
        assert "echo" in pool.start_task_command_line
        assert gateway.get_job("demo-job").pool_id == "demo-pool"
        wait_for(lambda: gateway.get_task_counts("demo-job").completed == 6, timeout=60, message="demo tasks done")
        counts = gateway.get_task_counts("demo-job")
        assert (counts.succeeded, counts.failed) == (5, 1)
        # Its tasks done, the job ends rather than staying active at 100%.
        wait_for(lambda: gateway.get_job("demo-job").state == "completed", timeout=30, message="demo job completed")


def test_demo_pool_is_skipped_with_a_notice_when_no_localbatch_answers(settings):
    settings.BATCH_ACCOUNT_URL = "http://127.0.0.1:9"   # the discard port: nothing answers

    output = run_bootstrap("--demo-pool", "--wait-seconds", "0.5")

    assert "Demo pool: skipped, no localbatch answered at http://127.0.0.1:9 within 0.5 s." in output
    assert LOGIN_LINE.search(output), "the admin is ready all the same"


def test_demo_pool_is_never_created_on_a_service_that_is_not_localbatch(settings, tmp_path):
    # Any other HTTP service (a real Batch account among them) has no /_localbatch/health.
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        settings.BATCH_ACCOUNT_URL = f"http://127.0.0.1:{server.server_address[1]}"
        output = run_bootstrap("--demo-pool", "--skip-admin")
        server.shutdown()

    assert "is not a localbatch (the demo pool is only ever created on localbatch)" in output


def test_skip_admin_leaves_the_password_alone(settings):
    password = LOGIN_LINE.search(run_bootstrap()).group(1)
    settings.BATCH_ACCOUNT_URL = "http://127.0.0.1:9"

    output = run_bootstrap("--skip-admin", "--demo-pool", "--wait-seconds", "0")

    assert not LOGIN_LINE.search(output)
    assert authenticate(username="admin", password=password) is not None
