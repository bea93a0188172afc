"""A whole sync pass with its requests side by side, against a real localbatch through the real SDK: what it mirrors,
which requests it sends (counted by localbatch itself), throttling, and a job Batch does not answer for."""

import re

import pytest
from azure.batch import models

from batchsync import sync
from batchsync.accounts import request_budget
from batchsync.gateway import JobSpec, TaskSpec
from batchsync.sync import account as account_pass
from localbatch.server import Faults
from portal.models import BatchAccount, Job, Task
from tests.batchsync.test_sync import account, gateway, make_pool  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db

JOBS = 12
TASKS = 4


@pytest.fixture
def many_jobs(gateway):  # noqa: F811 - the fixture imported above
    """A pool with no nodes (every task stays active) and JOBS jobs of TASKS tasks each."""
    make_pool(gateway, "pool-1", nodes=0)
    for number in range(JOBS):
        gateway.create_job(JobSpec(id=f"job-{number:02d}", pool_id="pool-1"))
        gateway.add_tasks(f"job-{number:02d}", [TaskSpec(id=f"t{n}", command_line="/bin/true") for n in range(TASKS)])


def task_listings(localbatch, since: float) -> list[str]:
    """The jobs whose tasks were listed since `since` (time.time()), one entry per page, from localbatch's log."""
    pattern = re.compile(r"^/jobs/([^/]+)/tasks$")
    return [match.group(1) for served in list(localbatch.app.served)
            if served.at > since and served.method == "GET" and (match := pattern.match(served.path))]


def last_request_time(localbatch) -> float:
    # Threads record their answers in whatever order they finish: the latest time, not the last entry.
    return max(served.at for served in list(localbatch.app.served))


def test_a_pass_over_many_jobs_mirrors_every_job_and_task(account, many_jobs, settings):  # noqa: F811
    settings.SYNC_CONCURRENCY = 8

    stats = sync.sync_account(account)

    assert stats.jobs == JOBS and stats.tasks == JOBS * TASKS and not stats.failed
    for job in Job.objects.filter(account=account):
        assert job.task_active == TASKS and job.task_watermark_at is not None
        assert sorted(Task.objects.filter(job=job).values_list("task_id", flat=True)) == [f"t{n}" for n in range(TASKS)]
    assert BatchAccount.objects.get(pk=account.pk).last_synced_at is not None


def test_the_same_pass_one_request_at_a_time_mirrors_the_same(account, many_jobs):  # noqa: F811
    stats = sync.sync_account(account, workers=1)

    assert stats.jobs == JOBS and stats.tasks == JOBS * TASKS
    assert Task.objects.filter(job__account=account).count() == JOBS * TASKS


def test_jobs_where_nothing_changed_are_not_listed_again(account, many_jobs, gateway, localbatch):  # noqa: F811
    sync.sync_account(account)
    sync.sync_account(account)   # every job changed at its last pass: listed once more, with its counts
    before_second = last_request_time(localbatch)

    quiet = sync.sync_account(account)

    assert task_listings(localbatch, before_second) == [], "no job's tasks are listed when nothing changed"
    assert quiet.quiet == JOBS and quiet.tasks_listed == 0
    gateway.terminate_task("job-03", "t1")
    before_third = last_request_time(localbatch)

    third = sync.sync_account(account)

    assert task_listings(localbatch, before_third) == ["job-03"], "only the job whose counts changed"
    assert third.quiet == JOBS - 1 and third.tasks == 1
    assert Task.objects.get(job__job_id="job-03", task_id="t1").state == "completed"


def test_a_quiet_job_is_listed_again_after_a_while(account, many_jobs, localbatch):  # noqa: F811
    sync.sync_account(account)
    sync.sync_account(account)   # the pass after a change lists every job once more
    Job.objects.filter(account=account, job_id="job-05").update(
        tasks_synced_at=Job.objects.get(account=account, job_id="job-05").tasks_synced_at
        - account_pass.QUIET_RELIST)
    before = last_request_time(localbatch)

    sync.sync_account(account)

    assert task_listings(localbatch, before) == ["job-05"]


def test_a_busy_jobs_changes_are_listed_with_its_counts_not_after_them(account, many_jobs, gateway,  # noqa: F811
                                                                      localbatch):
    sync.sync_account(account)   # every job's tasks were stored: each job is busy at the next pass
    gateway.terminate_task("job-02", "t1")
    # Batch does not answer for task counts: only a listing sent without waiting for them sees the change.
    localbatch.app.faults = Faults(rate=1.0, status=503, retry_after=0, path_pattern=r"/taskcounts$")

    stats = sync.sync_account(account, retry=sync.RetryPolicy(budget_seconds=0.3, first_delay=0.1))

    assert sorted(stats.failed) == [f"job-{n:02d}" for n in range(JOBS)], "no counts"
    assert Task.objects.get(job__job_id="job-02", task_id="t1").state == "completed"
    assert stats.tasks == 1


def test_a_pass_over_more_jobs_than_requests_in_flight_lists_after_the_counts(account, many_jobs, gateway,  # noqa: F811
                                                                            localbatch, settings):
    settings.SYNC_CONCURRENCY = 8   # 12 jobs: their counts alone fill the requests in flight
    sync.sync_account(account)
    gateway.terminate_task("job-02", "t1")
    localbatch.app.faults = Faults(rate=1.0, status=503, retry_after=0, path_pattern=r"/taskcounts$")
    before = last_request_time(localbatch)

    stats = sync.sync_account(account, retry=sync.RetryPolicy(budget_seconds=0.3, first_delay=0.1))

    assert len(stats.failed) == JOBS and task_listings(localbatch, before) == []
    assert Task.objects.get(job__job_id="job-02", task_id="t1").state == "active", "listed once counts are in"


def test_the_incremental_listing_asks_only_for_changes_since_batchs_clock(account, many_jobs, localbatch):  # noqa: F811
    sync.sync_account(account)
    job = Job.objects.get(account=account, job_id="job-00")

    # Batch's Date is the watermark: the next filter starts OVERLAP before it, not SKEW before our clock.
    listing_times = [served.at for served in localbatch.app.served if served.path == "/jobs/job-00/tasks"]
    assert abs(job.task_watermark_at.timestamp() - listing_times[-1]) < 2


def test_a_throttled_request_waits_for_retry_after_and_pauses_the_account(account, many_jobs, localbatch):  # noqa: F811
    localbatch.app.faults = Faults(rate=1.0, status=429, retry_after=1, path_pattern=r"/taskcounts$", count=1)
    pauses_before = request_budget(account).pauses

    stats = sync.sync_account(account)

    assert stats.tasks == JOBS * TASKS and not stats.failed, "the throttled request was retried, not dropped"
    served = list(localbatch.app.served)
    throttled = next(s for s in served if s.status == 429)
    retried = [s for s in served if s.path == throttled.path and s.at > throttled.at]
    assert retried and retried[0].status == 200
    assert retried[0].at - throttled.at >= 1.0, "Batch's Retry-After was honoured"
    assert request_budget(account).pauses > pauses_before, "every request of the account was paused"


def test_a_job_batch_does_not_answer_for_does_not_stop_the_others(account, many_jobs, localbatch):  # noqa: F811
    localbatch.app.faults = Faults(rate=1.0, status=503, retry_after=0, path_pattern=r"^/jobs/job-07/tasks$")

    stats = sync.sync_account(account, retry=sync.RetryPolicy(budget_seconds=0.5, first_delay=0.1))

    assert stats.failed == ["job-07"]
    assert Task.objects.filter(job__account=account).exclude(job__job_id="job-07").count() == (JOBS - 1) * TASKS
    assert Job.objects.get(account=account, job_id="job-07").task_watermark_at is None, "tried again next pass"
    localbatch.app.faults = Faults()
    assert sync.sync_account(account).tasks == TASKS


def test_a_big_listing_is_handed_to_defer_and_the_others_are_listed_here(account, many_jobs, gateway,  # noqa: F811
                                                                      monkeypatch):
    monkeypatch.setattr(account_pass, "BIG_LISTING", TASKS + 1)
    gateway.add_tasks("job-02", [TaskSpec(id=f"more-{n}", command_line="/bin/true") for n in range(TASKS)])
    deferred = []

    stats = sync.sync_account(account, defer=lambda job: deferred.append(job.job_id))

    assert deferred == ["job-02"]
    assert not Task.objects.filter(job__job_id="job-02").exists()
    assert stats.tasks == (JOBS - 1) * TASKS


def test_a_reconcile_compares_versions_and_reads_only_the_changed_tasks_in_full(account, many_jobs, gateway,  # noqa: F811
                                                                             localbatch):
    sync.sync_account(account)
    job = Job.objects.get(account=account, job_id="job-04")
    # The mirror missed a change (an older state stored) and a task Batch deleted; the rest is as in Batch.
    stored = Task.objects.get(job=job, task_id="t2")
    Task.objects.filter(pk=stored.pk).update(state="running", state_transition_time=stored.state_transition_time
                                             - sync.mirror.SKEW)
    gateway.delete_task("job-04", "t3")
    before = last_request_time(localbatch)

    stats = sync.reconcile_job_tasks(job)

    assert (stats.tasks, stats.gone) == (1, 1)
    assert Task.objects.get(pk=stored.pk).state == "active"
    assert Task.objects.get(job=job, task_id="t3").gone_at is not None
    # Two listings: every task's version, then the tasks changed since the oldest stale change, in full.
    assert task_listings(localbatch, before) == ["job-04", "job-04"]


def test_a_reconcile_where_nothing_changed_lists_versions_only(account, many_jobs, localbatch):  # noqa: F811
    sync.sync_account(account)
    before = last_request_time(localbatch)

    stats = sync.sync_account(account, full=True)

    assert (stats.tasks, stats.gone, stats.tasks_listed) == (0, 0, JOBS * TASKS)
    assert sorted(task_listings(localbatch, before)) == sorted(f"job-{n:02d}" for n in range(JOBS)), \
        "one versions listing per job, no listing of whole tasks"


def test_a_reconcile_sees_a_changed_constraint_without_a_state_change(account, many_jobs, batch_client):  # noqa: F811
    sync.sync_account(account)
    batch_client.replace_task("job-06", "t0", models.BatchTask(
        constraints=models.BatchTaskConstraints(max_task_retry_count=7)))
    job = Job.objects.get(account=account, job_id="job-06")

    assert sync.reconcile_job_tasks(job).tasks == 1
    assert Task.objects.get(job=job, task_id="t0").max_task_retry_count == 7
