"""A terminated job reads as terminated: its tasks killed by the terminate are not failures (Recent failures, the
Failures page, "N failed", the progress bar) unless the Failures page is asked for them. Driven on localbatch
through the real SDK and a real sync."""

import pytest
from django.urls import reverse

from batchsync.accounts import default_account
from batchsync.sync import sync_account
from portal.jobs import services as job_services
from portal.jobs.selectors import job_progress
from portal.models import TERMINATED_FAILURE_CODE, Job, Outcome, Task
from tests.localbatch.helpers import make_job, make_pool, sh, task, wait_for, wait_task_completed
from tests.personas import client_for

pytestmark = pytest.mark.django_db

POOL = "pool-t"


@pytest.fixture
def terminated_job(batch, batch_client, submitter, team_a):
    """A job with one task that failed of itself (exit 3) and two still running when the job was terminated."""
    make_pool(batch_client, POOL, nodes=1, slots=4)
    make_job(batch_client, "cut-short", POOL)
    batch_client.create_task("cut-short", task("bad", sh("exit 3")))
    wait_task_completed(batch_client, "cut-short", "bad")
    for task_id in ("long-1", "long-2"):
        batch_client.create_task("cut-short", task(task_id, sh("sleep 60")))
    for task_id in ("long-1", "long-2"):
        wait_for(lambda t=task_id: batch_client.get_task("cut-short", t).state == "running", message=f"{task_id}")
    sync_account(default_account())
    Job.objects.filter(job_id="cut-short").update(submitted_by=submitter, team=team_a)
    job_services.job_terminate(user=submitter, job=Job.objects.get(job_id="cut-short"), reason="wrong input")
    wait_for(lambda: batch_client.get_job("cut-short").state == "completed", message="job completed")
    sync_account(default_account())
    return Job.objects.get(job_id="cut-short")


def test_batch_reports_a_task_killed_by_a_job_terminate_as_a_failure_with_code_task_ended(terminated_job,
                                                                                           batch_client):
    killed = batch_client.get_task("cut-short", "long-1").execution_info

    assert (killed.result, killed.failure_info.code) == ("failure", TERMINATED_FAILURE_CODE)
    assert batch_client.get_task("cut-short", "bad").execution_info.failure_info.code == "FailureExitCode"


def test_killed_tasks_are_not_failures_but_killed_by_terminate(terminated_job):
    tasks = {t.task_id: t for t in Task.objects.filter(job=terminated_job)}

    assert [t.task_id for t in Task.objects.failed().filter(job=terminated_job)] == ["bad"]
    assert sorted(t.task_id for t in Task.objects.killed_by_terminate()) == ["long-1", "long-2"]
    assert [tasks["bad"].has_failed, tasks["long-1"].has_failed] == [True, False]
    assert [tasks["bad"].killed_by_terminate, tasks["long-1"].killed_by_terminate] == [False, True]


def test_the_job_counts_its_killed_tasks_apart_and_reads_as_terminated(terminated_job):
    progress = job_progress(terminated_job)

    assert terminated_job.task_failed == 3       # Batch's own count puts them all among the failed
    assert (progress.failed, progress.terminated, progress.total) == (1, 2, 3)
    assert terminated_job.outcome.kind == Outcome.TERMINATED
    assert terminated_job.outcome.label == "terminated"


def test_the_job_page_says_terminated_in_its_own_colour(terminated_job, submitter):
    page = client_for(submitter).get(reverse("job_detail", args=[terminated_job.pk])).content.decode()

    assert 'class="badge outcome-terminated"' in page
    assert '<span class="t-term">2 terminated</span>' in page
    assert '<span class="t-fail">1 failed</span>' in page
    assert "seg term" in page


def test_failures_page_leaves_killed_tasks_out_unless_asked(terminated_job, viewer):
    client = client_for(viewer)

    default = client.get(reverse("failure_triage"), {"range": "all"}).content.decode()
    asked = client.get(reverse("failure_triage"), {"range": "all", "terminated": "1"}).content.decode()

    assert "1 failed task in 1 group" in default and "ended by a terminate</h2>" not in default
    assert "3 failed or terminated tasks in 2 groups" in asked
    assert "2</span> tasks ended by a terminate" in asked


def test_recent_failures_on_the_dashboard_leave_killed_tasks_out(terminated_job, viewer):
    page = client_for(viewer).get(reverse("dashboard")).content.decode()
    killed = Task.objects.killed_by_terminate().values_list("pk", flat=True)
    bad = Task.objects.get(job=terminated_job, task_id="bad")

    assert f'id="d-task-{bad.pk}"' in page
    assert not any(f'id="d-task-{pk}"' in page for pk in killed)


def test_the_task_table_filter_failed_leaves_killed_tasks_out_and_they_read_terminated(terminated_job, submitter):
    client = client_for(submitter)
    failed = client.get(reverse("job_detail", args=[terminated_job.pk]), {"failed": "1"}).content.decode()
    every = client.get(reverse("job_detail", args=[terminated_job.pk])).content.decode()

    assert ">bad<" in failed and ">long-1<" not in failed
    assert 'class="badge task-terminated">terminated<' in every


def test_the_job_page_shows_the_killed_tasks_alone_when_asked(terminated_job, submitter):
    client = client_for(submitter)
    every = client.get(reverse("job_detail", args=[terminated_job.pk])).content.decode()
    killed = client.get(reverse("job_detail", args=[terminated_job.pk]), {"terminated": "1"}).content.decode()

    assert 'id="count-terminated" href="?terminated=1"' in every and 'id="task-terminated"' in every
    assert ">long-1<" in killed and ">long-2<" in killed and ">bad<" not in killed
