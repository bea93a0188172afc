"""dev_bootstrap gives the demo admin a fresh password and prints where to log in."""

import re
from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

pytestmark = pytest.mark.django_db

LOGIN_LINE = re.compile(r"^Portal: http://127\.0\.0\.1:8000  login: admin / (\S+)$", re.MULTILINE)


def run_bootstrap(*args) -> str:
    out = StringIO()
    call_command("dev_bootstrap", *args, stdout=out)
    return out.getvalue()


def test_creates_admin_and_prints_a_working_password():
    password = LOGIN_LINE.search(run_bootstrap()).group(1)

    user = authenticate(username="admin", password=password)
    assert user is not None and user.is_superuser and user.is_staff


def test_running_again_replaces_the_password():
    first = LOGIN_LINE.search(run_bootstrap()).group(1)
    second = LOGIN_LINE.search(run_bootstrap()).group(1)

    assert first != second
    assert authenticate(username="admin", password=first) is None
    assert authenticate(username="admin", password=second) is not None


def test_demo_pool_step_is_skipped_with_a_notice():
    assert "Demo pool: skipped" in run_bootstrap("--demo-pool")
