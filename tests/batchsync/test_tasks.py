"""The Celery tasks of batchsync, run in-process (directly, or eagerly for what they enqueue), by id."""

import gc
from pathlib import Path

import pytest
from celery import signals

from batchsync import submit, sync, tasks
from batchsync.accounts import default_account
from batchsync.celery import app
from batchsync.gateway import BatchGateway, JobSpec, PoolSpec, TaskSpec
from portal.models import BatchAccount, Job, Pool, Task
from tests.batchsync.test_sync import UBUNTU

pytestmark = pytest.mark.django_db
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def gateway(localbatch):
    with BatchGateway(localbatch.endpoint, localbatch.account_name, localbatch.account_key) as gateway:
        yield gateway


@pytest.fixture
def configured(settings, localbatch):
    """Settings pointing the default account at the test's localbatch."""
    settings.BATCH_ACCOUNT_URL = localbatch.endpoint
    settings.BATCH_ACCOUNT_NAME = localbatch.account_name
    settings.BATCH_ACCOUNT_KEY = localbatch.account_key
    return settings


@pytest.fixture
def eager():
    """What a task enqueues runs at once, in this process, as a worker would run it."""
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = False, False


@pytest.fixture
def batch(gateway):
    """A pool with no nodes and a job with five waiting tasks."""
    gateway.create_pool(PoolSpec(id="pool-1", vm_size="standard_d2s_v3", image=UBUNTU))
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    gateway.add_tasks("job-1", [TaskSpec(id=f"t{n}", command_line="/bin/true") for n in range(5)])


def test_sync_all_accounts_creates_the_configured_account_and_syncs_everything(configured, eager, batch):
    tasks.sync_all_accounts_task()

    account = BatchAccount.objects.get(is_default=True)
    assert account.account_url == configured.BATCH_ACCOUNT_URL and account.last_synced_at is not None
    assert Pool.objects.filter(account=account, pool_id="pool-1").exists()
    job = Job.objects.get(account=account, job_id="job-1")
    assert job.task_active == 5
    assert Task.objects.filter(job=job).count() == 5


def test_running_the_sync_twice_is_harmless(configured, eager, batch):
    tasks.sync_all_accounts_task()
    first = sorted(Task.objects.values_list("pk", "task_id", "state"))

    tasks.sync_all_accounts_task()
    tasks.sync_all_accounts_task(full=True)

    assert sorted(Task.objects.values_list("pk", "task_id", "state")) == first
    assert BatchAccount.objects.count() == 1 and Job.objects.count() == 1


def test_sync_job_tasks_task_syncs_one_job_by_its_id(configured, gateway, batch):
    sync.sync_account(default_account(), tasks=False)
    job = Job.objects.get(job_id="job-1")
    assert not Task.objects.filter(job=job).exists()

    tasks.sync_job_tasks_task(job.pk)

    assert Task.objects.filter(job=job).count() == 5


def test_sync_job_tasks_task_with_full_marks_deleted_tasks_gone(configured, gateway, batch):
    sync.sync_account(default_account(), tasks=False)
    job = Job.objects.get(job_id="job-1")
    tasks.sync_job_tasks_task(job.pk)
    gateway.delete_task("job-1", "t3")

    tasks.sync_job_tasks_task(job.pk)
    assert Task.objects.get(job=job, task_id="t3").gone_at is None, "only the full pass sees deletions"
    tasks.sync_job_tasks_task(job.pk, full=True)

    assert Task.objects.get(job=job, task_id="t3").gone_at is not None


def test_tasks_given_ids_that_no_longer_exist_do_nothing(configured):
    tasks.sync_account_task(987654)
    tasks.sync_job_tasks_task(987654)

    assert not BatchAccount.objects.exists()


def test_sync_job_tasks_task_skips_a_job_that_is_gone(configured, localbatch):
    account = BatchAccount.objects.create(name="default", account_url=localbatch.endpoint,
                                          account_name=localbatch.account_name, is_default=True)
    job = Job.objects.create(account=account, job_id="deleted-long-ago", gone_at="2026-01-01T00:00:00Z")

    tasks.sync_job_tasks_task(job.pk)   # would mark it gone again if it asked Batch

    job.refresh_from_db()
    assert job.tasks_synced_at is None


def test_every_scheduled_task_is_registered_and_the_sync_runs_on_the_sync_queue():
    schedule = app.conf.beat_schedule
    for entry in schedule.values():
        assert entry["task"] in app.tasks
    syncs = [entry for entry in schedule.values() if entry["task"] == "batchsync.sync_all_accounts"]
    assert {entry.get("kwargs", {}).get("full", False) for entry in syncs} == {False, True}, \
        "an incremental pass and a full reconcile"
    for name in ("batchsync.sync_all_accounts", "batchsync.sync_account", "batchsync.sync_job_tasks"):
        assert app.amqp.router.route({}, name)["queue"].name == "sync"


def test_submission_and_sync_are_on_separate_queues_and_the_dev_worker_consumes_both():
    queue_of = {name: app.amqp.router.route({}, name)["queue"].name for name in app.tasks
                if name.startswith("batchsync.")}
    assert queue_of["batchsync.submit_submission"] == queue_of["batchsync.redrive_submissions"] == "submit"
    for name in ("batchsync.sync_all_accounts", "batchsync.sync_account", "batchsync.sync_job_tasks",
                 "batchsync.archive_finished_tasks", "batchsync.notify_finished_jobs"):
        assert queue_of[name] == "sync", name
    assert set(queue_of.values()) == {"submit", "sync"}
    worker = next(line for line in (REPO / "Procfile.dev").read_text().splitlines() if line.startswith("worker:"))
    assert "-Q submit,sync" in worker


def test_the_submit_driver_enqueues_the_submit_task_by_its_name():
    # batchsync/submit.py names the task rather than importing tasks.py (which imports it): the names must agree.
    assert tasks.submit_submission_task.name == submit.SUBMIT_TASK
    assert submit.SUBMIT_TASK in app.tasks
    assert app.amqp.router.route({}, submit.SUBMIT_TASK)["queue"].name == "submit"


@pytest.mark.parametrize("signal", ["worker_ready", "worker_process_init"])
def test_a_worker_ready_to_run_tasks_leaves_its_startup_objects_out_of_full_collections(signal):
    gc.unfreeze()
    try:
        getattr(signals, signal).send(sender=None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
