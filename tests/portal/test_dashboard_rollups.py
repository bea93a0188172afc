"""The dashboard's chart counted once per interval for every viewer (portal/dashboard/rollups.py): a page reads the
stored counts while they are fresh, a refresh recounts only the recent hours, a full recount catches a task synced
late into an older hour, and without a recent refresh a page counts for itself."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from batchsync.tasks import refresh_dashboard_rollups_task
from portal.dashboard import rollups
from portal.dashboard.selectors import tasks_finished_per_hour
from portal.models import TaskResult, TaskState
from tests.factories import TaskFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def stored_counts(local_cache, settings):
    """This process's own cache (tests/logfiles.py), and stored counts trusted for a minute."""
    settings.DASHBOARD_ROLLUP_STALE_SECONDS = 60
    return local_cache


def finished(end_time, result=TaskResult.SUCCESS):
    return TaskFactory(state=TaskState.COMPLETED, result=result, end_time=end_time,
                       exit_code=0 if result == TaskResult.SUCCESS else 1)


def totals(now):
    chart = tasks_finished_per_hour(now=now)
    return chart.succeeded, chart.failed


def test_a_page_reads_the_stored_counts_while_they_are_fresh(django_assert_max_num_queries):
    now = timezone.now()
    finished(now - timedelta(minutes=5))
    finished(now - timedelta(hours=3), TaskResult.FAILURE)
    refresh_dashboard_rollups_task()                       # as beat runs it
    finished(now - timedelta(minutes=1))                   # after the refresh: not in the stored counts yet

    with django_assert_max_num_queries(0):
        assert totals(now) == (1, 1)
    rollups.refresh(now=now)
    assert totals(now) == (2, 1)


def test_a_refresh_recounts_the_recent_hours_and_keeps_the_older_ones(django_assert_num_queries):
    now = timezone.now().replace(minute=30)
    finished(now - timedelta(hours=5))
    rollups.refresh(now=now)
    finished(now - timedelta(hours=5, minutes=1))          # synced late into an older hour
    finished(now - timedelta(minutes=10))                  # the current hour

    with django_assert_num_queries(2):                     # two GROUP BYs, over the recent hours only
        rollups.refresh(now=now + timedelta(seconds=30))
    assert totals(now + timedelta(seconds=30)) == (2, 0)   # the late one waits for the full recount
    rollups.refresh(now=now + timedelta(seconds=rollups.FULL_RECOUNT_SECONDS + 1))
    assert totals(now + timedelta(seconds=rollups.FULL_RECOUNT_SECONDS + 1)) == (3, 0)


def test_when_the_hour_turns_the_stored_counts_move_with_the_window():
    now = timezone.now().replace(minute=50)
    finished(now - timedelta(hours=23, minutes=40))        # in the window now, out of it in an hour
    finished(now - timedelta(minutes=5))
    rollups.refresh(now=now)
    assert totals(now) == (2, 0)
    later = now + timedelta(minutes=20)                    # the next hour
    finished(later - timedelta(minutes=1))
    rollups.refresh(now=later)
    assert totals(later) == (2, 0)                         # one hour out, one in


def test_without_a_recent_refresh_the_page_counts_for_itself(settings):
    now = timezone.now()
    rollups.refresh(now=now - timedelta(minutes=10))       # beat stopped ten minutes ago
    finished(now - timedelta(minutes=2))
    assert totals(now) == (1, 0)


def test_the_dashboard_page_shows_the_stored_counts(signed_in):
    now = timezone.now()
    finished(now - timedelta(minutes=3))
    rollups.refresh(now=now)
    finished(now - timedelta(minutes=2))
    page = signed_in.get(reverse("dashboard")).content.decode()
    assert "1 succeeded and 0 failed in all" in page   # the stored count, not the two tasks in the table


def test_the_rest_of_the_dashboard_is_read_once_for_everyone_who_sees_the_same_accounts(
        settings, signed_in, viewer, client, django_assert_max_num_queries):
    settings.DASHBOARD_SHARED_SECONDS = 60
    now = timezone.now()
    finished(now - timedelta(minutes=3), TaskResult.FAILURE)
    first = signed_in.get(reverse("dashboard")).content.decode()
    client.force_login(viewer)
    # Another person over the same accounts: the dashboard's own reads come from the shared copy; what is left
    # is the request's (session, user, role, the accounts they may read).
    with django_assert_max_num_queries(6):
        second = client.get(reverse("dashboard"), headers={"HX-Request": "true", "HX-Target": "dashboard"})
    assert second.status_code == 200
    assert first.count('href="/tasks/') == second.content.decode().count('href="/tasks/') == 1
