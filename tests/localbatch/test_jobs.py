"""Jobs against localbatch through the real azure-batch SDK: lifecycle, terminate and delete,
completion policies, task counts, job preparation and release tasks, and auto pools."""

import os
import time

import pytest
from azure.batch import models
from azure.batch.models._models import BatchJobTerminateOptions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.core.rest import HttpRequest

from .helpers import make_job, make_pool, pid_alive, sh, task, wait_for, wait_task_completed

POLL = {"polling_interval": 0.1}   # the SDK's pollers default to 5 s between polls


def read_task_file(client, job_id: str, task_id: str, path: str = "stdout.txt") -> str:
    return b"".join(client.download_task_file(job_id, task_id, path)).decode()


def terminate(client, job_id: str, reason: str = "UserTerminate") -> None:
    # An options object is required: without one the SDK fails client-side (reference §4.2).
    client.begin_terminate_job(job_id, BatchJobTerminateOptions(termination_reason=reason), **POLL).result()


# -- create, get, list, update ---------------------------------------------------------------

def test_create_get_and_list_jobs(batch_client):
    make_pool(batch_client)
    statuses = []
    batch_client.create_job(
        models.BatchJobCreateOptions(
            id="job-1", display_name="First job", priority=7, pool_info=models.BatchPoolInfo(pool_id="pool-1"),
            constraints=models.BatchJobConstraints(max_task_retry_count=3),
            metadata=[models.BatchMetadataItem(name="owner", value="alice")]),
        raw_response_hook=lambda response: statuses.append(response.http_response.status_code))
    make_job(batch_client, "job-2", priority=-5)

    assert statuses == [201]
    job = batch_client.get_job("job-1")
    assert job.id == "job-1"
    assert job.display_name == "First job"
    assert job.state == "active"
    assert job.priority == 7
    assert job.pool_info.pool_id == "pool-1"
    assert job.execution_info.pool_id == "pool-1"
    assert job.execution_info.start_time is not None
    assert job.execution_info.end_time is None
    assert job.constraints.max_task_retry_count == 3
    assert job.all_tasks_complete_mode == "noaction"
    assert job.task_failure_mode == "noaction"
    assert job.uses_task_dependencies is False
    assert [(m.name, m.value) for m in job.metadata] == [("owner", "alice")]
    assert job.url.endswith("/jobs/job-1")
    assert job.etag and job.creation_time and job.last_modified

    assert [j.id for j in batch_client.list_jobs()] == ["job-1", "job-2"]
    assert [j.id for j in batch_client.list_jobs(filter="priority lt 0")] == ["job-2"]
    selected = list(batch_client.list_jobs(select=["id", "state"]))
    assert [(j.id, j.state, j.priority) for j in selected] == [("job-1", "active", None), ("job-2", "active", None)]


def test_update_job_priority_and_all_tasks_complete_policy(batch_client):
    # The pool does not exist, so the job's task stays active and the job cannot complete meanwhile.
    make_job(batch_client, pool_id="no-such-pool")
    batch_client.create_task("job-1", task("t1", "true"))
    before = batch_client.get_job("job-1")

    batch_client.update_job("job-1", models.BatchJobUpdateOptions(priority=100, all_tasks_complete_mode="terminatejob"))

    job = batch_client.get_job("job-1")
    assert job.priority == 100
    assert job.all_tasks_complete_mode == "terminatejob"
    assert job.etag != before.etag
    assert job.state == "active"

    with pytest.raises(HttpResponseError) as raised:
        batch_client.update_job("job-1", models.BatchJobUpdateOptions(all_tasks_complete_mode="noaction"))
    assert raised.value.status_code == 400
    assert raised.value.error.code == "InvalidPropertyValue"
    assert batch_client.get_job("job-1").all_tasks_complete_mode == "terminatejob"


def test_duplicate_job_id_is_job_exists_whatever_the_case(batch_client):
    make_job(batch_client, "Job-A")
    for job_id in ("Job-A", "job-a"):
        with pytest.raises(ResourceExistsError) as raised:
            make_job(batch_client, job_id)
        assert raised.value.status_code == 409
        assert raised.value.error.code == "JobExists"
    assert [j.id for j in batch_client.list_jobs()] == ["Job-A"]


def test_job_on_missing_pool_is_accepted_and_its_tasks_wait_until_the_pool_exists(batch_client):
    make_job(batch_client, pool_id="later-pool")
    batch_client.create_task("job-1", task("t1", "echo hello"))
    time.sleep(0.5)   # several scheduler passes
    waiting = batch_client.get_task("job-1", "t1")
    assert waiting.state == "active"
    assert waiting.node_info is None

    make_pool(batch_client, "later-pool")
    done = wait_task_completed(batch_client, "job-1", "t1")
    assert done.execution_info.exit_code == 0
    assert done.node_info.pool_id == "later-pool"


def test_get_missing_job_is_job_not_found(batch_client):
    with pytest.raises(ResourceNotFoundError) as raised:
        batch_client.get_job("nope")
    assert raised.value.error.code == "JobNotFound"


# -- terminate and delete --------------------------------------------------------------------

def test_terminate_job_kills_running_tasks_and_refuses_new_ones(batch_client):
    make_pool(batch_client)
    make_job(batch_client)
    batch_client.create_task("job-1", task("long", sh("echo $$; exec sleep 30")))
    batch_client.create_task("job-1", task("queued", "true"))   # the single slot is busy: stays active
    wait_for(lambda: batch_client.get_task("job-1", "long").state == "running", message="long running")
    pid = int(wait_for(lambda: read_task_file(batch_client, "job-1", "long").strip(), message="pid printed"))
    assert pid_alive(pid)

    terminate(batch_client, "job-1", "enough")

    job = batch_client.get_job("job-1")
    assert job.state == "completed"
    assert job.previous_state in ("active", "terminating")
    assert job.execution_info.termination_reason == "enough"
    assert job.execution_info.end_time is not None
    long = batch_client.get_task("job-1", "long")
    assert long.state == "completed"
    assert long.execution_info.failure_info.code == "TaskEnded"
    assert long.execution_info.result == "failure"
    wait_for(lambda: not pid_alive(pid), timeout=5, message=f"pid {pid} gone")
    assert batch_client.get_task("job-1", "queued").state == "active"

    with pytest.raises(ResourceExistsError) as raised:
        batch_client.create_task("job-1", task("late", "true"))
    assert raised.value.error.code == "JobCompleted"
    with pytest.raises(ResourceExistsError) as raised:
        terminate(batch_client, "job-1")
    assert raised.value.error.code == "JobCompleted"


def test_terminate_without_reason_is_user_terminate(batch_client):
    # The SDK cannot send a terminate without a reason, so send the bare REST call through its pipeline.
    make_job(batch_client, pool_id="no-pool")
    response = batch_client.send_request(HttpRequest("POST", "/jobs/job-1/terminate?api-version=2025-06-01", json={}))
    assert response.status_code == 202
    job = wait_for(lambda: (j := batch_client.get_job("job-1")).state == "completed" and j, message="job completed")
    assert job.state == "completed"
    assert job.execution_info.termination_reason == "UserTerminate"


def test_delete_job_removes_it_and_its_task_folders(batch_client):
    make_pool(batch_client)
    make_job(batch_client)
    batch_client.create_task("job-1", task("t1", sh("echo data > out.txt; echo $AZ_BATCH_NODE_ROOT_DIR")))
    batch_client.create_task("job-1", task("t2", "sleep 30"))
    done = wait_task_completed(batch_client, "job-1", "t1")
    root = read_task_file(batch_client, "job-1", "t1").strip()
    job_folder = os.path.join(root, "workitems", "job-1")
    assert os.path.isfile(os.path.join(job_folder, "job-1", "t1", "wd", "out.txt"))
    wait_for(lambda: batch_client.get_task("job-1", "t2").state == "running", message="t2 running")
    node_id = done.node_info.node_id

    batch_client.begin_delete_job("job-1", **POLL).result()

    with pytest.raises(ResourceNotFoundError) as raised:
        batch_client.get_job("job-1")
    assert raised.value.error.code == "JobNotFound"
    with pytest.raises(ResourceNotFoundError) as raised:
        batch_client.get_task("job-1", "t1")
    assert raised.value.error.code == "JobNotFound"
    assert not os.path.exists(job_folder)
    names = [f.name for f in batch_client.list_node_files("pool-1", node_id, recursive=True)]
    assert "workitems" in names
    assert not [n for n in names if n.startswith("workitems/job-1")]
    assert [j.id for j in batch_client.list_jobs()] == []
    # The node is free again for other work.
    wait_for(lambda: batch_client.get_node("pool-1", node_id).state == "idle", message="node idle")


# -- completion policies ---------------------------------------------------------------------

def test_all_tasks_complete_set_after_adding_tasks_completes_the_job(batch_client):
    make_pool(batch_client, slots=2)
    make_job(batch_client)
    batch_client.create_tasks("job-1", [task("a", "sleep 0.3"), task("b", sh("exit 4"))])
    batch_client.update_job("job-1", models.BatchJobUpdateOptions(all_tasks_complete_mode="terminatejob"))

    job = wait_for(lambda: (j := batch_client.get_job("job-1")).state == "completed" and j, message="job completed")
    assert job.execution_info.termination_reason == "AllTasksComplete"
    tasks = {t.id: t for t in batch_client.list_tasks("job-1")}
    assert {t.state for t in tasks.values()} == {"completed"}
    assert tasks["b"].execution_info.exit_code == 4
    # The job completed only after its last task did.
    assert job.execution_info.end_time >= max(t.execution_info.end_time for t in tasks.values())


def test_task_failure_with_perform_exit_options_terminates_the_job(batch_client):
    make_pool(batch_client)
    make_job(batch_client, task_failure_mode="performexitoptionsjobaction")
    batch_client.create_task("job-1", task("bad", sh("exit 3")))

    job = wait_for(lambda: (j := batch_client.get_job("job-1")).state == "completed" and j, message="job completed")
    assert job.execution_info.termination_reason == "TaskFailed"
    assert batch_client.get_task("job-1", "bad").execution_info.exit_code == 3


def test_task_failure_without_the_policy_leaves_the_job_active(batch_client):
    make_pool(batch_client)
    make_job(batch_client)
    batch_client.create_task("job-1", task("bad", sh("exit 3")))
    wait_task_completed(batch_client, "job-1", "bad")
    time.sleep(0.3)
    assert batch_client.get_job("job-1").state == "active"


# -- task counts -----------------------------------------------------------------------------

def test_task_counts_and_slot_counts(batch_client):
    make_pool(batch_client, slots=3)
    make_job(batch_client)
    batch_client.create_task("job-1", task("ok", "true"))
    batch_client.create_task("job-1", task("bad", sh("exit 2")))
    batch_client.create_task("job-1", task("long", "sleep 30", required_slots=2))
    batch_client.create_task("job-1", task("waiting", "true", required_slots=2))   # never fits next to "long"

    wait_for(lambda: batch_client.get_task("job-1", "long").state == "running", message="long running")
    wait_for(lambda: batch_client.get_job_task_counts("job-1").task_counts.completed == 2, message="2 completed")
    time.sleep(0.2)
    counts = batch_client.get_job_task_counts("job-1")
    c, s = counts.task_counts, counts.task_slot_counts
    assert (c.active, c.running, c.completed, c.succeeded, c.failed) == (1, 1, 2, 1, 1)
    assert (s.active, s.running, s.completed, s.succeeded, s.failed) == (2, 2, 2, 1, 1)

    batch_client.terminate_task("job-1", "long")
    wait_task_completed(batch_client, "job-1", "waiting")
    c = batch_client.get_job_task_counts("job-1").task_counts
    assert (c.active, c.running, c.completed, c.succeeded, c.failed) == (0, 0, 4, 2, 2)


# -- job preparation and release -------------------------------------------------------------

PREP = ("echo prep-ran >> $AZ_BATCH_NODE_SHARED_DIR/prep-marker; echo from-prep > prepared.txt")


def test_job_preparation_runs_once_per_node_before_the_first_task(batch_client):
    make_pool(batch_client, slots=2)
    make_job(batch_client, job_preparation_task=models.BatchJobPreparationTask(command_line=sh(PREP)))
    check = ('cat $AZ_BATCH_NODE_SHARED_DIR/prep-marker; echo "dir=$AZ_BATCH_JOB_PREP_DIR"; '
             'cat $AZ_BATCH_JOB_PREP_WORKING_DIR/prepared.txt')
    batch_client.create_tasks("job-1", [task(f"t{i}", sh(check)) for i in range(4)])

    done = [wait_task_completed(batch_client, "job-1", f"t{i}") for i in range(4)]
    node_id = done[0].node_info.node_id
    root = None
    for t in done:
        assert t.execution_info.exit_code == 0
        lines = read_task_file(batch_client, "job-1", t.id).splitlines()
        assert lines[0] == "prep-ran"            # the marker existed, written exactly once
        assert lines[1].startswith("dir=") and lines[1].endswith("/workitems/job-1/job-1/jobpreparation")
        assert lines[2] == "from-prep"
        root = lines[1][4:-len("/workitems/job-1/job-1/jobpreparation")]
    with open(os.path.join(root, "shared", "prep-marker")) as marker:
        assert marker.read() == "prep-ran\n"

    rows = list(batch_client.list_job_preparation_and_release_task_status("job-1"))
    assert len(rows) == 1
    row = rows[0]
    assert (row.pool_id, row.node_id) == ("pool-1", node_id)
    assert row.node_url.endswith(f"/pools/pool-1/nodes/{node_id}")
    prep = row.job_preparation_task_execution_info
    assert prep.state == "completed"
    assert prep.exit_code == 0
    assert prep.result == "success"
    assert prep.retry_count == 0
    assert prep.task_root_directory == "workitems/job-1/job-1/jobpreparation"
    assert prep.end_time <= min(t.execution_info.start_time for t in done)
    assert row.job_release_task_execution_info is None


def test_prep_status_of_a_job_without_preparation_task_is_409(batch_client):
    make_job(batch_client, pool_id="no-pool")
    with pytest.raises(ResourceExistsError) as raised:
        list(batch_client.list_job_preparation_and_release_task_status("job-1"))
    assert raised.value.status_code == 409
    assert raised.value.error.code == "JobPreparationTaskNotSpecified"


def test_failing_preparation_keeps_the_jobs_tasks_off_that_node(batch_client):
    make_pool(batch_client)
    make_job(batch_client, job_preparation_task=models.BatchJobPreparationTask(command_line=sh("exit 7")))
    batch_client.create_task("job-1", task("t1", sh("echo ran >> $AZ_BATCH_NODE_SHARED_DIR/t1-ran")))

    def prep_done():
        rows = list(batch_client.list_job_preparation_and_release_task_status("job-1"))
        info = rows[0].job_preparation_task_execution_info if rows else None
        return info if info and info.state == "completed" else None
    prep = wait_for(prep_done, message="prep completed")
    assert prep.exit_code == 7
    assert prep.result == "failure"
    assert prep.failure_info.code == "FailureExitCode"

    time.sleep(0.5)
    t1 = batch_client.get_task("job-1", "t1")
    assert t1.state == "active"
    assert t1.node_info is None
    # The node still takes other jobs' tasks, and t1 never ran there.
    make_job(batch_client, "job-2")
    batch_client.create_task("job-2", task("other", sh("ls $AZ_BATCH_NODE_SHARED_DIR")))
    other = wait_task_completed(batch_client, "job-2", "other")
    assert other.execution_info.exit_code == 0
    assert "t1-ran" not in read_task_file(batch_client, "job-2", "other")
    assert batch_client.get_task("job-1", "t1").state == "active"


def test_release_task_runs_when_the_job_is_terminated(batch_client):
    make_pool(batch_client)
    make_job(batch_client,
             job_preparation_task=models.BatchJobPreparationTask(command_line=sh(PREP)),
             job_release_task=models.BatchJobReleaseTask(
                 command_line=sh("sleep 0.3; echo released:$AZ_BATCH_JOB_ID >> $AZ_BATCH_NODE_SHARED_DIR/release")))
    batch_client.create_task("job-1", task("t1", sh("echo $AZ_BATCH_NODE_SHARED_DIR")))
    shared = read_task_file(batch_client, "job-1", wait_task_completed(batch_client, "job-1", "t1").id).strip()
    assert not os.path.exists(os.path.join(shared, "release"))   # not before the job ends

    terminate(batch_client, "job-1")

    job = batch_client.get_job("job-1")
    assert job.state == "completed"
    with open(os.path.join(shared, "release")) as marker:
        assert marker.read() == "released:job-1\n"
    [row] = list(batch_client.list_job_preparation_and_release_task_status("job-1"))
    release = row.job_release_task_execution_info
    assert release.state == "completed"
    assert release.exit_code == 0
    assert release.result == "success"
    assert release.task_root_directory == "workitems/job-1/job-1/jobrelease"
    # The job is completed only once its release tasks are done.
    assert job.execution_info.end_time >= release.end_time


# -- auto pools ------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", ["a" * 21, "sub-" + "0123456789abcdef" * 2, "has space"])
def test_an_auto_pool_id_prefix_over_20_characters_or_not_an_id_is_refused_naming_the_property(batch_client, prefix):
    # Batch's limit: "The prefix can be up to 20 characters long" (BatchAutoPoolSpecification.autoPoolIdPrefix).
    spec = models.BatchAutoPoolSpecification(
        auto_pool_id_prefix=prefix, pool_lifetime_option="job",
        pool=models.BatchPoolSpecification(vm_size="standard_d2s_v3", target_dedicated_nodes=1))

    with pytest.raises(HttpResponseError) as caught:
        batch_client.create_job(models.BatchJobCreateOptions(id="job-1", pool_info=models.BatchPoolInfo(
            auto_pool_specification=spec)))

    assert (caught.value.status_code, caught.value.error.code) == (400, "InvalidPropertyValue")
    details = {d.code: d.message for d in caught.value.error.details}
    assert details["PropertyName"] == "poolInfo.autoPoolSpecification.autoPoolIdPrefix"
    assert details["PropertyValue"] == prefix
    assert list(batch_client.list_jobs()) == [] and list(batch_client.list_pools()) == []


def test_an_auto_pool_id_prefix_of_20_characters_is_taken(batch_client):
    spec = models.BatchAutoPoolSpecification(
        auto_pool_id_prefix="a" * 20, pool_lifetime_option="job",
        pool=models.BatchPoolSpecification(vm_size="standard_d2s_v3", target_dedicated_nodes=0))
    batch_client.create_job(models.BatchJobCreateOptions(id="job-1", pool_info=models.BatchPoolInfo(
        auto_pool_specification=spec)))

    assert batch_client.get_job("job-1").execution_info.pool_id.startswith("a" * 20)


def test_auto_pool_job_creates_a_pool_runs_on_it_and_deletes_it_after_the_job(batch_client):
    spec = models.BatchAutoPoolSpecification(
        auto_pool_id_prefix="auto", pool_lifetime_option="job",
        pool=models.BatchPoolSpecification(vm_size="standard_d2s_v3", target_dedicated_nodes=1))
    batch_client.create_job(models.BatchJobCreateOptions(id="job-1", pool_info=models.BatchPoolInfo(
        auto_pool_specification=spec)))

    pool_id = batch_client.get_job("job-1").execution_info.pool_id
    assert pool_id and pool_id.startswith("auto")
    assert batch_client.get_pool(pool_id).vm_size == "standard_d2s_v3"
    assert [p.id for p in batch_client.list_pools()] == [pool_id]

    batch_client.create_task("job-1", task("t1", sh("echo $AZ_BATCH_POOL_ID")))
    done = wait_task_completed(batch_client, "job-1", "t1")
    assert done.node_info.pool_id == pool_id
    assert read_task_file(batch_client, "job-1", "t1").strip() == pool_id

    batch_client.update_job("job-1", models.BatchJobUpdateOptions(all_tasks_complete_mode="terminatejob"))
    job = wait_for(lambda: (j := batch_client.get_job("job-1")).state == "completed" and j, message="job completed")
    assert job.execution_info.termination_reason == "AllTasksComplete"

    def pool_gone():
        try:
            batch_client.get_pool(pool_id)
        except ResourceNotFoundError as exc:
            return exc.error.code
        return None
    assert wait_for(pool_gone, message="auto pool deleted") == "PoolNotFound"
    assert list(batch_client.list_pools()) == []


def test_terminating_a_job_stops_its_running_preparation_task(batch_client):
    make_pool(batch_client)
    batch_client.create_job(models.BatchJobCreateOptions(
        id="job-1", pool_info=models.BatchPoolInfo(pool_id="pool-1"),
        job_preparation_task=models.BatchJobPreparationTask(
            command_line=sh("echo $$ > $AZ_BATCH_NODE_SHARED_DIR/prep.pid; exec sleep 600"))))
    batch_client.create_task("job-1", task("t1", "true"))
    wait_for(lambda: batch_client.get_task("job-1", "t1").state == "preparing", message="t1 preparing")
    node_id = batch_client.get_task("job-1", "t1").node_info.node_id
    pid_text = wait_for(lambda: read_node_text(batch_client, node_id, "shared/prep.pid"), message="prep pid written")
    pid = int(pid_text)
    assert pid_alive(pid)

    terminate(batch_client, "job-1")

    assert batch_client.get_job("job-1").state == "completed"
    wait_for(lambda: not pid_alive(pid), timeout=5, message=f"preparation pid {pid} gone")
    assert batch_client.get_task("job-1", "t1").state != "running"


def read_node_text(client, node_id: str, path: str) -> str:
    try:
        return b"".join(client.download_node_file("pool-1", node_id, path)).decode().strip()
    except ResourceNotFoundError:
        return ""
