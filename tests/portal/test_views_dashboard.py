"""The team dashboard: pools with nodes by state, active jobs, recent failures, tasks finished per hour."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from portal.dashboard import selectors
from portal.models import TERMINATED_FAILURE_CODE, Job, JobState, NodeState, TaskState
from tests.factories import BatchAccountFactory, JobFactory, NodeFactory, PoolFactory, TaskFactory, UserFactory
from tests.portal.pages import text

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "dashboard"}
POLL = 'hx-trigger="every 5s'


def test_anonymous_is_sent_to_login(client):
    response = client.get(reverse("dashboard"))

    assert response.status_code == 302
    assert response.url == f"{reverse('login')}?next=/"


def test_an_inactive_user_is_treated_as_signed_out(client):
    client.force_login(UserFactory(is_active=False))

    assert client.get(reverse("dashboard")).status_code == 302


def test_dashboard_shows_pools_with_nodes_by_state(signed_in):
    pool = PoolFactory(pool_id="render-pool", vm_size="standard_f4s_v2")
    NodeFactory.create_batch(3, pool=pool, state=NodeState.RUNNING)
    NodeFactory(pool=pool, state=NodeState.IDLE)
    NodeFactory(pool=pool, state=NodeState.START_TASK_FAILED)
    NodeFactory(pool=pool, state=NodeState.IDLE, gone_at=timezone.now())  # left the pool: not counted
    PoolFactory(pool_id="deleted-pool", gone_at=timezone.now())

    page = text(signed_in.get(reverse("dashboard")))

    assert "render-pool" in page and "standard_f4s_v2" in page
    assert 'aria-label="3 running, 1 idle, 1 start task failed"' in page
    assert "deleted-pool" not in page  # history lives on the pools list, not the team's live view


def test_dashboard_shows_active_jobs_with_progress_and_not_finished_ones(signed_in):
    JobFactory(job_id="active-job", task_active=6, task_running=2, task_completed=2, task_succeeded=1, task_failed=1)
    JobFactory(job_id="finished-job", state=JobState.COMPLETED)
    JobFactory(job_id="deleted-job", gone_at=timezone.now())

    page = text(signed_in.get(reverse("dashboard")))

    assert "active-job" in page
    assert "1 succeeded, 1 failed, 2 running, 6 waiting, of 10 tasks" in page
    assert "finished-job" not in page and "deleted-job" not in page


def test_dashboard_lists_recent_failures_newest_first(signed_in):
    job = JobFactory(job_id="flaky")
    now = timezone.now()
    TaskFactory(job=job, task_id="older-failure", failed=True, end_time=now - timedelta(hours=2))
    TaskFactory(job=job, task_id="newer-failure", failed=True, exit_code=137, end_time=now - timedelta(minutes=1),
                failure_message="Killed: out of memory")
    TaskFactory(job=job, task_id="a-success")

    page = text(signed_in.get(reverse("dashboard")))

    assert page.index("newer-failure") < page.index("older-failure")
    assert "Killed: out of memory" in page
    assert "a-success" not in page


def test_tasks_finished_per_hour_counts_the_last_24_hours_split_by_result():
    job = JobFactory()
    now = timezone.now().replace(minute=30)
    for minutes_ago in (5, 10, 15):
        TaskFactory(job=job, end_time=now - timedelta(minutes=minutes_ago))
    TaskFactory(job=job, failed=True, end_time=now - timedelta(minutes=20))
    TaskFactory(job=job, end_time=now - timedelta(hours=3))
    TaskFactory(job=job, end_time=now - timedelta(hours=30))  # outside the window
    TaskFactory(job=job, state=TaskState.RUNNING)  # not finished

    throughput = selectors.tasks_finished_per_hour(now=now)

    assert len(throughput.bars) == 24
    assert (throughput.bars[-1].succeeded, throughput.bars[-1].failed) == (3, 1)
    assert (throughput.bars[-4].succeeded, throughput.bars[-4].failed) == (1, 0)
    assert throughput.total == 5 and throughput.failed == 1 and throughput.peak == 4
    assert throughput.scale == 4
    assert throughput.bars[-1].height_pct == 100.0 and throughput.bars[-1].failed_pct == 25.0
    assert throughput.bars[-4].height_pct == 25.0


@pytest.mark.parametrize("peak, top", [(1, 1), (4, 4), (7, 8), (9, 10), (11, 15), (260, 300), (3001, 4000)])
def test_the_chart_scale_is_a_round_number_just_above_the_peak(peak, top):
    assert selectors.nice_ceiling(peak) == top


def test_dashboard_chart_and_tiles_show_what_finished(signed_in):
    job = JobFactory(task_running=4, task_active=7)
    # Within this hour, so they count in its bar even in the first minutes of an hour.
    now = timezone.now()
    ended = max(now - timedelta(minutes=1), timezone.localtime(now).replace(minute=0, second=0, microsecond=0))
    TaskFactory.create_batch(3, job=job, end_time=ended)
    TaskFactory(job=job, failed=True, end_time=ended)

    page = text(signed_in.get(reverse("dashboard")))

    assert "Tasks finished per hour" in page
    assert "3 succeeded and 1 failed in all" in page
    assert '<span class="tile-value t-run">4</span>' in page
    assert "7 waiting" in page
    # Each hour a bar with its numbers on hover, the failed part on top; every fourth hour labelled.
    html = signed_in.get(reverse("dashboard")).content.decode()
    bars = re.findall(r'<li title="([^"–]+)–(\d\d:\d\d): ([\d,]+) succeeded, ([\d,]+) failed">(.*?)</li>', html)
    assert len(bars) == 24
    now_hour = timezone.localtime().strftime("%H:00")
    assert bars[-1][0] == now_hour and bars[-1][2:4] == ("3", "1") and "bar-fail" in bars[-1][4]
    assert "bar-fail" not in bars[0][4]
    assert len([bar for bar in bars if re.search(r'<span class="x">\d\d:\d\d</span>', bar[4])]) == 6


def test_dashboard_empty_says_so(signed_in):
    page = text(signed_in.get(reverse("dashboard")))

    assert "No active jobs." in page
    assert "No pools yet." in page
    assert "No task has finished in the last 24 hours." in page
    assert "Not synced from Batch yet" in page


def test_dashboard_says_when_it_was_synced_and_when_that_is_stale(signed_in):
    account = BatchAccountFactory(last_synced_at=timezone.now() - timedelta(seconds=12))

    assert "12 s ago" in text(signed_in.get(reverse("dashboard")))

    account.last_synced_at = timezone.now() - timedelta(minutes=10)
    account.save()
    assert "may be out of date" in text(signed_in.get(reverse("dashboard")))


def test_dashboard_says_how_fresh_each_accounts_mirror_is(signed_in):
    BatchAccountFactory(name="west-europe", last_synced_at=timezone.now() - timedelta(seconds=4))
    BatchAccountFactory(name="east-us", last_synced_at=timezone.now() - timedelta(minutes=10))
    BatchAccountFactory(name="new-account", last_synced_at=None)

    page = " ".join(re.sub(r"<[^>]+>", " ", text(signed_in.get(reverse("dashboard")))).split())

    assert "west-europe 4 s ago" in page
    assert "east-us 10" in page and "may be out of date" in page
    assert "new-account not synced from Batch yet" in page


def test_dashboard_polls_and_htmx_gets_only_the_live_part(signed_in):
    JobFactory(job_id="active-job")

    full = text(signed_in.get(reverse("dashboard")))
    partial = text(signed_in.get(reverse("dashboard"), **HTMX))

    assert POLL in full and "<html" in full
    assert partial.lstrip().startswith('<div id="dashboard"')
    assert POLL in partial and "active-job" in partial
    assert "<html" not in partial and "site-header" not in partial


def test_dashboard_escapes_text_from_batch(signed_in):
    job = JobFactory(job_id="<script>job</script>", display_name="<script>alert(1)</script>")
    TaskFactory(job=job, task_id="<script>t</script>", failed=True, failure_message="<script>msg</script>")
    PoolFactory(pool_id="<script>pool</script>")

    page = text(signed_in.get(reverse("dashboard")))

    assert "<script>" not in page
    assert "&lt;script&gt;msg&lt;/script&gt;" in page


def test_dashboard_queries_do_not_grow_with_jobs_pools_or_tasks(signed_in, django_assert_max_num_queries):
    def grow(n):
        for _ in range(n):
            pool = PoolFactory()
            NodeFactory.create_batch(2, pool=pool)
            job = JobFactory(pool_id=pool.pool_id, task_active=3)
            TaskFactory(job=job, failed=True)
            TaskFactory(job=job)

    grow(2)
    # 14: the page's own queries and the role check (the user's and their groups' permissions, once a request); 2
    # more for "why is it waiting?" (the shown jobs' pools with their nodes counted, and those pools' busy jobs); 3
    # more for the active jobs' finish estimates (portal.jobs.estimates: first end times, recent endings, pools).
    with django_assert_max_num_queries(19) as small:
        few = signed_in.get(reverse("dashboard"))
    grow(15)
    with django_assert_max_num_queries(len(small)):
        many = signed_in.get(reverse("dashboard"))
    # An error page is cheap too: the budget counts only if the page itself was served.
    assert (few.status_code, many.status_code) == (200, 200)


def test_the_jobs_tasks_killed_by_a_terminate_are_counted_in_one_query(django_assert_num_queries):
    account = BatchAccountFactory()
    jobs = [JobFactory(account=account, job_id=f"failing-{n}", task_failed=3, task_completed=3) for n in range(4)]
    for job, killed in zip(jobs, (0, 1, 2, 3), strict=True):
        for n in range(3):
            TaskFactory(job=job, task_id=f"t{n}", state=TaskState.COMPLETED, result="failure",
                        failure_code=TERMINATED_FAILURE_CODE if n < killed else "FailureExitCode")
    clean = JobFactory(account=account, job_id="clean")
    fresh = list(Job.objects.filter(account=account).order_by("job_id"))

    with django_assert_num_queries(1):
        Job.read_task_terminated(fresh)
        assert [job.task_terminated for job in fresh] == [0, 0, 1, 2, 3]

    assert [job.task_terminated for job in Job.objects.filter(account=account).order_by("job_id")] == \
        [0, 0, 1, 2, 3], "as each job reads it alone"
    assert clean.task_terminated == 0
