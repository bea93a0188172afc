"""The jobs list and job detail: filters, substring search, keyset pages, partials, polling, escaping."""

import html
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from portal.models import JobState, Task, TaskResult, TaskState
from tests.factories import BatchAccountFactory, JobFactory, TaskFactory, UserFactory
from tests.portal.pages import text

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
POLL = 'hx-trigger="every 5s'
TASK_LINK = re.compile(r'href="/tasks/(\d+)/"')
JOB_LINK = re.compile(r'href="/jobs/(\d+)/"')
NEXT = re.compile(r'<a rel="next" href="([^"]+)"')
PREV = re.compile(r'<a rel="prev" href="([^"]+)"')


# --- Jobs list ----------------------------------------------------------------------------------

def test_anonymous_is_sent_to_login_from_the_jobs_pages(client):
    job = JobFactory()
    for url in (reverse("job_list"), reverse("job_detail", args=[job.pk])):
        response = client.get(url)
        assert response.status_code == 302
        assert response.url.startswith(reverse("login") + "?next=")


def test_an_inactive_user_is_treated_as_signed_out(client):
    job = JobFactory()
    client.force_login(UserFactory(is_active=False))

    response = client.get(reverse("job_detail", args=[job.pk]))

    assert response.status_code == 302


def test_jobs_list_shows_jobs_with_progress(signed_in):
    JobFactory(job_id="render-frames", display_name="Frames 1-100", task_active=5, task_running=3,
               task_completed=12, task_succeeded=10, task_failed=2)

    page = text(signed_in.get(reverse("job_list")))

    assert "render-frames" in page
    assert "Frames 1-100" in page
    assert "10 succeeded, 2 failed, 3 running, 5 waiting, of 20 tasks" in page
    assert "60%" in page  # 12 of 20 finished


def test_jobs_list_search_matches_the_middle_of_ids_and_names(signed_in):
    JobFactory(job_id="nightly-render-042")
    JobFactory(job_id="job-7", display_name="Monthly RENDERING report")
    JobFactory(job_id="backup-1")

    page = text(signed_in.get(reverse("job_list"), {"q": "render"}))

    assert "nightly-render-042" in page
    assert "job-7" in page
    assert "backup-1" not in page


def test_jobs_list_filters_by_state_pool_and_submitter(signed_in, user, other_submitter):
    other = other_submitter
    JobFactory(job_id="mine-active", submitted_by=user, pool_id="gpu")
    JobFactory(job_id="mine-done", submitted_by=user, pool_id="gpu", state=JobState.COMPLETED)
    JobFactory(job_id="bobs-active", submitted_by=other, pool_id="cpu")

    by_state = text(signed_in.get(reverse("job_list"), {"state": "completed"}))
    by_pool = text(signed_in.get(reverse("job_list"), {"pool": "cpu"}))
    by_submitter = text(signed_in.get(reverse("job_list"), {"submitter": user.pk}))
    not_finished = text(signed_in.get(reverse("job_list"), {"state": "live"}))

    assert "mine-done" in by_state and "mine-active" not in by_state and "bobs-active" not in by_state
    assert "bobs-active" in by_pool and "mine-active" not in by_pool
    assert "mine-active" in by_submitter and "mine-done" in by_submitter and "bobs-active" not in by_submitter
    assert "mine-active" in not_finished and "bobs-active" in not_finished and "mine-done" not in not_finished


def test_jobs_list_keeps_deleted_jobs_as_history(signed_in):
    JobFactory(job_id="old-job", gone_at=timezone.now() - timedelta(days=1))

    page = text(signed_in.get(reverse("job_list")))

    assert "old-job" in page
    assert "deleted in Batch" in page


def test_jobs_list_htmx_request_gets_only_the_list(signed_in):
    JobFactory(job_id="render-frames")

    page = text(signed_in.get(reverse("job_list"), {"q": "render"}, HTTP_HX_TARGET="jobs", **HTMX))

    assert page.lstrip().startswith('<div id="jobs"')
    assert "render-frames" in page
    assert "<html" not in page and "job-filters" not in page
    assert POLL in page


def test_jobs_list_pages_through_every_job_once_newest_first(signed_in):
    account = BatchAccountFactory()
    start = timezone.now() - timedelta(days=1)
    # Pairs of jobs created in the same second: the pages must break ties by id, not lose them.
    jobs = [JobFactory(account=account, job_id=f"j{i:03d}", creation_time=start + timedelta(seconds=i // 2))
            for i in range(120)]
    expected = [job.pk for job in sorted(jobs, key=lambda j: (j.creation_time, j.pk), reverse=True)]

    seen, url, pages = [], reverse("job_list"), 0
    while url:
        page = text(signed_in.get(url))
        seen += [int(pk) for pk in JOB_LINK.findall(page)]
        # Only the first page refreshes itself; later ones would shift as jobs arrive.
        assert (POLL in page) == (pages == 0)
        pages += 1
        found = NEXT.search(page)
        url = reverse("job_list") + html.unescape(found.group(1)) if found else None

    assert seen == expected
    assert pages == 3


# --- Job detail ---------------------------------------------------------------------------------

def test_job_detail_404s_for_a_missing_job(signed_in):
    assert signed_in.get(reverse("job_detail", args=[999999])).status_code == 404


def test_job_detail_shows_counts_from_the_job_not_from_counting_tasks(signed_in):
    # Batch's counts say 1,000 tasks; the mirror holds only two. The page must show Batch's.
    job = JobFactory(task_active=400, task_running=100, task_completed=500, task_succeeded=480, task_failed=20)
    TaskFactory.create_batch(2, job=job)

    page = text(signed_in.get(reverse("job_detail", args=[job.pk])))

    assert "480 succeeded, 20 failed, 100 running, 400 waiting, of 1,000 tasks" in page
    assert "50%" in page


def test_job_detail_polls_while_the_job_runs_and_stops_when_it_completes(signed_in):
    running = JobFactory(state=JobState.ACTIVE)
    done = JobFactory(state=JobState.COMPLETED)
    gone = JobFactory(state=JobState.ACTIVE, gone_at=timezone.now())

    assert text(signed_in.get(reverse("job_detail", args=[running.pk]))).count(POLL) == 2  # summary and tasks
    assert POLL not in text(signed_in.get(reverse("job_detail", args=[done.pk])))
    assert POLL not in text(signed_in.get(reverse("job_detail", args=[gone.pk])))


def test_only_a_job_that_can_still_change_is_called_out_of_date(signed_in):
    long_ago = timezone.now() - timedelta(hours=3)
    running = JobFactory(last_synced_at=long_ago, tasks_synced_at=long_ago)
    done = JobFactory(state=JobState.COMPLETED, last_synced_at=long_ago, tasks_synced_at=long_ago)

    running_page = text(signed_in.get(reverse("job_detail", args=[running.pk])))
    done_page = text(signed_in.get(reverse("job_detail", args=[done.pk])))

    assert running_page.count("may be out of date") == 2  # the job and its tasks
    assert "may be out of date" not in done_page
    assert "Last synced" in done_page and "3 h ago" in done_page


def test_job_detail_htmx_partials_render_only_their_part(signed_in):
    job = JobFactory(job_id="partial-job", task_active=1)
    TaskFactory(job=job, task_id="only-task")
    url = reverse("job_detail", args=[job.pk])

    summary = text(signed_in.get(url, HTTP_HX_TARGET="job-summary", **HTMX))
    tasks = text(signed_in.get(url, {"q": "only"}, HTTP_HX_TARGET="tasks", **HTMX))

    assert summary.lstrip().startswith('<section id="job-summary"')
    assert "only-task" not in summary and "<html" not in summary
    assert tasks.lstrip().startswith('<div id="tasks"')
    assert "only-task" in tasks and "job-summary" not in tasks and "task-filters" not in tasks
    # The poll repeats the request with its filters, so the table keeps showing what was asked for.
    assert f'hx-get="{url}?q=only"' in tasks


def test_job_detail_full_page_has_the_filters_and_the_table(signed_in):
    job = JobFactory()
    TaskFactory(job=job, task_id="t-1")

    page = text(signed_in.get(reverse("job_detail", args=[job.pk])))

    assert page.count("<html") == 1
    assert 'id="task-filters"' in page and 'id="tasks"' in page and 'id="job-summary"' in page


# --- Task table: keyset pagination ----------------------------------------------------------------

def make_tasks(job, n=250):
    """n tasks in every state, with tied start/end times and durations and some without any."""
    base = timezone.now() - timedelta(hours=5)
    tasks = []
    for i in range(n):
        if i % 10 == 0:
            state, start, end = TaskState.ACTIVE, None, None
        elif i % 10 == 1:
            state, start, end = TaskState.RUNNING, base + timedelta(minutes=i % 17), None
        else:
            # (i % 17) and (i % 7) repeat, so many tasks share a start time and a duration.
            start = base + timedelta(minutes=i % 17)
            state, end = TaskState.COMPLETED, start + timedelta(seconds=30 * (i % 7))
        tasks.append(TaskFactory.build(
            job=job, task_id=f"t{(i * 7919) % 1000:03d}-{i}", state=state, start_time=start, end_time=end,
            duration_seconds=(end - start).total_seconds() if end else None,
            result=(TaskResult.FAILURE if i % 13 == 0 else TaskResult.SUCCESS) if end else "",
            exit_code=(3 if i % 13 == 0 else 0) if end else None,
        ))
    return Task.objects.bulk_create(tasks)


SORT_FIELDS = {"id": None, "start": "start_time", "end": "end_time", "duration": "duration_seconds"}


def expected_order(tasks, sort: str) -> list[int]:
    """The order the page promises: by value (rows without one last), then task id, all in one direction."""
    key, descending = sort.lstrip("-"), sort.startswith("-")
    field = SORT_FIELDS[key]
    with_value = [t for t in tasks if field is None or getattr(t, field) is not None]
    without = [t for t in tasks if field is not None and getattr(t, field) is None]
    with_value.sort(key=lambda t: (getattr(t, field), t.task_id) if field else t.task_id, reverse=descending)
    without.sort(key=lambda t: t.task_id, reverse=descending)
    return [t.pk for t in with_value + without]


def walk(client, url: str, start: str, link: re.Pattern = NEXT) -> tuple[list[list[int]], str]:
    """Follow next (or prev) links from `start`; return the task pks of each page and the last page's URL."""
    pages, current = [], start
    while True:
        page = text(client.get(current))
        pages.append([int(pk) for pk in TASK_LINK.findall(page)])
        found = link.search(page)
        if not found:
            return pages, current
        current = url + html.unescape(found.group(1))


@pytest.mark.parametrize("sort", ["id", "-id", "start", "-start", "end", "-end", "duration", "-duration"])
def test_task_pages_list_every_task_once_in_order_under_each_sort(signed_in, sort):
    job = JobFactory()
    tasks = make_tasks(job)
    url = reverse("job_detail", args=[job.pk])

    pages, last_url = walk(signed_in, url, f"{url}?sort={sort}")

    assert [len(p) for p in pages] == [50, 50, 50, 50, 50]
    assert [pk for p in pages for pk in p] == expected_order(tasks, sort)
    # And back again from the last page: the same pages, in reverse.
    back_pages, _ = walk(signed_in, url, last_url, link=PREV)
    assert back_pages == list(reversed(pages))


# Batch's counts decide whether the page sorts from the sort's index or from the filter's (few
# matching tasks); both ways must give the same pages.
@pytest.mark.parametrize("batch_counts", [0, 100_000])
@pytest.mark.parametrize("params, matches", [
    ("failed=1&sort=-duration", lambda t: t.result == TaskResult.FAILURE),
    ("state=running&sort=start", lambda t: t.state == TaskState.RUNNING),
    ("state=completed&sort=-end", lambda t: t.state == TaskState.COMPLETED),
])
def test_task_pages_with_filters_and_sort_walk_only_the_matching_tasks(signed_in, params, matches, batch_counts):
    job = JobFactory(task_failed=batch_counts, task_running=batch_counts, task_completed=batch_counts)
    tasks = make_tasks(job)
    url = reverse("job_detail", args=[job.pk])

    pages, last_url = walk(signed_in, url, f"{url}?{params}")
    back_pages, _ = walk(signed_in, url, last_url, link=PREV)

    wanted = [t for t in tasks if matches(t)]
    assert [pk for p in pages for pk in p] == expected_order(wanted, params.rsplit("sort=", 1)[1])
    assert back_pages == list(reversed(pages))
    assert len(wanted) > 10


def test_a_bad_cursor_shows_the_first_page(signed_in):
    job = JobFactory()
    make_tasks(job, 60)
    url = reverse("job_detail", args=[job.pk])
    first = TASK_LINK.findall(text(signed_in.get(url)))

    for cursor in ("garbage", "eyJ4IjoxfQ", "WzAsIm5vdC1hLWRhdGUiLCJ0MSJd"):
        assert TASK_LINK.findall(text(signed_in.get(url, {"after": cursor, "sort": "start"}))) \
            == TASK_LINK.findall(text(signed_in.get(url, {"sort": "start"})))
    assert TASK_LINK.findall(text(signed_in.get(url, {"before": "garbage"}))) == first


# --- Task table: filters and search ---------------------------------------------------------------

def task_ids(page: str) -> set[str]:
    return set(re.findall(r'href="/tasks/\d+/">([^<]+)</a>', page))


def test_task_filters_state_failed_and_exit_code(signed_in):
    job = JobFactory()
    TaskFactory(job=job, task_id="waiting-1", state=TaskState.ACTIVE)
    TaskFactory(job=job, task_id="running-1", state=TaskState.RUNNING)
    TaskFactory(job=job, task_id="ok-1")
    TaskFactory(job=job, task_id="bad-1", failed=True, exit_code=2)
    TaskFactory(job=job, task_id="bad-2", failed=True, exit_code=137)
    url = reverse("job_detail", args=[job.pk])

    assert task_ids(text(signed_in.get(url, {"state": "active"}))) == {"waiting-1"}
    assert task_ids(text(signed_in.get(url, {"state": "running"}))) == {"running-1"}
    assert task_ids(text(signed_in.get(url, {"failed": "1"}))) == {"bad-1", "bad-2"}
    assert task_ids(text(signed_in.get(url, {"exit_code": "137"}))) == {"bad-2"}
    assert task_ids(text(signed_in.get(url, {"exit_code": "0"}))) == {"ok-1"}
    assert task_ids(text(signed_in.get(url, {"state": "completed", "failed": "1", "exit_code": "2"}))) == {"bad-1"}
    # A filter that cannot be understood is ignored rather than failing the page.
    assert len(task_ids(text(signed_in.get(url, {"exit_code": "abc", "state": "bogus"})))) == 5
    assert task_ids(text(signed_in.get(url, {"exit_code": "99999999999"}))) == {
        "waiting-1", "running-1", "ok-1", "bad-1", "bad-2"}


def test_task_search_matches_the_middle_of_ids_and_names_not_other_jobs(signed_in):
    job, other = JobFactory(), JobFactory()
    TaskFactory(job=job, task_id="frame-00421-render")
    TaskFactory(job=job, task_id="t-2", display_name="Upscale FRAME 99")
    TaskFactory(job=job, task_id="t-3", display_name="unrelated")
    TaskFactory(job=other, task_id="frame-elsewhere")
    url = reverse("job_detail", args=[job.pk])

    assert task_ids(text(signed_in.get(url, {"q": "0042"}))) == {"frame-00421-render"}
    assert task_ids(text(signed_in.get(url, {"q": "frame"}))) == {"frame-00421-render", "t-2"}
    # LIKE wildcards typed by a person are matched literally.
    assert task_ids(text(signed_in.get(url, {"q": "%"}))) == set()
    assert "No task matches these filters." in text(signed_in.get(url, {"q": "nothing-like-this"}))


# --- Escaping and query counts --------------------------------------------------------------------

def test_task_and_job_text_from_batch_is_escaped(signed_in):
    evil = "<script>alert(1)</script>"
    job = JobFactory(job_id="job<script>", display_name=evil)
    TaskFactory(job=job, task_id="<script>x</script>", display_name=evil, failed=True, failure_message=evil,
                failure_code="<b>code</b>", node_id="<img src=x onerror=alert(1)>")

    for page in (text(signed_in.get(reverse("job_detail", args=[job.pk]))),
                 text(signed_in.get(reverse("job_list")))):
        assert "<script>" not in page
        assert "<img src=x" not in page
    detail = text(signed_in.get(reverse("job_detail", args=[job.pk])))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail
    assert "&lt;script&gt;x&lt;/script&gt;" in detail
    assert "&lt;b&gt;code&lt;/b&gt;" in detail


@pytest.mark.parametrize("n_tasks", [10, 250])
@pytest.mark.parametrize("params", [{}, {"sort": "-end", "failed": "1"}, {"q": "t1", "sort": "duration"},
                                    {"state": "completed", "sort": "start"}])
def test_job_detail_makes_the_same_few_queries_for_10_or_250_tasks(signed_in, django_assert_max_num_queries,
                                                                     n_tasks, params):
    job = JobFactory()
    make_tasks(job, n_tasks)
    url = reverse("job_detail", args=[job.pk])
    # Follow one next link too: a deep page must cost what the first page costs.
    found = NEXT.search(text(signed_in.get(url, params)))
    deep = url + html.unescape(found.group(1)) if found else url

    # session + user, job, pool, up to two task segments (a nullable sort crosses into the rows
    # without a value), the History section's events, and the role check (the user's and their groups'
    # permissions, loaded once a request), the accounts (whether to name the job's); nothing grows with the number
    # of tasks.
    with django_assert_max_num_queries(10):
        first = signed_in.get(url, params)
    with django_assert_max_num_queries(10):
        deeper = signed_in.get(deep)
    with django_assert_max_num_queries(7):
        poll = signed_in.get(url, params, HTTP_HX_TARGET="tasks", **HTMX)
    # An error page is cheap too: the budget counts only if the page itself was served.
    assert [first.status_code, deeper.status_code, poll.status_code] == [200, 200, 200]
