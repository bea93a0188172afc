"""The failure triage page and "retry these N": failed tasks grouped by (failure code, exit code, error line), with
counts, jobs, first and last seen, examples and filters; the retry's dry-run count and the retry itself.

Grouping and filters are checked on rows written with factories; the end-to-end tests make tasks fail two ways on
localbatch, sync and archive them as the worker does, and check what Batch did after a retry. Personas
(tests/personas.py): the owner of the jobs (`submitter`), a Viewer, someone of another team (`other_submitter`), a
person without a role, anonymous."""

import html
import re
import uuid
from datetime import timedelta

import pytest
from azure.batch import models
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from batchsync import archive
from batchsync.accounts import blob_store, default_account
from batchsync.sync import sync_account
from portal import access
from portal.jobs import triage as selectors
from portal.models import Job, JobState, Task, TaskResult, TaskState
from tests.factories import BatchAccountFactory, JobFactory, TaskFactory
from tests.localbatch.helpers import make_job, make_pool, task, wait_for
from tests.logfiles import shell_quote
from tests.personas import client_for
from tests.portal.pages import text

pytestmark = pytest.mark.django_db

DISK_FULL = "ERROR: disk full on /mnt/scratch"


def failed(job, n: int, *, code="FailureExitCode", exit_code=1, line=DISK_FULL, ago=timedelta(hours=1), **extra):
    now = timezone.now()
    return [TaskFactory(job=job, failed=True, failure_code=code, exit_code=exit_code, error_line=line,
                        start_time=now - ago - timedelta(minutes=1), end_time=now - ago - timedelta(seconds=i),
                        **extra) for i in range(n)]


def groups_on(page: str) -> list[tuple[int, str]]:
    """(count, signature text) of each group on the page, in page order."""
    found = re.findall(r'<h2 class="triage-count"><span class="t-fail">([\d,]+)</span>'
                       r'.*?<p class="signature">(.*?)</p>', page, re.DOTALL)
    return [(int(n.replace(",", "")), " ".join(html.unescape(re.sub(r"<[^>]+>", " ", sig)).split()))
            for n, sig in found]


# --- the page, from rows ---------------------------------------------------------------------------------------


def test_failed_tasks_are_grouped_by_signature_largest_first_with_jobs_times_and_three_examples(viewer):
    render = JobFactory(job_id="render-a", pool_id="gpu")
    encode = JobFactory(job_id="encode-b", pool_id="cpu")
    disk = failed(render, 5) + failed(encode, 2, ago=timedelta(hours=3))
    slow = failed(encode, 3, code="MaxWallClockTimeExceeded", exit_code=None, line="")
    # The same codes with another error line are another group; succeeded tasks are in none.
    failed(render, 1, line="Traceback (most recent call last):")
    TaskFactory.create_batch(4, job=render)

    page = text(client_for(viewer).get(reverse("failure_triage")))

    assert groups_on(page) == [
        (7, f"failure code: FailureExitCode exit code 1 {DISK_FULL}"),
        (3, "failure code: MaxWallClockTimeExceeded no exit code no error line found in stderr"),
        (1, "failure code: FailureExitCode exit code 1 Traceback (most recent call last):"),
    ]
    assert "11 failed tasks in 3 groups" in page
    first = page[page.index('id="group-1"'):page.index('id="group-2"')]
    # The jobs affected, most failures first, and three examples, newest first, linked to their task pages.
    assert re.search(r"render-a</a> \(5.*encode-b</a> \(2", first, re.DOTALL)
    examples = re.findall(r'class="mono example" href="/tasks/(\d+)/"', first)
    assert examples == [str(t.pk) for t in disk[:3]]
    # First and last seen are the group's oldest and newest end times.
    seen = re.findall(r'<dt>(First|Last) seen</dt><dd><time datetime="([^"]+)"', first)
    assert seen == [("First", timezone.localtime(disk[-1].end_time).isoformat()),
                    ("Last", timezone.localtime(disk[0].end_time).isoformat())]
    second = page[page.index('id="group-2"'):page.index('id="group-3"')]
    assert {int(pk) for pk in re.findall(r'href="/tasks/(\d+)/"', second)} <= {t.pk for t in slow}


@pytest.mark.parametrize("pair_rows", [2_000, 1], ids=["one GROUP BY", "signatures ranked by the database"])
def test_past_the_shown_groups_the_page_says_smaller_ones_exist_and_counts_every_failure(viewer, monkeypatch,
                                                                                         pair_rows):
    monkeypatch.setattr(selectors, "PAIR_ROWS", pair_rows)
    job, other = JobFactory(), JobFactory()
    failed(job, 4)
    failed(other, 2)
    failed(job, 3, code="CommandProgramNotFound", exit_code=None, line="")
    failed(job, 1, line="Killed")

    triage = selectors.failure_triage(user=viewer, filters=selectors.TriageFilters(), limit=2)

    assert [g.count for g in triage.groups] == [6, 3] and triage.more_groups and triage.failures == 10
    first = triage.groups[0]
    assert [(j.pk, n) for j, n in first.jobs] == [(job.pk, 4), (other.pk, 2)] and first.job_count == 2
    assert first.last_seen > first.first_seen and len(first.examples) == 3
    every = selectors.failure_triage(user=viewer, filters=selectors.TriageFilters())
    assert [g.count for g in every.groups] == [6, 3, 1] and not every.more_groups and every.failures == 10


def test_the_time_range_job_and_pool_filters_narrow_the_groups(viewer):
    render = JobFactory(job_id="render-a", pool_id="gpu")
    encode = JobFactory(job_id="encode-b", pool_id="cpu")
    failed(render, 2, ago=timedelta(hours=2))
    failed(render, 3, code="CommandProgramNotFound", exit_code=None, line="", ago=timedelta(days=3))
    failed(encode, 4, exit_code=137, line="Killed", ago=timedelta(days=10))
    client = client_for(viewer)

    def counts(**params):
        return [n for n, _ in groups_on(text(client.get(reverse("failure_triage"), params)))]

    assert counts() == [3, 2]                        # the last 7 days, by default
    assert counts(range="24h") == [2]
    assert counts(range="all") == [4, 3, 2]
    assert counts(range="all", job=encode.pk) == [4]
    assert counts(range="all", pool="gpu") == [3, 2]
    assert counts(range="all", pool="nowhere") == []
    # Values no form offers fall back to the defaults rather than failing.
    assert counts(range="forever", job="x'--") == [3, 2]


def test_an_error_line_holding_markup_is_shown_as_text(viewer):
    failed(JobFactory(), 1, line='<script>window.pwned=1</script><img src=x onerror=alert(1)>')

    page = text(client_for(viewer).get(reverse("failure_triage")))

    assert "<script>window.pwned" not in page and "<img src=x" not in page
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page


def test_no_failures_says_so(viewer):
    TaskFactory.create_batch(2)
    page = text(client_for(viewer).get(reverse("failure_triage")))
    assert 'id="triage-empty"' in page and "No failed tasks ended in the last 7 days" in page


def test_the_queries_do_not_grow_with_the_number_of_failed_tasks(viewer):
    """One GROUP BY and one example query per shown group: a group of 60 tasks costs what a group of 3 does."""
    client = client_for(viewer)
    job = JobFactory()
    failed(job, 3)
    failed(job, 2, code="CommandProgramNotFound", exit_code=None, line="")
    client.get(reverse("failure_triage"))     # sessions, permissions and the like, cached from here on
    with CaptureQueriesContext(connection) as few:
        small = client.get(reverse("failure_triage"))
    failed(job, 57)
    failed(JobFactory(), 40, code="CommandProgramNotFound", exit_code=None, line="")
    with CaptureQueriesContext(connection) as many:
        big = client.get(reverse("failure_triage"))
    # An error page is cheap too: the counts compare only if the page itself was served.
    assert (small.status_code, big.status_code) == (200, 200)
    page = text(big)
    assert [n for n, _ in groups_on(page)] == [60, 42]
    assert len(many.captured_queries) == len(few.captured_queries)
    assert not any("COUNT(" in q["sql"].upper() and "GROUP BY" not in q["sql"].upper()
                   for q in many.captured_queries if "portal_task" in q["sql"])


def test_the_page_needs_a_sign_in_and_a_role(client, no_role):
    failed(JobFactory(), 2)
    response = client.get(reverse("failure_triage"))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))
    response = client.get(reverse("failure_retry"), {"code": "FailureExitCode", "exit": "1", "line": DISK_FULL})
    assert response.status_code == 302 and response.url.startswith(reverse("login"))
    # Signed in without a role: nothing of the mirror is readable (once roles gate reads), so no failures either.
    if hasattr(access, "can_read"):
        page = client_for(no_role).get(reverse("failure_triage"))
        assert page.status_code == 403 or groups_on(page.content.decode()) == []


def test_only_accounts_the_person_may_read_are_counted(viewer, monkeypatch):
    visible = JobFactory(account=BatchAccountFactory(name="ours"))
    hidden = JobFactory(account=BatchAccountFactory(name="theirs", is_default=False))
    failed(visible, 2)
    failed(hidden, 5)
    real = access.user_can_view_account
    monkeypatch.setattr(access, "user_can_view_account",
                        lambda *, user, account_id: account_id != hidden.account_id and real(user=user,
                                                                                              account_id=account_id))

    page = text(client_for(viewer).get(reverse("failure_triage")))

    assert [n for n, _ in groups_on(page)] == [2] and hidden.job_id not in page


def test_the_nav_the_dashboard_and_a_job_with_failures_link_to_the_triage_page(viewer):
    job = JobFactory(task_failed=1, task_completed=1)
    failed(job, 1)
    page = text(client_for(viewer).get(reverse("dashboard")))
    assert f'href="{reverse("failure_triage")}"' in page and 'id="d-failures-all"' in page
    job_page = text(client_for(viewer).get(reverse("job_detail", args=[job.pk])))
    link = re.search(r'id="job-failures-grouped" href="([^"]+)"', job_page).group(1).replace("&amp;", "&")
    assert [n for n, _ in groups_on(text(client_for(viewer).get(link)))] == [1]


def test_retry_these_is_offered_only_to_people_who_may_act_on_work(viewer, submitter, operator_a):
    failed(JobFactory(submitted_by=submitter), 2)

    assert 'id="retry-1"' not in text(client_for(viewer).get(reverse("failure_triage")))
    assert 'id="retry-1"' in text(client_for(submitter).get(reverse("failure_triage")))
    assert 'id="retry-1"' in text(client_for(operator_a).get(reverse("failure_triage")))
    assert not access.can_act_on_some_work(viewer) and access.can_act_on_some_work(submitter)


def test_a_retry_link_that_names_no_signature_is_404(viewer):
    client = client_for(viewer)
    assert client.get(reverse("failure_retry")).status_code == 404
    assert client.get(reverse("failure_retry"), {"code": "X", "exit": "one", "line": ""}).status_code == 404
    assert client.post(reverse("failure_retry"), {"code": "X", "exit": str(2**40), "line": ""}).status_code == 404


# --- against localbatch ----------------------------------------------------------------------------------------


@pytest.fixture
def store(azurite, settings):
    """The archiver's blob store on the test Azurite, with a logs container of this test's own."""
    settings.AZURE_STORAGE_CONNECTION_STRING = azurite.connection_string
    settings.STORAGE_LOGS_CONTAINER = f"logs-{uuid.uuid4().hex[:12]}"
    with blob_store() as store:
        store.ensure_containers()
        yield store


DISK_SCRIPT = f"echo starting; echo loading >&2; echo '{DISK_FULL}' >&2; exit 3"


@pytest.fixture
def failures(batch, batch_client, store, submitter, team_a, other_submitter):
    """Three jobs on one pool, each with tasks that failed two ways: exit code 3 after printing DISK_FULL, and
    killed at their wall-clock limit; synced and archived as the worker does. "mine-1" and "mine-2" are the
    owner's, "theirs" belongs to someone of another team."""
    make_pool(batch_client, "pool-1", nodes=1, slots=8)
    for job_id in ("mine-1", "mine-2", "theirs"):
        make_job(batch_client, job_id, "pool-1")
    plan = {"mine-1": (3, 1), "mine-2": (2, 1), "theirs": (1, 0)}
    for job_id, (disk, slow) in plan.items():
        for i in range(disk):
            batch_client.create_task(job_id, task(f"disk-{i}", "/bin/sh -c " + shell_quote(DISK_SCRIPT)))
        for i in range(slow):
            batch_client.create_task(job_id, task(f"slow-{i}", "sleep 30", constraints=models.BatchTaskConstraints(
                max_wall_clock_time=timedelta(seconds=1))))
        batch_client.create_task(job_id, task("fine", "echo ok"))
    for job_id in plan:
        wait_for(lambda j=job_id: all(t.state == "completed" for t in batch_client.list_tasks(j)),
                 timeout=30, message=f"{job_id}'s tasks completed")
    sync()
    Job.objects.filter(job_id__startswith="mine-").update(submitted_by=submitter, team=team_a)
    Job.objects.filter(job_id="theirs").update(submitted_by=other_submitter)
    _archive_all()
    return batch_client


def sync():
    """A sync pass as the worker runs it, again while another test process holds the account's lock (tests on
    one machine share Redis and the in-memory test database's name)."""
    wait_for(lambda: not sync_account(default_account()).busy, message="a sync pass that was not busy")


def _archive_all():
    """Fill Task.error_line as the archiver does when a task finishes (or as it would, were it not there yet)."""
    # A pass finds the lock busy when another test process archives at the same moment: pass again until done.
    wait_for(lambda: archive.archive_finished_tasks(limit=50) is not None
             and not Task.objects.filter(state=TaskState.COMPLETED, logs_saved_at__isnull=True).exists(),
             message="every finished task archived")


def retry_query(code: str, exit_code: str, line: str, **filters) -> dict:
    return {"code": code, "exit": exit_code, "line": line, **filters}


def test_first_seen_stays_the_first_failure_after_a_retry_fails_again(batch, batch_client, viewer):
    make_pool(batch_client, "pool-1", nodes=1)
    make_job(batch_client, "again", "pool-1")
    batch_client.create_task("again", task("t1", "/bin/sh -c 'exit 4'"))
    wait_for(lambda: batch_client.get_task("again", "t1").state == "completed", message="the first failure")
    sync()
    first = Task.objects.get(task_id="t1").end_time

    batch_client.reactivate_task("again", "t1")
    wait_for(lambda: (lambda t: t.state == "completed" and t.execution_info.end_time > first)(
        batch_client.get_task("again", "t1")), message="the second failure")
    # A full pass: the job's task counts are as they were (one failed), so a quick pass may take it for quiet.
    wait_for(lambda: not sync_account(default_account(), full=True).busy, message="a full sync pass")

    stored = Task.objects.get(task_id="t1")
    assert stored.result == TaskResult.FAILURE and stored.end_time > first
    [group] = selectors.failure_triage(user=viewer, filters=selectors.TriageFilters()).groups
    assert (group.first_seen, group.last_seen) == (first, stored.end_time)


def test_real_failures_of_two_kinds_are_grouped(failures, viewer):
    page = text(client_for(viewer).get(reverse("failure_triage")))

    groups = groups_on(page)
    assert groups[0] == (6, f"failure code: FailureExitCode exit code 3 {DISK_FULL}")
    # Killed at the limit: Batch's code, the signal's exit code, and a stderr with nothing in it.
    assert groups[1][0] == 2 and re.fullmatch(
        r"failure code: MaxWallClockTimeExceeded (exit code \d+|no exit code) no error line found in stderr",
        groups[1][1]), groups[1]
    assert len(groups) == 2
    first = page[page.index('id="group-1"'):page.index('id="group-2"')]
    assert "mine-1</a> (3" in first and "mine-2</a> (2" in first and "theirs</a> (1" in first
    assert len(re.findall(r'class="mono example"', first)) == 3


def test_retry_these_counts_first_then_retries_only_the_jobs_the_person_may_act_on(failures, submitter):
    client = client_for(submitter)
    query = retry_query("FailureExitCode", "3", DISK_FULL)
    Job.objects.filter(job_id="mine-2").update(state=JobState.COMPLETED)   # as the sync would see an ended job

    confirm = text(client.get(reverse("failure_retry"), query))

    assert "This retries 3 failed tasks in 1 job." in confirm
    assert re.search(r"2 tasks in 1 job that has ended are skipped: Batch cannot run the tasks of an ended job",
                     confirm)
    assert "1 task in 1 job is skipped: not yours" in confirm
    # Counting changed nothing in Batch.
    assert {t.id: t.state for t in failures.list_tasks("mine-1")}["disk-0"] == "completed"

    response = client.post(reverse("failure_retry"), {**query, "range": "7d"})

    assert response.status_code == 302 and response.url.startswith(reverse("failure_triage"))
    states = {t.id: t.state for t in failures.list_tasks("mine-1")}
    assert all(states[f"disk-{i}"] in ("active", "running", "completed") for i in range(3))
    reactivated = [t for t in failures.list_tasks("mine-1") if t.id.startswith("disk-")]
    # Reactivated tasks start again: each is waiting or running, or has run once more (retry count from zero).
    assert all(t.state != "completed" or t.execution_info.end_time > Task.objects.get(
        job__job_id="mine-1", task_id=t.id).end_time for t in reactivated)
    # The slow ones, another signature, and the jobs the owner may not act on were left alone.
    assert {t.id: t.state for t in failures.list_tasks("mine-1")}["slow-0"] == "completed"
    assert all(t.state == "completed" for t in failures.list_tasks("theirs"))
    assert all(t.state == "completed" for t in failures.list_tasks("mine-2"))
    followed = text(client.get(response.url))
    assert "Batch is running 3 failed tasks again in 1 job" in followed
    assert "Skipped 2 tasks of jobs that have ended" in followed
    assert "Skipped 1 task of jobs that are not yours" in followed


def test_a_viewer_may_count_but_retries_nothing(failures, viewer):
    client = client_for(viewer)
    query = retry_query("FailureExitCode", "3", DISK_FULL)

    confirm = text(client.get(reverse("failure_retry"), query))
    assert "There is no task here that you can retry." in confirm and 'id="retry-confirm"' not in confirm
    assert "6 tasks in 3 jobs are skipped: not yours" in confirm

    client.post(reverse("failure_retry"), query)
    for job_id in ("mine-1", "mine-2", "theirs"):
        assert all(t.state == "completed" for t in failures.list_tasks(job_id))


def test_retry_posts_need_the_csrf_token(failures, submitter):
    client = Client(enforce_csrf_checks=True)
    client.force_login(submitter)
    response = client.post(reverse("failure_retry"), retry_query("FailureExitCode", "3", DISK_FULL))
    assert response.status_code == 403
    assert all(t.state == "completed" for t in failures.list_tasks("mine-1"))


def test_the_retry_page_counts_one_time_range_only(failures, submitter):
    Task.objects.filter(job__job_id="mine-1").update(end_time=timezone.now() - timedelta(days=2))
    confirm = text(client_for(submitter).get(reverse("failure_retry"),
                                       retry_query("FailureExitCode", "3", DISK_FULL, range="24h")))
    assert "This retries 2 failed tasks in 1 job." in confirm
    assert Task.objects.filter(result=TaskResult.FAILURE, job__job_id="mine-1", exit_code=3).count() == 3
