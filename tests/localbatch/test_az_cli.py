"""The `az batch` CLI, a real Batch client nobody here wrote, against localbatch: pools, jobs, tasks, task files
and task counts, round trip. azure-cli comes from PyPI in its own cached virtualenv (tests/azcli.py)."""

import json
import subprocess

import pytest

from localbatch import API_VERSION
from tests.azcli import AZURE_CLI_VERSION, az_environment, az_executable
from tests.localbatch.helpers import signed_send, wait_for

# The first test may build azure-cli's virtualenv (a few minutes on a busy machine); each az call has its own timeout.
pytestmark = pytest.mark.timeout(900)

UBUNTU = ["--image", "canonical:0001-com-ubuntu-server-jammy:22_04-lts",
          "--node-agent-sku-id", "batch.node.ubuntu 22.04"]


@pytest.fixture(scope="module")
def az_path():
    try:
        return az_executable()
    except RuntimeError as error:
        pytest.fail(f"azure-cli {AZURE_CLI_VERSION} is needed for this test and could not be installed: {error}")


@pytest.fixture
def az(az_path, localbatch, tmp_path):
    """Run `az batch …` against localbatch with the account key on the command line; JSON out, parsed."""
    environment = az_environment(tmp_path / "az-config")
    account = ["--account-name", localbatch.account_name, "--account-key", localbatch.account_key,
               "--account-endpoint", localbatch.endpoint]

    def run(*args: str, check: bool = True):
        done = subprocess.run([str(az_path), "batch", *args, *account, "--output", "json"], env=environment,
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise AssertionError(f"az batch {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
        return json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else done
    return run


def test_a_pool_is_created_shown_resized_and_deleted(az):
    az("pool", "create", "--id", "az-pool", "--vm-size", "standard_d2s_v3", "--target-dedicated-nodes", "1", *UBUNTU)

    shown = wait_for(lambda: (p := az("pool", "show", "--pool-id", "az-pool"))["allocationState"] == "steady" and p,
                     message="the pool to reach steady")
    assert (shown["id"], shown["vmSize"], shown["currentDedicatedNodes"]) == ("az-pool", "standard_d2s_v3", 1)
    assert shown["virtualMachineConfiguration"]["nodeAgentSkuId"] == "batch.node.ubuntu 22.04"

    az("pool", "resize", "--pool-id", "az-pool", "--target-dedicated-nodes", "2")
    resized = wait_for(lambda: (p := az("pool", "show", "--pool-id", "az-pool"))["currentDedicatedNodes"] == 2 and p,
                       message="the pool to have two nodes")
    assert (resized["targetDedicatedNodes"], resized["allocationState"]) == (2, "steady")

    az("pool", "delete", "--pool-id", "az-pool", "--yes")
    gone = wait_for(lambda: (done := az("pool", "show", "--pool-id", "az-pool", check=False)).returncode != 0 and done,
                    message="the pool to be deleted")
    assert "PoolNotFound" in gone.stderr


def test_tasks_are_created_listed_shown_counted_and_their_files_read(az, tmp_path):
    az("pool", "create", "--id", "az-pool", "--vm-size", "standard_d2s_v3", "--target-dedicated-nodes", "1", *UBUNTU)
    az("job", "create", "--id", "az-job", "--pool-id", "az-pool")
    az("task", "create", "--job-id", "az-job", "--task-id", "hello", "--command-line", "/bin/sh -c 'echo hello az'")
    many = tmp_path / "tasks.json"
    many.write_text(json.dumps([{"id": f"t{n}", "commandLine": f"/bin/sh -c 'exit {n % 2}'"} for n in range(4)]))
    added = az("task", "create", "--job-id", "az-job", "--json-file", str(many))
    assert sorted(result["taskId"] for result in added) == ["t0", "t1", "t2", "t3"]
    assert {result["status"].lower() for result in added} == {"success"}

    wait_for(lambda: az("job", "task-counts", "show", "--job-id", "az-job")["taskCounts"]["completed"] == 5,
             timeout=60, message="all five tasks to complete")
    counts = az("job", "task-counts", "show", "--job-id", "az-job")
    assert counts["taskCounts"] == {"active": 0, "running": 0, "completed": 5, "succeeded": 3, "failed": 2}
    assert counts["taskSlotCounts"]["completed"] == 5

    shown = az("task", "show", "--job-id", "az-job", "--task-id", "hello")
    assert (shown["state"], shown["executionInfo"]["exitCode"], shown["executionInfo"]["result"]) == (
        "completed", 0, "success")
    failed = az("task", "list", "--job-id", "az-job", "--filter", "executionInfo/exitCode eq 1")
    assert sorted(task["id"] for task in failed) == ["t1", "t3"]
    completed = az("task", "list", "--job-id", "az-job", "--filter", "state eq 'completed'", "--select", "id,state")
    assert sorted(task["id"] for task in completed) == ["hello", "t0", "t1", "t2", "t3"]

    files = az("task", "file", "list", "--job-id", "az-job", "--task-id", "hello")
    assert {"stdout.txt", "stderr.txt"} <= {f["name"] for f in files if not f["isDirectory"]}
    destination = tmp_path / "stdout.txt"
    az("task", "file", "download", "--job-id", "az-job", "--task-id", "hello", "--file-path", "stdout.txt",
       "--destination", str(destination))
    assert destination.read_text() == "hello az\n"

    az("job", "delete", "--job-id", "az-job", "--yes")
    gone = wait_for(lambda: (done := az("job", "show", "--job-id", "az-job", check=False)).returncode != 0 and done,
                    message="the job to be deleted")
    assert "JobNotFound" in gone.stderr


def test_numbers_and_booleans_sent_as_json_strings_are_read_as_the_service_reads_them(localbatch):
    """What az sends ("targetDedicatedNodes": "1"); the real service accepts it, and so must localbatch."""
    pool = {"id": "strings", "vmSize": "standard_d2s_v3", "targetDedicatedNodes": "1", "taskSlotsPerNode": "2",
            "startTask": {"commandLine": "/bin/true", "waitForSuccess": "false", "maxTaskRetryCount": "1"}}
    status, _, answer = signed_send(localbatch, "POST", f"/pools?api-version={API_VERSION}", json.dumps(pool).encode())
    assert status == 201, answer

    status, _, shown = signed_send(localbatch, "GET", f"/pools/strings?api-version={API_VERSION}")
    assert (shown["targetDedicatedNodes"], shown["taskSlotsPerNode"]) == (1, 2)
    assert (shown["startTask"]["waitForSuccess"], shown["startTask"]["maxTaskRetryCount"]) == (False, 1)


@pytest.mark.parametrize("field, value", [("targetDedicatedNodes", "one"), ("targetDedicatedNodes", "1.5"),
                                          ("taskSlotsPerNode", ""), ("targetDedicatedNodes", True)])
def test_a_string_that_is_not_a_number_is_still_refused(localbatch, field, value):
    pool = {"id": "bad", "vmSize": "standard_d2s_v3", field: value}
    status, _, answer = signed_send(localbatch, "POST", f"/pools?api-version={API_VERSION}", json.dumps(pool).encode())

    assert status == 400 and answer["code"] == "InvalidPropertyValue"
    status, _, _ = signed_send(localbatch, "GET", f"/pools/bad?api-version={API_VERSION}")
    assert status == 404
