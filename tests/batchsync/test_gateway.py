"""BatchGateway against a real localbatch through the real azure-batch SDK: records, errors, add_tasks."""

import base64
import threading
import time
from datetime import datetime, timezone

import pytest

from batchsync.gateway import (
    AlreadyExists,
    AuthFailed,
    BatchGateway,
    ImageSpec,
    JobSpec,
    NotFound,
    PoolSpec,
    Rejected,
    ResourceFileSpec,
    TaskSpec,
    Transient,
)
from batchsync.gateway.errors import redact
from localbatch.server import Faults
from tests.localbatch.helpers import wait_for

UBUNTU = ImageSpec(publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts",
                   node_agent_sku_id="batch.node.ubuntu 22.04")


@pytest.fixture
def gateway(localbatch):
    with BatchGateway(localbatch.endpoint, localbatch.account_name, localbatch.account_key) as gateway:
        yield gateway


def make_pool(gateway, pool_id="pool-1", nodes=1, **settings):
    gateway.create_pool(PoolSpec(id=pool_id, vm_size="standard_d2s_v3", image=UBUNTU,
                                 target_dedicated_nodes=nodes, **settings))
    wait_for(lambda: (pool := gateway.get_pool(pool_id)).allocation_state == "steady" and pool,
             message=f"pool {pool_id} steady")
    wait_for(lambda: all(node.state == "idle" for node in gateway.list_nodes(pool_id)),
             message=f"nodes of {pool_id} idle")
    return pool_id


def wait_task_completed(gateway, job_id, task_id):
    return wait_for(lambda: (task := gateway.get_task(job_id, task_id)).state == "completed" and task,
                    message=f"task {task_id} completed")


def shell(script):
    return f"/bin/sh -c '{script}'"


def task_ids(count, prefix="task"):
    return [f"{prefix}-{number:05d}" for number in range(count)]


# --- pools and nodes -----------------------------------------------------------------------------

def test_create_pool_then_get_and_list_it(gateway):
    make_pool(gateway, "pool-1", nodes=1, display_name="Render farm", task_slots_per_node=2, node_fill_type="pack",
              start_task_command_line=shell("echo ready"))

    pool = gateway.get_pool("pool-1")
    assert (pool.id, pool.display_name, pool.vm_size) == ("pool-1", "Render farm", "standard_d2s_v3")
    assert (pool.state, pool.allocation_state) == ("active", "steady")
    assert (pool.target_dedicated_nodes, pool.current_dedicated_nodes) == (1, 1)
    assert (pool.target_low_priority_nodes, pool.current_low_priority_nodes) == (0, 0)
    assert (pool.task_slots_per_node, pool.node_fill_type) == (2, "pack")
    assert pool.start_task_command_line == shell("echo ready")
    assert pool.creation_time.tzinfo is not None and pool.creation_time <= datetime.now(timezone.utc)
    assert pool.state_transition_time >= pool.creation_time
    assert pool.last_modified is not None and pool.etag
    assert [p.id for p in gateway.list_pools()] == ["pool-1"]


def test_list_nodes_reports_start_task_and_counters(gateway):
    make_pool(gateway, "pool-1", nodes=2, start_task_command_line=shell("exit 0"))

    nodes = gateway.list_nodes("pool-1")

    assert len(nodes) == 2 and len({node.id for node in nodes}) == 2
    for node in nodes:
        assert (node.pool_id, node.state, node.scheduling_state, node.is_dedicated) == (
            "pool-1", "idle", "enabled", True)
        assert (node.running_tasks_count, node.running_task_slots_count) == (0, 0)
        assert (node.total_tasks_run, node.total_tasks_succeeded) == (0, 0)
        assert (node.start_task_state, node.start_task_exit_code, node.start_task_result) == (
            "completed", 0, "success")
        assert node.start_task_failure_code is None and node.state_transition_time.tzinfo is not None


def test_failed_start_task_shows_on_the_node(gateway):
    gateway.create_pool(PoolSpec(id="pool-1", vm_size="standard_d2s_v3", image=UBUNTU, target_dedicated_nodes=1,
                                 start_task_command_line=shell("exit 7")))

    node = wait_for(lambda: [n for n in gateway.list_nodes("pool-1") if n.state == "starttaskfailed"],
                    message="start task failed")[0]

    assert (node.start_task_exit_code, node.start_task_result) == (7, "failure")
    assert node.start_task_failure_code and node.start_task_failure_message


def test_list_nodes_gives_each_node_its_state_as_the_mirror_counts_them(gateway):
    make_pool(gateway, "pool-1", nodes=2)

    nodes = gateway.list_nodes("pool-1")

    assert {node.pool_id for node in nodes} == {"pool-1"}
    assert [(node.state, node.is_dedicated) for node in nodes] == [("idle", True), ("idle", True)]


def test_create_pool_twice_raises_already_exists(gateway):
    make_pool(gateway, "pool-1")

    with pytest.raises(AlreadyExists) as raised:
        make_pool(gateway, "pool-1")

    assert (raised.value.code, raised.value.status) == ("PoolExists", 409)


def test_missing_pool_is_not_found_with_batch_code(gateway):
    with pytest.raises(NotFound) as raised:
        gateway.get_pool("no-such-pool")

    assert (raised.value.code, raised.value.status) == ("PoolNotFound", 404)
    assert raised.value.request_id
    assert "PoolNotFound" in str(raised.value)


def test_resize_pool_returns_once_accepted_without_polling(gateway):
    make_pool(gateway, "pool-1", nodes=1)

    gateway.resize_pool("pool-1", dedicated=3, low_priority=1)

    assert (gateway.get_pool("pool-1").target_dedicated_nodes, gateway.get_pool("pool-1").target_low_priority_nodes) \
        == (3, 1)
    # The SDK's begin_resize_pool would leave a thread polling every 5 s.
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("LROPoller")]
    pool = wait_for(lambda: (p := gateway.get_pool("pool-1")).allocation_state == "steady" and p,
                    message="resize finished")
    assert (pool.current_dedicated_nodes, pool.current_low_priority_nodes) == (3, 1)


def test_resize_of_missing_pool_is_not_found(gateway):
    with pytest.raises(NotFound):
        gateway.resize_pool("no-such-pool", dedicated=1, low_priority=0)


def test_delete_pool_returns_once_accepted_and_the_pool_goes(gateway):
    make_pool(gateway, "pool-1")

    gateway.delete_pool("pool-1")

    assert not [thread for thread in threading.enumerate() if thread.name.startswith("LROPoller")]
    wait_for(lambda: gateway.list_pools() == [], message="pool gone")
    with pytest.raises(NotFound):
        gateway.get_pool("pool-1")


# --- jobs ----------------------------------------------------------------------------------------

def test_create_job_then_get_and_list_it(gateway):
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1", display_name="Nightly", priority=10,
                               max_task_retry_count=2, max_wall_clock_seconds=3600,
                               environment={"STAGE": "test"}))

    job = gateway.get_job("job-1")

    assert (job.id, job.display_name, job.state, job.pool_id, job.priority) == (
        "job-1", "Nightly", "active", "pool-1", 10)
    assert job.on_all_tasks_complete == "noaction"
    assert job.creation_time.tzinfo is not None and job.state_transition_time >= job.creation_time
    assert job.end_time is None and job.terminate_reason is None
    assert job.last_modified is not None and job.etag
    assert [j.id for j in gateway.list_jobs()] == ["job-1"]


def test_common_environment_and_preparation_task_reach_the_task(gateway):
    make_pool(gateway, "pool-1")
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1", environment={"STAGE": "test"},
                               preparation_command_line=shell("echo prepared > $AZ_BATCH_NODE_SHARED_DIR/prep")))
    gateway.add_tasks("job-1", [TaskSpec(id="t", command_line=shell(
        "printf $STAGE-$LOCAL; cat $AZ_BATCH_NODE_SHARED_DIR/prep"), environment={"LOCAL": "own"})])

    wait_task_completed(gateway, "job-1", "t")

    assert gateway.read_task_file("job-1", "t", "stdout.txt") == b"test-ownprepared\n"


def test_job_on_an_auto_pool_reports_the_pool_batch_made(gateway):
    gateway.create_job(JobSpec(id="job-1", auto_pool=PoolSpec(id="auto", vm_size="standard_d2s_v3", image=UBUNTU,
                                                              target_dedicated_nodes=1)))

    job = gateway.get_job("job-1")

    assert job.pool_id and job.pool_id.startswith("auto")
    assert job.pool_id in [pool.id for pool in gateway.list_pools()]


def test_job_spec_needs_exactly_one_pool():
    with pytest.raises(ValueError):
        JobSpec(id="job-1")
    with pytest.raises(ValueError):
        JobSpec(id="job-1", pool_id="p", auto_pool=PoolSpec(id="a", vm_size="s", image=UBUNTU))


def test_duplicate_job_raises_already_exists(gateway):
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))

    with pytest.raises(AlreadyExists) as raised:
        gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))

    assert raised.value.code == "JobExists"


def test_set_terminate_on_complete_ends_the_job_after_its_tasks(gateway):
    make_pool(gateway, "pool-1")
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    gateway.add_tasks("job-1", [TaskSpec(id="t", command_line=shell("exit 0"))])

    gateway.set_terminate_on_complete("job-1")

    assert gateway.get_job("job-1").on_all_tasks_complete == "terminatejob"
    job = wait_for(lambda: (j := gateway.get_job("job-1")).state == "completed" and j, message="job completed")
    assert job.terminate_reason == "AllTasksComplete" and job.end_time >= job.creation_time


def test_terminate_job_completes_it_and_a_second_terminate_is_rejected(gateway):
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))

    gateway.terminate_job("job-1", reason="Cancelled by alice")

    assert not [thread for thread in threading.enumerate() if thread.name.startswith("LROPoller")]
    job = wait_for(lambda: (j := gateway.get_job("job-1")).state == "completed" and j, message="job completed")
    assert job.terminate_reason == "Cancelled by alice"
    with pytest.raises(Rejected) as raised:
        gateway.terminate_job("job-1", reason="again")
    assert (raised.value.code, raised.value.status) == ("JobCompleted", 409)


def test_delete_job_returns_once_accepted_and_the_job_goes(gateway):
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))

    gateway.delete_job("job-1")

    wait_for(lambda: gateway.list_jobs() == [], message="job gone")
    with pytest.raises(NotFound) as raised:
        gateway.get_job("job-1")
    assert raised.value.code == "JobNotFound"


def test_list_jobs_changed_since_returns_only_jobs_changed_since(gateway):
    gateway.create_job(JobSpec(id="old", pool_id="pool-1"))
    gateway.create_job(JobSpec(id="ended", pool_id="pool-1"))
    time.sleep(0.01)
    since = datetime.now(timezone.utc)
    time.sleep(0.01)

    gateway.terminate_job("ended", reason="done")
    gateway.create_job(JobSpec(id="new", pool_id="pool-1"))

    assert sorted(job.id for job in gateway.list_jobs(changed_since=since)) == ["ended", "new"]
    assert len(gateway.list_jobs()) == 3


def test_changed_since_must_be_timezone_aware(gateway):
    with pytest.raises(ValueError):
        gateway.list_jobs(changed_since=datetime.now())
    with pytest.raises(ValueError):
        gateway.list_tasks("job-1", changed_since=datetime.now())


def test_get_task_counts_counts_tasks_and_slots(gateway):
    make_pool(gateway, "pool-1", task_slots_per_node=4)
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    gateway.add_tasks("job-1", [TaskSpec(id="ok", command_line=shell("exit 0"), required_slots=2),
                                TaskSpec(id="bad", command_line=shell("exit 3"))])
    wait_task_completed(gateway, "job-1", "ok")
    wait_task_completed(gateway, "job-1", "bad")

    counts = wait_for(lambda: (c := gateway.get_task_counts("job-1")).completed == 2 and c, message="counts")

    assert (counts.active, counts.running, counts.completed, counts.succeeded, counts.failed) == (0, 0, 2, 1, 1)
    assert (counts.completed_slots, counts.succeeded_slots, counts.failed_slots) == (3, 2, 1)


# --- tasks ---------------------------------------------------------------------------------------

def test_get_task_of_a_failed_task_has_execution_and_failure_details(gateway):
    make_pool(gateway, "pool-1")
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    gateway.add_tasks("job-1", [TaskSpec(id="t", display_name="Fails", command_line=shell("exit 3"),
                                         environment={"A": "1"}, max_task_retry_count=1,
                                         max_wall_clock_seconds=600)])

    task = wait_task_completed(gateway, "job-1", "t")

    assert (task.job_id, task.id, task.display_name, task.command_line) == ("job-1", "t", "Fails", shell("exit 3"))
    assert (task.state, task.previous_state) == ("completed", "running")
    assert (task.exit_code, task.result, task.retry_count, task.requeue_count) == (3, "failure", 1, 0)
    assert (task.failure_category, task.failure_code) == ("usererror", "FailureExitCode")
    assert task.failure_message
    assert task.pool_id == "pool-1" and task.node_id == gateway.list_nodes("pool-1")[0].id
    assert task.creation_time <= task.start_time <= task.end_time <= task.state_transition_time
    assert task.required_slots == 1 and task.environment == (("A", "1"),)
    assert (task.max_wall_clock_seconds, task.max_task_retry_count) == (600, 1)


def test_task_without_wall_clock_limit_reports_none(gateway):
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    gateway.add_tasks("job-1", [TaskSpec(id="t", command_line="true")])

    task = gateway.get_task("job-1", "t")

    assert task.max_wall_clock_seconds is None
    assert (task.state, task.previous_state, task.exit_code, task.node_id) == ("active", None, None, None)


def test_list_tasks_changed_since_returns_only_tasks_changed_since(gateway):
    gateway.create_job(JobSpec(id="job-1", pool_id="nowhere"))   # no pool: the tasks stay active
    gateway.add_tasks("job-1", [TaskSpec(id=f"t{n}", command_line="true") for n in range(5)])
    time.sleep(0.01)
    since = datetime.now(timezone.utc)
    time.sleep(0.01)

    gateway.terminate_task("job-1", "t1")
    gateway.terminate_task("job-1", "t3")
    gateway.add_tasks("job-1", [TaskSpec(id="t5", command_line="true")])

    changed = list(gateway.list_tasks("job-1", changed_since=since))
    assert sorted(task.id for task in changed) == ["t1", "t3", "t5"]
    assert {task.id: task.state for task in changed} == {"t1": "completed", "t3": "completed", "t5": "active"}
    assert all(task.command_line == "true" and task.job_id == "job-1" for task in changed)
    assert len(list(gateway.list_tasks("job-1"))) == 6


def test_list_tasks_follows_pages(gateway):
    gateway.create_job(JobSpec(id="job-1", pool_id="nowhere"))
    gateway.add_tasks("job-1", [TaskSpec(id=task_id, command_line="true") for task_id in task_ids(23)])

    listed = [task.id for task in gateway.list_tasks("job-1", page_size=5)]

    assert sorted(listed) == task_ids(23)


def test_list_tasks_gives_the_same_records_as_get_task(gateway):
    # list_tasks reads JSON pages itself and get_task goes through the SDK's models: one record either way.
    make_pool(gateway, "pool-1")
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    gateway.add_tasks("job-1", [TaskSpec(id="fails", display_name="Fails", command_line=shell("exit 3"),
                                         environment={"A": "1", "B": ""}, max_task_retry_count=1,
                                         max_wall_clock_seconds=90061),
                                TaskSpec(id="ok", command_line=shell("exit 0"))])
    wait_task_completed(gateway, "job-1", "fails")
    wait_task_completed(gateway, "job-1", "ok")
    gateway.create_job(JobSpec(id="job-2", pool_id="nowhere"))
    gateway.add_tasks("job-2", [TaskSpec(id="waits", command_line="true")])

    for job_id in ("job-1", "job-2"):
        for listed in gateway.list_tasks(job_id):
            assert listed == gateway.get_task(job_id, listed.id)
    failed = next(task for task in gateway.list_tasks("job-1") if task.id == "fails")
    assert (failed.max_wall_clock_seconds, failed.environment) == (90061, (("A", "1"), ("B", "")))
    assert (failed.failure_category, failed.result, failed.exit_code) == ("usererror", "failure", 3)
    assert failed.start_time.tzinfo == timezone.utc


def test_list_tasks_of_missing_job_is_not_found(gateway):
    with pytest.raises(NotFound):
        list(gateway.list_tasks("no-such-job"))


def test_terminate_reactivate_and_delete_task(gateway):
    gateway.create_job(JobSpec(id="job-1", pool_id="nowhere"))
    gateway.add_tasks("job-1", [TaskSpec(id="t", command_line="true")])

    gateway.terminate_task("job-1", "t")
    ended = gateway.get_task("job-1", "t")
    assert (ended.state, ended.result, ended.failure_code) == ("completed", "failure", "TaskEnded")
    with pytest.raises(Rejected) as raised:
        gateway.terminate_task("job-1", "t")
    assert raised.value.code == "TaskCompleted"

    gateway.reactivate_task("job-1", "t")
    assert gateway.get_task("job-1", "t").state == "active"
    with pytest.raises(Rejected) as raised:
        gateway.reactivate_task("job-1", "t")
    assert raised.value.code == "TaskNotCompleted"

    gateway.delete_task("job-1", "t")
    with pytest.raises(NotFound) as raised:
        gateway.get_task("job-1", "t")
    assert raised.value.code == "TaskNotFound"


# --- add_tasks -----------------------------------------------------------------------------------

def test_add_tasks_with_20_percent_busy_answers_adds_every_task_exactly_once(gateway, localbatch):
    gateway.create_job(JobSpec(id="job-1", pool_id="nowhere"))
    ids = task_ids(1050)
    localbatch.app.faults = Faults(rate=0.2, status=503, retry_after=1)

    result = gateway.add_tasks("job-1", [TaskSpec(id=task_id, command_line="true") for task_id in ids])

    localbatch.app.faults = Faults()
    assert sorted(result.added) == ids and result.failures == ()
    listed = [task.id for task in gateway.list_tasks("job-1")]
    assert len(listed) == 1050 and sorted(listed) == ids
    assert gateway.get_task_counts("job-1").active == 1050


def test_add_tasks_gives_up_with_transient_when_the_budget_runs_out(gateway, localbatch):
    gateway.create_job(JobSpec(id="job-1", pool_id="nowhere"))
    localbatch.app.faults = Faults(rate=1.0, status=503, retry_after=1)

    with pytest.raises(Transient) as raised:
        gateway.add_tasks("job-1", [TaskSpec(id=task_id, command_line="true") for task_id in task_ids(250)],
                          budget_seconds=3)

    localbatch.app.faults = Faults()
    assert (raised.value.code, raised.value.status, raised.value.retry_after) == ("ServerBusy", 503, 1)
    assert "0 of 250" in raised.value.message
    assert list(gateway.list_tasks("job-1")) == []


def test_add_tasks_reports_an_invalid_task_and_adds_the_others(gateway):
    gateway.create_job(JobSpec(id="job-1", pool_id="nowhere"))
    too_long = "x" * 65   # Batch ids are at most 64 characters
    specs = [TaskSpec(id=task_id, command_line="true") for task_id in task_ids(150)]
    specs.insert(120, TaskSpec(id=too_long, command_line="true"))

    result = gateway.add_tasks("job-1", specs)

    assert sorted(result.added) == task_ids(150)
    [failure] = result.failures
    assert failure.id == too_long and failure.code == "InvalidPropertyValue" and failure.message
    assert sorted(task.id for task in gateway.list_tasks("job-1")) == task_ids(150)


def test_add_tasks_again_counts_tasks_already_there_as_added(gateway):
    gateway.create_job(JobSpec(id="job-1", pool_id="nowhere"))
    specs = [TaskSpec(id=task_id, command_line="true") for task_id in task_ids(120)]
    gateway.add_tasks("job-1", specs[:70])

    result = gateway.add_tasks("job-1", specs)

    assert sorted(result.added) == task_ids(120) and result.failures == ()
    assert len(list(gateway.list_tasks("job-1"))) == 120


def test_add_tasks_splits_requests_batch_finds_too_large(gateway):
    gateway.create_job(JobSpec(id="job-1", pool_id="nowhere"))
    # 100 of these make a request over Batch's 1 MB limit; one alone is over it too.
    big = [TaskSpec(id=task_id, command_line="true", environment={"PAYLOAD": "x" * 15_000})
           for task_id in task_ids(100)]
    huge = TaskSpec(id="huge", command_line="true", environment={"PAYLOAD": "x" * 1_100_000})

    result = gateway.add_tasks("job-1", [*big, huge])

    assert sorted(result.added) == task_ids(100)
    assert [(failure.id, failure.code) for failure in result.failures] == [("huge", "RequestBodyTooLarge")]
    assert len(list(gateway.list_tasks("job-1"))) == 100


def test_add_tasks_to_a_missing_job_raises_not_found(gateway):
    with pytest.raises(NotFound) as raised:
        gateway.add_tasks("no-such-job", [TaskSpec(id=task_id, command_line="true") for task_id in task_ids(250)])

    assert raised.value.code == "JobNotFound"


def test_add_tasks_to_a_completed_job_is_rejected(gateway):
    gateway.create_job(JobSpec(id="job-1", pool_id="nowhere"))
    gateway.terminate_job("job-1", reason="done")
    wait_for(lambda: gateway.get_job("job-1").state == "completed", message="job completed")

    with pytest.raises(Rejected) as raised:
        gateway.add_tasks("job-1", [TaskSpec(id="t", command_line="true")])

    assert raised.value.code == "JobCompleted"


# --- files ---------------------------------------------------------------------------------------

@pytest.fixture
def finished_task(gateway):
    make_pool(gateway, "pool-1")
    gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
    gateway.add_tasks("job-1", [TaskSpec(id="t", command_line=shell("printf 0123456789; mkdir out; echo x > out/a"))])
    return wait_task_completed(gateway, "job-1", "t")


def test_read_task_file_reads_byte_ranges(gateway, finished_task):
    assert gateway.read_task_file("job-1", "t", "stdout.txt") == b"0123456789"
    assert gateway.read_task_file("job-1", "t", "stdout.txt", start=2, length=4) == b"2345"
    assert gateway.read_task_file("job-1", "t", "stdout.txt", start=7) == b"789"
    assert gateway.read_task_file("job-1", "t", "stdout.txt", start=4, length=0) == b""
    assert gateway.get_task_file_size("job-1", "t", "stdout.txt") == 10


def test_list_task_files_lists_files_and_folders(gateway, finished_task):
    files = {file.name: file for file in gateway.list_task_files("job-1", "t")}

    assert files["stdout.txt"].size == 10 and not files["stdout.txt"].is_directory
    assert files["stdout.txt"].last_modified.tzinfo is not None
    assert files["wd"].is_directory and files["wd/out/a"].size == 2
    assert "wd/out/a" not in {file.name for file in gateway.list_task_files("job-1", "t", recursive=False)}


def test_missing_task_file_is_not_found(gateway, finished_task):
    with pytest.raises(NotFound) as raised:
        gateway.read_task_file("job-1", "t", "nope.txt")
    assert raised.value.code == "FileNotFound"
    with pytest.raises(NotFound):
        gateway.get_task_file_size("job-1", "t", "nope.txt")


def test_files_of_a_task_that_never_ran_are_rejected_with_batch_code(gateway):
    gateway.create_job(JobSpec(id="job-1", pool_id="nowhere"))
    gateway.add_tasks("job-1", [TaskSpec(id="t", command_line="true")])

    with pytest.raises(Rejected) as raised:
        gateway.read_task_file("job-1", "t", "stdout.txt")

    # A file download is streamed, so the SDK raises without reading the body; the gateway reads it.
    assert raised.value.code == "TaskFilesUnavailable"


def test_node_files_are_listed_and_read_by_range(gateway, finished_task):
    node_id = finished_task.node_id
    path = "workitems/job-1/job-1/t/stdout.txt"

    assert path in {file.name for file in gateway.list_node_files("pool-1", node_id)}
    assert gateway.read_node_file("pool-1", node_id, path, start=3, length=3) == b"345"
    assert gateway.read_node_file("pool-1", node_id, path) == b"0123456789"
    assert gateway.get_node_file_size("pool-1", node_id, path) == 10
    top_level = {file.name for file in gateway.list_node_files("pool-1", node_id, recursive=False)}
    assert {"shared", "startup", "workitems"} <= top_level and path not in top_level


# --- errors --------------------------------------------------------------------------------------

def test_wrong_key_is_auth_failed_and_the_message_carries_no_key(localbatch):
    wrong_key = base64.b64encode(b"not the key of this account!").decode()
    with BatchGateway(localbatch.endpoint, localbatch.account_name, wrong_key) as gateway:
        with pytest.raises(AuthFailed) as raised:
            gateway.list_pools()

    assert (raised.value.code, raised.value.status) == ("AuthenticationFailed", 403)
    assert wrong_key not in str(raised.value) and localbatch.account_key not in str(raised.value)


def test_busy_service_is_transient_with_retry_after(gateway, localbatch):
    localbatch.app.faults = Faults(rate=1.0, status=503, retry_after=1)

    with pytest.raises(Transient) as raised:
        gateway.get_pool("pool-1")

    assert (raised.value.code, raised.value.status, raised.value.retry_after) == ("ServerBusy", 503, 1)


def test_throttled_list_is_transient(gateway, localbatch):
    localbatch.app.faults = Faults(rate=1.0, status=429, retry_after=1)

    with pytest.raises(Transient) as raised:
        list(gateway.list_tasks("job-1"))

    assert raised.value.status == 429


def test_unreachable_service_is_transient():
    with BatchGateway("http://127.0.0.1:9", "account", base64.b64encode(b"key").decode()) as gateway:
        with pytest.raises(Transient) as raised:
            gateway.list_jobs()

    assert raised.value.status is None and "could not be reached" in raised.value.message


def test_a_refusal_names_the_property_and_the_value_batch_refused(gateway):
    prefix = "sub-" + "0123456789abcdef" * 2   # a job id's 36 characters: Batch allows 20 in a prefix
    with pytest.raises(Rejected) as raised:
        gateway.create_job(JobSpec(id="job-1", auto_pool=PoolSpec(id=prefix, vm_size="standard_d2s_v3", image=UBUNTU)))

    error = raised.value
    assert (error.code, error.status) == ("InvalidPropertyValue", 400)
    assert dict(error.values)["PropertyName"] == "poolInfo.autoPoolSpecification.autoPoolIdPrefix"
    assert dict(error.values)["PropertyValue"] == prefix
    assert error.message == ("The value provided for one of the properties in the request body is invalid: "
                             f"poolInfo.autoPoolSpecification.autoPoolIdPrefix = '{prefix}' "
                             "(At most 20 letters, digits, hyphens and underscores).")


def test_a_refused_task_names_the_property_and_value_with_secrets_redacted(gateway):
    gateway.create_job(JobSpec(id="job-1", pool_id="nowhere"))
    leaving = "../up?sig=c2VjcmV0"   # a path Batch refuses, carrying what looks like a SAS signature
    bad = TaskSpec(id="bad", command_line="true",
                   resource_files=(ResourceFileSpec(http_url="https://acct.blob.core.windows.net/c/f?sig=c2VjcmV0",
                                                    file_path=leaving),))

    result = gateway.add_tasks("job-1", [TaskSpec(id="good", command_line="true"), bad])

    assert list(result.added) == ["good"]
    [failure] = result.failures
    assert failure.code == "InvalidPropertyValue"
    assert "resourceFiles[0].filePath = '../up?sig=REDACTED'" in failure.message
    assert "c2VjcmV0" not in failure.message


def test_a_refused_value_is_redacted_and_shortened_in_the_error(gateway):
    command = "echo https://acct.blob.core.windows.net/c/f?sig=c2VjcmV0 " + "x" * 9000   # over Batch's 8192
    with pytest.raises(Rejected) as raised:
        gateway.create_pool(PoolSpec(id="p", vm_size="standard_d2s_v3", image=UBUNTU,
                                     start_task_command_line=command))

    error = raised.value
    assert "startTask.commandLine = 'echo https://acct.blob.core.windows.net/c/f?sig=REDACTED" in error.message
    assert "c2VjcmV0" not in error.message and "c2VjcmV0" not in repr(error.values)
    assert len(error.message) < 400


def test_redact_removes_sas_signatures_and_keys():
    text = ("https://acct.blob.core.windows.net/c/f?sv=2024&sig=abc%2Fdef&se=x "
            "Authorization: SharedKey acct:c2lnbmF0dXJl AccountKey=a2V5;BlobEndpoint=x")

    redacted = redact(text)

    assert "abc%2Fdef" not in redacted and "c2lnbmF0dXJl" not in redacted and "a2V5" not in redacted
    assert "sig=REDACTED" in redacted and "sv=2024" in redacted
