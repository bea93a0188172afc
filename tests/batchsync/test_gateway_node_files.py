"""The gateway's node-file reads against localbatch through the real SDK: listing under a prefix, sizes and byte
ranges of the start task's output, where a job preparation task ran (and its release task, once the job ended),
and the errors of a node that is gone."""

import pytest
from azure.batch import models

from batchsync.gateway import BatchGateway, NotFound
from tests.localbatch.helpers import make_job, make_pool, task, wait_for, wait_task_completed
from tests.logfiles import shell_quote


@pytest.fixture
def gateway(localbatch):
    with BatchGateway(localbatch.endpoint, localbatch.account_name, localbatch.account_key) as gateway:
        yield gateway


def start_task(script: str) -> models.BatchStartTask:
    return models.BatchStartTask(command_line="/bin/sh -c " + shell_quote(script), wait_for_success=True)


def only_node(batch_client, pool_id: str, state: str) -> str:
    nodes = wait_for(lambda: [n for n in batch_client.list_nodes(pool_id) if n.state == state],
                     message=f"a node {state}")
    return nodes[0].id


def test_the_start_tasks_files_are_listed_under_a_prefix_and_read_in_ranges(batch_client, gateway):
    make_pool(batch_client, "setup", nodes=1, start_task=start_task(
        "printf 'line one\\nline two\\n'; echo 'apt failed' >&2; exit 4"))
    node_id = only_node(batch_client, "setup", "starttaskfailed")

    files = gateway.list_node_files("setup", node_id, prefix="startup/")

    names = {f.name for f in files if not f.is_directory}
    assert {"startup/stdout.txt", "startup/stderr.txt"} <= names
    assert all(f.name.startswith("startup/") for f in files)
    assert gateway.get_node_file_size("setup", node_id, "startup/stdout.txt") == len("line one\nline two\n")
    assert gateway.read_node_file("setup", node_id, "startup/stdout.txt", start=5, length=8) == b"one\nline"
    assert gateway.read_node_file("setup", node_id, "startup/stderr.txt") == b"apt failed\n"


def test_a_prefix_with_a_quote_is_sent_escaped_and_matches_nothing(batch_client, gateway):
    make_pool(batch_client, "plain", nodes=1)
    node_id = only_node(batch_client, "plain", "idle")
    assert gateway.list_node_files("plain", node_id, prefix="startup/') or (name ne '") == []


def test_where_the_job_preparation_task_ran_and_its_folder(batch_client, gateway):
    make_pool(batch_client, "prep-pool", nodes=1)
    node_id = only_node(batch_client, "prep-pool", "idle")
    make_job(batch_client, "with-prep", "prep-pool", job_preparation_task=models.BatchJobPreparationTask(
        command_line="/bin/sh -c " + shell_quote("echo fetching reference data; echo 'warning: slow mirror' >&2")))
    make_job(batch_client, "without-prep", "prep-pool")
    batch_client.create_task("with-prep", task("t1", "echo hi"))
    wait_task_completed(batch_client, "with-prep", "t1")

    [status] = gateway.list_job_preparation_status("with-prep")

    assert (status.pool_id, status.node_id, status.state, status.result, status.exit_code) == (
        "prep-pool", node_id, "completed", "success", 0)
    assert status.task_root_directory == "workitems/with-prep/job-1/jobpreparation"
    out = gateway.read_node_file("prep-pool", node_id, f"{status.task_root_directory}/stdout.txt")
    assert out == b"fetching reference data\n"
    assert gateway.list_job_preparation_status("without-prep") == []
    # No release task ran (the job has none, and is still active).
    assert status.release is None


def test_the_release_task_is_reported_on_the_node_where_preparation_ran_in_its_sibling_folder(batch_client, gateway):
    make_pool(batch_client, "release-pool", nodes=1)
    node_id = only_node(batch_client, "release-pool", "idle")
    make_job(batch_client, "with-release", "release-pool",
             job_preparation_task=models.BatchJobPreparationTask(command_line="/bin/sh -c 'echo prep'"),
             job_release_task=models.BatchJobReleaseTask(command_line="/bin/sh -c 'echo tidying up; exit 2'"))
    batch_client.create_task("with-release", task("t1", "echo hi"))
    wait_task_completed(batch_client, "with-release", "t1")
    assert gateway.list_job_preparation_status("with-release")[0].release is None    # not before the job ends

    gateway.terminate_job("with-release", reason="done")
    wait_for(lambda: batch_client.get_job("with-release").state == "completed", message="the job completed")

    [status] = gateway.list_job_preparation_status("with-release")
    release = status.release
    assert (release.state, release.result, release.exit_code, release.failure_code) == (
        "completed", "failure", 2, "FailureExitCode")
    assert release.task_root_directory == "workitems/with-release/job-1/jobrelease"
    assert release.start_time <= release.end_time
    out = gateway.read_node_file("release-pool", node_id, f"{release.task_root_directory}/stdout.txt")
    assert out == b"tidying up\n"


def test_a_node_that_left_the_pool_is_not_found_with_batchs_code(batch_client, gateway):
    make_pool(batch_client, "shrinking", nodes=1)
    node_id = only_node(batch_client, "shrinking", "idle")
    batch_client.begin_resize_pool("shrinking", models.BatchPoolResizeOptions(target_dedicated_nodes=0)).result()
    wait_for(lambda: not list(batch_client.list_nodes("shrinking")), message="the node gone")

    with pytest.raises(NotFound) as listed:
        gateway.list_node_files("shrinking", node_id, prefix="startup/")
    assert listed.value.code == "NodeNotFound"
    with pytest.raises(NotFound):
        gateway.get_node_file_size("shrinking", node_id, "startup/stdout.txt")
