"""batchsync.sync against a real localbatch through the real SDK, into the real database."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils.timezone import now as timezone_now

from batchsync import locks, sync
from batchsync.gateway import BatchGateway, ImageSpec, JobSpec, PoolSpec, TaskSpec, Transient
from localbatch.server import Faults
from portal.models import BatchAccount, Job, Node, Pool, Task
from tests.localbatch.helpers import wait_for

pytestmark = pytest.mark.django_db

UBUNTU = ImageSpec(publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts",
                   node_agent_sku_id="batch.node.ubuntu 22.04")
NO_RETRY = sync.RetryPolicy(budget_seconds=0)
KEY_VARIABLE = "PORTAL_TEST_SYNC_BATCH_KEY"


@pytest.fixture
def gateway(localbatch):
    with BatchGateway(localbatch.endpoint, localbatch.account_name, localbatch.account_key) as gateway:
        yield gateway


@pytest.fixture
def account(localbatch, monkeypatch):
    # The key reaches the sync the way it does in production: through the variable the row names.
    monkeypatch.setenv(KEY_VARIABLE, localbatch.account_key)
    return BatchAccount.objects.create(name="test", account_url=localbatch.endpoint,
                                       account_name=localbatch.account_name, key_env_var=KEY_VARIABLE)


def make_pool(gateway, pool_id="pool-1", nodes=1, **settings):
    gateway.create_pool(PoolSpec(id=pool_id, vm_size="standard_d2s_v3", image=UBUNTU,
                                 target_dedicated_nodes=nodes, **settings))
    wait_for(lambda: gateway.get_pool(pool_id).allocation_state == "steady", message=f"pool {pool_id} steady")
    wait_for(lambda: all(node.state == "idle" for node in gateway.list_nodes(pool_id)),
             message=f"nodes of {pool_id} idle")
    return pool_id


def add_tasks(gateway, job_id, count, command="/bin/true", prefix="task"):
    ids = [f"{prefix}-{number:05d}" for number in range(count)]
    result = gateway.add_tasks(job_id, [TaskSpec(id=task_id, command_line=command) for task_id in ids])
    assert not result.failures
    return ids


def wait_tasks_completed(gateway, job_id, count):
    wait_for(lambda: gateway.get_task_counts(job_id).completed == count, message=f"{count} tasks of {job_id} completed")


def shell(script):
    return f"/bin/sh -c '{script}'"


def mirrored_job(account, job_id="job-1"):
    return Job.objects.get(account=account, job_id=job_id)


# --- new objects ---------------------------------------------------------------------------------

def test_new_pool_nodes_job_and_tasks_appear(account, gateway):
    make_pool(gateway, "pool-1", nodes=2, task_slots_per_node=2, display_name="Render farm",
              start_task_command_line=shell("echo ready"))
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1", display_name="Frames"))
    add_tasks(gateway, "job-1", 3, command=shell("echo hello"))
    wait_tasks_completed(gateway, "job-1", 3)

    stats = sync.sync_account(account)

    pool = Pool.objects.get(account=account, pool_id="pool-1")
    assert (pool.display_name, pool.state, pool.allocation_state) == ("Render farm", "active", "steady")
    assert (pool.target_dedicated_nodes, pool.current_dedicated_nodes, pool.task_slots_per_node) == (2, 2, 2)
    assert pool.start_task_command_line == shell("echo ready") and pool.gone_at is None
    nodes = list(Node.objects.filter(pool=pool))
    assert len(nodes) == 2
    assert {(n.state, n.start_task_state, n.start_task_exit_code, n.start_task_result) for n in nodes} == {
        ("idle", "completed", 0, "success")}
    job = mirrored_job(account)
    assert (job.display_name, job.pool_id, job.state) == ("Frames", "pool-1", "active")
    assert (job.task_completed, job.task_succeeded, job.task_failed) == (3, 3, 0)
    tasks = list(Task.objects.filter(job=job).order_by("task_id"))
    assert [t.task_id for t in tasks] == ["task-00000", "task-00001", "task-00002"]
    for task in tasks:
        assert (task.state, task.exit_code, task.result, task.pool_id) == ("completed", 0, "success", "pool-1")
        assert task.node_id in {n.node_id for n in nodes}
        assert task.command_line == shell("echo hello")
        assert task.duration_seconds == (task.end_time - task.start_time).total_seconds() >= 0
    assert (stats.pools, stats.nodes, stats.jobs, stats.tasks, stats.gone) == (1, 2, 1, 3, 0)
    account.refresh_from_db()
    assert account.last_synced_at is not None
    assert job.task_watermark_at is not None and job.tasks_synced_at is not None


def test_task_environment_and_constraints_are_mirrored(account, gateway):
    make_pool(gateway, "pool-1", nodes=0)
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    gateway.add_tasks("job-1", [TaskSpec(id="t", command_line="/bin/true", environment={"FRAME": "7"},
                                         max_task_retry_count=2, max_wall_clock_seconds=600)])

    sync.sync_account(account)

    task = Task.objects.get(job__job_id="job-1", task_id="t")
    assert task.environment == [{"name": "FRAME", "value": "7"}]
    assert (task.max_task_retry_count, task.max_wall_clock_seconds, task.state) == (2, 600, "active")


# --- changes -------------------------------------------------------------------------------------

def test_changed_states_update_and_finished_tasks_get_exit_code_result_and_failure(account, gateway):
    make_pool(gateway, "pool-1", nodes=0)
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    gateway.add_tasks("job-1", [TaskSpec(id="ok", command_line=shell("exit 0")),
                                TaskSpec(id="fails", command_line=shell("exit 3")),
                                TaskSpec(id="missing", command_line="/nonexistent/program")])
    sync.sync_account(account)
    job = mirrored_job(account)
    assert set(Task.objects.filter(job=job).values_list("state", flat=True)) == {"active"}
    assert (job.task_active, job.task_completed) == (3, 0)

    gateway.resize_pool("pool-1", dedicated=1, low_priority=0)
    wait_tasks_completed(gateway, "job-1", 3)
    sync.sync_account(account)

    tasks = {t.task_id: t for t in Task.objects.filter(job=job)}
    assert (tasks["ok"].state, tasks["ok"].previous_state, tasks["ok"].exit_code, tasks["ok"].result) == (
        "completed", "running", 0, "success")
    assert tasks["ok"].failure_code == "" and tasks["ok"].node_id
    assert (tasks["fails"].exit_code, tasks["fails"].result, tasks["fails"].failure_category,
            tasks["fails"].failure_code) == (3, "failure", "usererror", "FailureExitCode")
    assert tasks["fails"].failure_message
    assert tasks["missing"].result == "failure" and tasks["missing"].failure_code
    job.refresh_from_db()
    assert (job.task_active, job.task_completed, job.task_succeeded, job.task_failed) == (0, 3, 1, 2)
    assert Pool.objects.get(pool_id="pool-1").current_dedicated_nodes == 1


def test_counts_come_from_batch_not_from_the_mirror(account, gateway):
    make_pool(gateway, "pool-1", nodes=0)
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    add_tasks(gateway, "job-1", 25)

    sync.sync_jobs(account)   # jobs and counts only: no task rows yet

    job = mirrored_job(account)
    assert Task.objects.filter(job=job).count() == 0
    counts = gateway.get_task_counts("job-1")
    assert (job.task_active, job.task_running, job.task_completed) == (counts.active, counts.running,
                                                                       counts.completed) == (25, 0, 0)


def test_job_state_changes_are_picked_up_incrementally(account, gateway):
    make_pool(gateway, "pool-1", nodes=0)
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    gateway.create_job(JobSpec(id="job-2", pool_id="pool-1"))
    sync.sync_account(account)

    gateway.terminate_job("job-2", reason="enough")
    wait_for(lambda: gateway.get_job("job-2").state == "completed", message="job-2 completed")
    sync.sync_account(account)

    job = mirrored_job(account, "job-2")
    assert (job.state, job.terminate_reason) == ("completed", "enough")
    assert mirrored_job(account, "job-1").state == "active"


# --- deletions -----------------------------------------------------------------------------------

def test_deleted_task_is_marked_gone_by_the_reconcile_and_kept(account, gateway):
    make_pool(gateway, "pool-1", nodes=0)
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    add_tasks(gateway, "job-1", 3)
    sync.sync_account(account)

    gateway.delete_task("job-1", "task-00001")
    sync.reconcile_job_tasks(mirrored_job(account))

    tasks = {t.task_id: t for t in Task.objects.filter(job__job_id="job-1")}
    assert set(tasks) == {"task-00000", "task-00001", "task-00002"}
    assert tasks["task-00001"].gone_at is not None
    assert tasks["task-00000"].gone_at is None and tasks["task-00002"].gone_at is None


def test_deleted_job_is_marked_gone_with_its_tasks_and_kept(account, gateway):
    make_pool(gateway, "pool-1", nodes=0)
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    gateway.create_job(JobSpec(id="job-2", pool_id="pool-1"))
    add_tasks(gateway, "job-1", 2)
    sync.sync_account(account)

    gateway.delete_job("job-1")
    wait_for(lambda: [j.id for j in gateway.list_jobs()] == ["job-2"], message="job-1 deleted")
    stats = sync.sync_account(account, full=True)

    job = mirrored_job(account, "job-1")
    assert job.gone_at is not None
    assert Task.objects.filter(job=job).count() == 2
    assert not Task.objects.filter(job=job, gone_at__isnull=True).exists()
    assert mirrored_job(account, "job-2").gone_at is None
    assert stats.gone == 3


def test_job_deleted_between_passes_is_marked_gone_when_its_tasks_are_synced(account, gateway):
    make_pool(gateway, "pool-1", nodes=0)
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    add_tasks(gateway, "job-1", 2)
    sync.sync_account(account)

    gateway.delete_job("job-1")
    wait_for(lambda: not gateway.list_jobs(), message="job-1 deleted")
    stats = sync.sync_job_tasks(mirrored_job(account))

    job = mirrored_job(account)
    assert job.gone_at is not None and stats.gone == 3
    assert Task.objects.filter(job=job, gone_at__isnull=False).count() == 2


def test_deleted_pool_and_nodes_are_marked_gone_and_a_returning_pool_revived(account, gateway):
    make_pool(gateway, "pool-1", nodes=2)
    make_pool(gateway, "pool-2", nodes=1)
    sync.sync_pools(account)

    gateway.delete_pool("pool-1")
    wait_for(lambda: [p.id for p in gateway.list_pools()] == ["pool-2"], message="pool-1 deleted")
    sync.sync_pools(account)

    pool = Pool.objects.get(pool_id="pool-1")
    assert pool.gone_at is not None
    assert Node.objects.filter(pool=pool).count() == 2
    assert not Node.objects.filter(pool=pool, gone_at__isnull=True).exists()
    assert Pool.objects.get(pool_id="pool-2").gone_at is None

    make_pool(gateway, "pool-1", nodes=1)
    sync.sync_pools(account)

    pool.refresh_from_db()
    assert pool.gone_at is None
    assert Node.objects.filter(pool=pool, gone_at__isnull=True).count() == 1


def test_nodes_removed_by_a_resize_are_marked_gone(account, gateway):
    make_pool(gateway, "pool-1", nodes=2)
    sync.sync_pools(account)

    gateway.resize_pool("pool-1", dedicated=1, low_priority=0)
    wait_for(lambda: len(gateway.list_nodes("pool-1")) == 1, message="one node left")
    sync.sync_pools(account)

    nodes = Node.objects.filter(pool__pool_id="pool-1")
    assert nodes.count() == 2 and nodes.filter(gone_at__isnull=True).count() == 1


# --- paging, skew, time order, interruption --------------------------------------------------------

def test_a_job_with_more_tasks_than_a_page_is_synced_completely(account, gateway):
    make_pool(gateway, "pool-1", nodes=0)
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    ids = add_tasks(gateway, "job-1", 1_050)
    sync.sync_jobs(account)

    stats = sync.sync_job_tasks(mirrored_job(account), page_size=100)

    assert stats.tasks_listed == stats.tasks == 1_050
    assert sorted(Task.objects.filter(job__job_id="job-1").values_list("task_id", flat=True)) == ids


def test_a_task_changed_slightly_before_the_watermark_is_still_picked_up(account, gateway):
    make_pool(gateway, "pool-1", nodes=0)
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    add_tasks(gateway, "job-1", 1)
    sync.sync_account(account)
    job = mirrored_job(account)
    changed_at = Task.objects.get(job=job).state_transition_time
    # As if an earlier pass had moved the watermark past this change without seeing it (Batch listed it
    # late): the row is missing and the watermark is a little later, within the overlap.
    Task.objects.filter(job=job).delete()
    Job.objects.filter(pk=job.pk).update(task_watermark_at=changed_at + sync.mirror.OVERLAP - timedelta(seconds=1))

    stats = sync.sync_job_tasks(job)

    assert stats.tasks == 1 and Task.objects.filter(job=job, task_id="task-00000").exists()


def test_changes_older_than_the_skew_are_left_to_the_reconcile(account, gateway):
    make_pool(gateway, "pool-1", nodes=0)
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    add_tasks(gateway, "job-1", 1)
    sync.sync_account(account)
    job = mirrored_job(account)
    changed_at = Task.objects.get(job=job).state_transition_time
    Task.objects.filter(job=job).delete()
    Job.objects.filter(pk=job.pk).update(task_watermark_at=changed_at + sync.SKEW + timedelta(minutes=1))

    assert sync.sync_job_tasks(job).tasks_listed == 0   # the incremental pass really filters
    assert sync.reconcile_job_tasks(job).tasks == 1
    assert Task.objects.filter(job=job, task_id="task-00000").exists()


class Replays(BatchGateway):
    """The real gateway, except that listing a job's tasks answers with `records` seen earlier: a page of Batch's
    answer that is older than what the mirror holds."""

    def __init__(self, localbatch, records):
        super().__init__(localbatch.endpoint, localbatch.account_name, localbatch.account_key)
        self.records = records

    def list_tasks(self, job_id, **options):
        yield from self.records


def test_an_older_record_never_overwrites_a_newer_state(account, gateway, localbatch):
    make_pool(gateway, "pool-1", nodes=0)
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    add_tasks(gateway, "job-1", 1, command=shell("exit 0"))
    active_record = gateway.get_task("job-1", "task-00000")
    gateway.resize_pool("pool-1", dedicated=1, low_priority=0)
    wait_tasks_completed(gateway, "job-1", 1)
    sync.sync_account(account)
    job = mirrored_job(account)

    with Replays(localbatch, [active_record]) as replaying:
        written = sync.reconcile_job_tasks(job, gateway=replaying).tasks

    task = Task.objects.get(job=job, task_id="task-00000")
    assert written == 0
    assert (task.state, task.exit_code, task.result) == ("completed", 0, "success")
    assert task.state_transition_time > active_record.state_transition_time


def test_a_newer_record_does_overwrite(account, gateway):
    make_pool(gateway, "pool-1", nodes=0)
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    add_tasks(gateway, "job-1", 1, command=shell("exit 0"))
    job = Job.objects.create(account=account, job_id="job-1")
    sync.reconcile_job_tasks(job)
    assert Task.objects.get(job=job).state == "active"
    gateway.resize_pool("pool-1", dedicated=1, low_priority=0)
    wait_tasks_completed(gateway, "job-1", 1)

    written = sync.reconcile_job_tasks(job).tasks

    assert written == 1 and Task.objects.get(job=job).state == "completed"


class FaultAfter(BatchGateway):
    """The real gateway; after `records` tasks were listed, the localbatch behind it answers every request
    with 503 — a Batch outage in the middle of a pass."""

    def __init__(self, localbatch, records):
        super().__init__(localbatch.endpoint, localbatch.account_name, localbatch.account_key)
        self.localbatch, self.records = localbatch, records

    def list_tasks(self, job_id, **options):
        for number, record in enumerate(super().list_tasks(job_id, **options), start=1):
            yield record
            if number == self.records:
                self.localbatch.app.faults = Faults(rate=1.0, status=503, retry_after=0)


def test_a_pass_interrupted_half_way_keeps_the_watermark_and_a_rerun_completes(account, gateway, localbatch,
                                                                               monkeypatch):
    # Small upsert batches, so the pass has stored some of its changes when Batch stops answering.
    monkeypatch.setattr(sync.mirror, "UPSERT_BATCH", 50)
    make_pool(gateway, "pool-1", nodes=0)
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    ids = add_tasks(gateway, "job-1", 600)
    sync.sync_account(account)
    job = mirrored_job(account)
    watermark = job.task_watermark_at
    for task_id in ids[:300]:
        gateway.terminate_task("job-1", task_id)

    with FaultAfter(localbatch, records=120) as failing, pytest.raises(Transient):
        sync.sync_job_tasks(job, gateway=failing, retry=NO_RETRY, page_size=50)

    job.refresh_from_db()
    assert job.task_watermark_at == watermark
    completed = Task.objects.filter(job=job, state="completed").count()
    assert 0 < completed < 300, "the pass stored part of the changes before it stopped"

    localbatch.app.faults = Faults()
    stats = sync.sync_job_tasks(job, page_size=50)

    job.refresh_from_db()
    assert job.task_watermark_at > watermark
    assert Task.objects.filter(job=job, state="completed").count() == 300
    assert set(Task.objects.filter(job=job, state="completed").values_list("task_id", flat=True)) == set(ids[:300])
    assert stats.tasks == 300 - completed   # rows stored by the interrupted pass are not written again
    assert Task.objects.filter(job=job).count() == 600


def test_transient_errors_are_retried_until_batch_answers(account, gateway, localbatch):
    make_pool(gateway, "pool-1", nodes=0)
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    add_tasks(gateway, "job-1", 5)
    localbatch.app.faults = Faults(rate=1.0, status=503, retry_after=0)
    threading.Timer(1.5, lambda: setattr(localbatch.app, "faults", Faults())).start()

    stats = sync.sync_account(account, retry=sync.RetryPolicy(budget_seconds=60, first_delay=0.2))

    assert (stats.pools, stats.jobs, stats.tasks) == (1, 1, 5)


def test_transient_errors_give_up_when_the_budget_is_spent(account, gateway, localbatch):
    make_pool(gateway, "pool-1", nodes=0)
    localbatch.app.faults = Faults(rate=1.0, status=503, retry_after=0)

    with pytest.raises(Transient):
        sync.sync_pools(account, retry=sync.RetryPolicy(budget_seconds=1, first_delay=0.1))

    assert not Pool.objects.exists()


def test_a_busy_lock_skips_the_job_and_writes_nothing(account, gateway):
    make_pool(gateway, "pool-1", nodes=0)
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    add_tasks(gateway, "job-1", 3)
    sync.sync_jobs(account)
    job = mirrored_job(account)

    with locks.hold(f"job:{job.pk}:tasks") as acquired:
        assert acquired
        stats = sync.sync_job_tasks(job)

    assert stats.busy == ["tasks of job job-1"] and stats.tasks == 0
    assert not Task.objects.filter(job=job).exists()
    assert sync.sync_job_tasks(job).tasks == 3


def test_an_unchanged_pass_writes_nothing(account, gateway):
    make_pool(gateway, "pool-1", nodes=0)
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    add_tasks(gateway, "job-1", 10)
    sync.sync_account(account)
    first_seen = mirrored_job(account).last_synced_at

    again = sync.sync_account(account)   # the job changed at its last pass: listed once more, with its counts
    quiet = sync.sync_account(account)
    full = sync.sync_account(account, full=True)

    assert (again.jobs, again.tasks) == (0, 0)
    assert quiet.tasks_listed == 0 and quiet.quiet == 1, "nothing changed: the job's tasks are not listed"
    assert (quiet.jobs, quiet.tasks) == (0, 0)
    assert full.tasks_listed == 10 and (full.jobs, full.tasks, full.gone) == (0, 0, 0)
    assert mirrored_job(account).last_synced_at > first_seen, "checked, so its 'synced' time moves on"


def test_a_full_pass_waits_for_a_busy_lock_instead_of_skipping(account, gateway):
    # The incremental and the full pass are scheduled on round seconds; a skipping full pass could lose
    # the race to the incremental one every time and never reconcile.
    make_pool(gateway, "pool-1", nodes=0)
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    add_tasks(gateway, "job-1", 3)
    sync.sync_jobs(account)
    job = mirrored_job(account)
    held, letting_go = threading.Event(), threading.Event()

    def incremental_pass_in_progress():
        with locks.hold(f"job:{job.pk}:tasks"):
            held.set()
            time.sleep(0.5)
            letting_go.set()

    holder = threading.Thread(target=incremental_pass_in_progress)
    holder.start()
    held.wait(10)
    stats = sync.reconcile_job_tasks(job)
    holder.join()

    assert letting_go.is_set() and stats.busy == [] and stats.tasks == 3


def task_queries(queries) -> list[str]:
    """The statements that read or wrote task rows themselves (not the job's look-up of whether it has any)."""
    return [q["sql"] for q in queries if q["sql"].startswith(('SELECT "portal_task"', 'INSERT INTO "portal_task"'))]


def test_tasks_listed_again_within_the_overlap_are_neither_looked_up_nor_written(account, gateway):
    make_pool(gateway, "pool-1", nodes=0)
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    add_tasks(gateway, "job-1", 10)
    sync.sync_jobs(account)
    job = mirrored_job(account)
    assert sync.sync_job_tasks(job).tasks == 10

    with CaptureQueriesContext(connection) as queries:
        again = sync.sync_job_tasks(job)   # the same ten, changed within OVERLAP of the watermark

    assert (again.tasks_listed, again.tasks) == (10, 0)
    assert task_queries(queries.captured_queries) == [], "remembered at the same version: no look-up, no write"
    gateway.terminate_task("job-1", "task-00003")

    with CaptureQueriesContext(connection) as queries:
        changed = sync.sync_job_tasks(job)

    assert (changed.tasks_listed, changed.tasks) == (10, 1), "a new version is stored"
    assert Task.objects.get(job=job, task_id="task-00003").state == "completed"
    written = task_queries(queries.captured_queries)
    assert len(written) == 1 and written[0].startswith("INSERT"), "one write, of that task only, checking as it writes"


def test_a_pass_that_finds_the_watermark_moved_by_another_looks_tasks_up(account, gateway):
    make_pool(gateway, "pool-1", nodes=0)
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    add_tasks(gateway, "job-1", 4)
    sync.sync_jobs(account)
    job = mirrored_job(account)
    sync.sync_job_tasks(job)
    # Another pass moved the watermark (a second back, so the same tasks are listed): what this one remembers is
    # for a pass starting from its own.
    Job.objects.filter(pk=job.pk).update(task_watermark_at=mirrored_job(account).task_watermark_at
                                         - timedelta(seconds=1))
    # The mirror changed behind the sync's back: only a look-up notices.
    Task.objects.filter(job=job, task_id="task-00001").update(state="running",
                                                              state_transition_time=timezone_now() - timedelta(days=1))

    with CaptureQueriesContext(connection) as queries:
        stats = sync.sync_job_tasks(job)

    assert stats.tasks == 1 and task_queries(queries.captured_queries)
    assert Task.objects.get(job=job, task_id="task-00001").state == "active"
