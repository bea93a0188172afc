"""Tasks against localbatch through the real azure-batch SDK: adding (one, many, too large), listing,
what a task sees (environment, folders), files, limits, retries, terminate/reactivate/delete,
dependencies, slots and ids."""

import datetime
import json
import os
import time
from urllib.parse import unquote

import pytest
from azure.batch import models
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from .helpers import make_job, make_pool, pid_alive, sh, task, wait_for, wait_task_completed


def read_task_file(client, job_id: str, task_id: str, path: str = "stdout.txt", **options) -> bytes:
    return b"".join(client.download_task_file(job_id, task_id, path, **options))


def stdout(client, job_id: str, task_id: str) -> str:
    return read_task_file(client, job_id, task_id).decode()


def wait_running(client, job_id: str, task_id: str):
    return wait_for(lambda: (t := client.get_task(job_id, task_id)).state == "running" and t,
                    message=f"task {task_id} running")


def wait_output(client, job_id: str, task_id: str, lines: int) -> list[str]:
    """The task's stdout once it has at least `lines` lines (for tasks that print and then keep running)."""
    def ready():
        try:
            out = stdout(client, job_id, task_id).splitlines()
        except HttpResponseError:
            return None
        return out if len(out) >= lines else None
    return wait_for(ready, message=f"{lines} lines from {task_id}")


def error_code(exc: HttpResponseError) -> str:
    """Batch's error code; downloads are streamed, so the SDK leaves `exc.error` unset and the body unread."""
    return exc.error.code if exc.error else json.loads(exc.response.read())["code"]


def statuses_hook(statuses: list):
    return lambda response: statuses.append(response.http_response.status_code)


@pytest.fixture
def job(batch_client):
    """pool-1 (one node, one slot) and job-1 on it."""
    make_pool(batch_client)
    return make_job(batch_client)


@pytest.fixture
def parked_job(batch_client):
    """A job on a pool that does not exist: its tasks stay active, so adding many starts no process."""
    return make_job(batch_client, pool_id="no-such-pool")


# -- adding tasks ----------------------------------------------------------------------------

def test_create_task_answers_201_and_the_task_can_be_read_back(batch_client, parked_job):
    statuses = []
    batch_client.create_task(parked_job, task("t1", "echo hi", display_name="Say hi"),
                             raw_response_hook=statuses_hook(statuses))
    assert statuses == [201]
    t = batch_client.get_task(parked_job, "t1")
    assert (t.id, t.display_name, t.command_line, t.state) == ("t1", "Say hi", "echo hi", "active")
    assert t.url.endswith("/jobs/job-1/tasks/t1")
    assert t.required_slots == 1
    assert t.execution_info.retry_count == 0 and t.execution_info.requeue_count == 0
    assert t.previous_state is None
    assert t.etag and t.creation_time and t.state_transition_time


def test_create_tasks_adds_1000_tasks_exactly_once_and_lists_them_through_pages(batch_client, parked_job):
    tasks = [task(f"task-{i:04d}", "true") for i in range(1000)]
    result = batch_client.create_tasks(parked_job, tasks, max_concurrency=4)
    assert len(result.result_values) == 1000
    assert {r.status for r in result.result_values} == {"Success"}

    pages = []
    listed = [t.id for t in batch_client.list_tasks(parked_job, max_results=150, select=["id"],
                                                    raw_response_hook=statuses_hook(pages))]
    assert len(pages) == 7   # 1000 tasks at 150 per page
    assert len(listed) == 1000
    assert sorted(listed) == [f"task-{i:04d}" for i in range(1000)]
    counts = batch_client.get_job_task_counts(parked_job).task_counts
    assert counts.active == 1000


def test_create_tasks_splits_requests_that_are_too_large(batch_client, parked_job):
    # ~11 KB per task: 100 tasks are over the 1 MB limit, 50 are under it.
    filler = [models.EnvironmentSetting(name="FILLER", value="y" * 3000)]
    tasks = [task(f"big-{i:03d}", "echo " + "x" * 8000, environment_settings=filler) for i in range(300)]
    statuses = []
    result = batch_client.create_tasks(parked_job, tasks, raw_response_hook=statuses_hook(statuses))

    assert 413 in statuses
    assert statuses.count(200) >= 6
    assert len(result.result_values) == 300
    listed = [t.id for t in batch_client.list_tasks(parked_job, select=["id"])]
    assert sorted(listed) == [f"big-{i:03d}" for i in range(300)]
    assert batch_client.get_task(parked_job, "big-123").command_line == "echo " + "x" * 8000


def test_add_collection_reports_each_tasks_error(batch_client, parked_job):
    batch_client.create_task(parked_job, task("exists", "true"))
    collection = models.BatchTaskGroup(task_values=[
        task("new-1", "true"), task("new-1", "true"), task("EXISTS", "true"), task("bad id!", "true")])
    result = batch_client.create_task_collection(parked_job, collection)

    by_status = sorted((r.status, r.task_id, r.error.code if r.error else None) for r in result.result_values)
    assert by_status == [("ClientError", "EXISTS", "TaskExists"), ("ClientError", "bad id!", "InvalidPropertyValue"),
                         ("ClientError", "new-1", "TaskExists"), ("Success", "new-1", None)]
    assert sorted(t.id for t in batch_client.list_tasks(parked_job)) == ["exists", "new-1"]


def test_create_tasks_counts_task_exists_as_success(batch_client, parked_job):
    batch_client.create_task(parked_job, task("again", "true"))
    result = batch_client.create_tasks(parked_job, [task("again", "true"), task("fresh", "true")])
    assert sorted(r.task_id for r in result.result_values) == ["again", "fresh"]
    assert {r.task_id: r.status for r in result.result_values}["again"] == "ClientError"


def test_create_tasks_returns_invalid_tasks_as_client_errors_and_still_adds_the_valid_ones(batch_client, parked_job):
    # The service spells the status "ClientError" and the SDK's create_tasks compares it with its enum's
    # "clienterror" case-sensitively, so, against Azure as here, it returns refused tasks among its results
    # instead of raising CreateTasksError.
    result = batch_client.create_tasks(parked_job, [task("good", "true"), task("no/slash", "true"),
                                                    task("no-command", "")])
    failures = {r.task_id: r.error.code for r in result.result_values if r.status == "ClientError"}
    assert failures == {"no/slash": "InvalidPropertyValue", "no-command": "MissingRequiredProperty"}
    assert [t.id for t in batch_client.list_tasks(parked_job)] == ["good"]


def test_task_ids_are_checked_and_unique_without_regard_to_case(batch_client, parked_job):
    for bad in ("x" * 65, "has space", "dot.ted", "slash/ed", "ümlaut"):
        with pytest.raises(HttpResponseError) as raised:
            batch_client.create_task(parked_job, task(bad, "true"))
        assert raised.value.status_code == 400, bad
        assert raised.value.error.code == "InvalidPropertyValue", bad
    batch_client.create_task(parked_job, task("x" * 64, "true"))
    batch_client.create_task(parked_job, task("Mixed_Case-1", "true"))
    with pytest.raises(ResourceExistsError) as raised:
        batch_client.create_task(parked_job, task("mixed_case-1", "true"))
    assert raised.value.error.code == "TaskExists"
    assert batch_client.get_task(parked_job, "MIXED_CASE-1").id == "Mixed_Case-1"   # case-preserving


def test_adding_to_a_missing_job_is_job_not_found(batch_client):
    with pytest.raises(ResourceNotFoundError) as raised:
        batch_client.create_task("ghost", task("t1", "true"))
    assert raised.value.error.code == "JobNotFound"


# -- listing ---------------------------------------------------------------------------------

def test_list_tasks_with_filter_and_select(batch_client):
    make_pool(batch_client, slots=3)
    make_job(batch_client)
    batch_client.create_tasks("job-1", [task("a-ok", "true"), task("a-fail", sh("exit 3")), task("b-ok", "true")])
    for task_id in ("a-ok", "a-fail", "b-ok"):
        wait_task_completed(batch_client, "job-1", task_id)
    time.sleep(0.05)
    between = datetime.datetime.now(datetime.timezone.utc)
    time.sleep(0.05)
    batch_client.create_task("job-1", task("c-late", "sleep 30"))
    wait_running(batch_client, "job-1", "c-late")

    def ids(**options):
        return sorted(t.id for t in batch_client.list_tasks("job-1", **options))
    assert ids(filter="state eq 'completed'") == ["a-fail", "a-ok", "b-ok"]
    assert ids(filter="state eq 'running'") == ["c-late"]
    assert ids(filter="state eq 'completed' and executionInfo/exitCode ne 0") == ["a-fail"]
    # OData semantics: a running task has no exit code, and a missing value is 'ne' anything.
    assert ids(filter="executionInfo/exitCode ne 0") == ["a-fail", "c-late"]
    assert ids(filter="startswith(id,'a')") == ["a-fail", "a-ok"]
    stamp = between.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert ids(filter=f"stateTransitionTime ge datetime'{stamp}'") == ["c-late"]
    succeeded_before = f"stateTransitionTime lt datetime'{stamp}' and executionInfo/result eq 'success'"
    assert ids(filter=succeeded_before) == ["a-ok", "b-ok"]

    selected = list(batch_client.list_tasks("job-1", select=["id", "state"], filter="startswith(id,'b')"))
    assert [(t.id, t.state) for t in selected] == [("b-ok", "completed")]
    assert selected[0].command_line is None and selected[0].execution_info is None

    with pytest.raises(HttpResponseError) as raised:
        list(batch_client.list_tasks("job-1", filter="state eq"))
    assert raised.value.status_code == 400
    assert raised.value.error.code == "InvalidQueryParameterValue"



def test_a_filtered_listing_pages_through_the_matches_in_id_order(batch_client, parked_job):
    # Tasks that match and tasks that do not, added out of order: the filter is applied before the pages are cut.
    numbers = [7, 2, 9, 4, 1, 8, 3, 6, 5, 0]
    batch_client.create_tasks(parked_job, [task(f"{'keep' if n % 2 else 'drop'}-{n}", "true") for n in numbers])

    pages = [[t.id for t in page] for page in batch_client.list_tasks(
        parked_job, filter="startswith(id,'keep')", max_results=2).by_page()]

    assert pages == [["keep-1", "keep-3"], ["keep-5", "keep-7"], ["keep-9"]]
    unfiltered = [[t.id for t in page] for page in batch_client.list_tasks(parked_job, max_results=4).by_page()]
    assert unfiltered == [["drop-0", "drop-2", "drop-4", "drop-6"], ["drop-8", "keep-1", "keep-3", "keep-5"],
                          ["keep-7", "keep-9"]]

def test_a_listing_filtered_on_recent_transitions_answers_what_the_whole_listing_does(batch_client, parked_job):
    # localbatch reads such a listing from its transitions in time order (AccountState.tasks_since): it must keep
    # every task that moved since, a terminated one, one added again after a delete, and no deleted one.
    batch_client.create_tasks(parked_job, [task(f"t{n:02d}", "true") for n in range(12)])
    moment = batch_client.get_task(parked_job, "t11").state_transition_time + datetime.timedelta(microseconds=1)
    time.sleep(0.01)
    for task_id in ("t03", "t07", "t10"):
        batch_client.terminate_task(parked_job, task_id)
    batch_client.delete_task(parked_job, "t10")
    batch_client.delete_task(parked_job, "t05")
    batch_client.create_task(parked_job, task("t05", "true"))
    since = f"stateTransitionTime ge datetime'{moment:%Y-%m-%dT%H:%M:%S.%fZ}'"

    def listed(**options) -> list[str]:
        return [t.id for t in batch_client.list_tasks(parked_job, **options)]

    whole = list(batch_client.list_tasks(parked_job))
    assert listed(filter=since, max_results=2) == [t.id for t in whole if t.state_transition_time >= moment] \
        == ["t03", "t05", "t07"]
    assert listed(filter=f"state eq 'completed' and {since}") == ["t03", "t07"]
    assert listed(filter=f"{since} or id eq 't00'") == ["t00", "t03", "t05", "t07"]
    assert listed(filter=since.replace(" ge ", " lt ")) == ["t00", "t01", "t02", "t04", "t06", "t08", "t09", "t11"]


# -- what a task sees ------------------------------------------------------------------------

def test_get_task_after_a_run(batch_client, job):
    batch_client.create_task(job, task("t1", sh("echo out; echo err >&2; exit 0")))
    t = wait_task_completed(batch_client, job, "t1")
    info = t.execution_info
    assert info.exit_code == 0
    assert info.result == "success"
    assert info.failure_info is None
    assert info.retry_count == 0
    assert info.start_time <= info.end_time
    assert t.previous_state == "running"
    assert t.previous_state_transition_time <= t.state_transition_time
    [node] = list(batch_client.list_nodes("pool-1"))
    assert t.node_info.pool_id == "pool-1"
    assert t.node_info.node_id == node.id
    assert t.node_info.affinity_id == node.affinity_id
    assert t.node_info.task_root_directory == "workitems/job-1/job-1/t1"
    assert t.node_info.task_root_directory_url.endswith(f"/pools/pool-1/nodes/{node.id}/files/workitems/job-1/job-1/t1")
    assert stdout(batch_client, job, "t1") == "out\n"
    assert read_task_file(batch_client, job, "t1", "stderr.txt") == b"err\n"


def test_environment_as_the_task_sees_it(batch_client, localbatch):
    make_pool(batch_client)
    make_job(batch_client, common_environment_settings=[
        models.EnvironmentSetting(name="FROM_JOB", value="job"), models.EnvironmentSetting(name="SHARED", value="job")])
    batch_client.create_task("job-1", task("envtask", "env", environment_settings=[
        models.EnvironmentSetting(name="SHARED", value="task"),
        models.EnvironmentSetting(name="ONLY_TASK", value="t")]))
    t = wait_task_completed(batch_client, "job-1", "envtask")
    assert t.execution_info.exit_code == 0
    env = dict(line.split("=", 1) for line in stdout(batch_client, "job-1", "envtask").splitlines() if "=" in line)

    root = env["AZ_BATCH_NODE_ROOT_DIR"]
    task_dir = os.path.join(root, "workitems", "job-1", "job-1", "envtask")
    assert os.path.isabs(root) and os.path.isdir(root)
    assert env["AZ_BATCH_ACCOUNT_NAME"] == localbatch.account_name
    assert env["AZ_BATCH_ACCOUNT_URL"] == localbatch.endpoint + "/"   # real dumps show the trailing slash
    assert env["AZ_BATCH_POOL_ID"] == "pool-1"
    assert env["AZ_BATCH_NODE_ID"] == t.node_info.node_id
    assert env["AZ_BATCH_NODE_IS_DEDICATED"] == "true"
    assert env["AZ_BATCH_NODE_SHARED_DIR"] == os.path.join(root, "shared")
    assert env["AZ_BATCH_NODE_STARTUP_DIR"] == os.path.join(root, "startup")
    assert env["AZ_BATCH_TASK_DIR"] == task_dir
    assert env["AZ_BATCH_TASK_WORKING_DIR"] == os.path.join(task_dir, "wd")
    assert env["AZ_BATCH_JOB_ID"] == "job-1"
    assert env["AZ_BATCH_TASK_ID"] == "envtask"
    assert env["HOME"] == env["PWD"] == os.path.join(task_dir, "wd")
    assert (env["FROM_JOB"], env["SHARED"], env["ONLY_TASK"]) == ("job", "task", "t")
    assert "AZ_BATCH_JOB_PREP_DIR" not in env   # the job has no preparation task
    assert "AZ_BATCH_TASK_RETRY_COUNT" not in env


def test_node_folder_layout(batch_client, job):
    batch_client.create_task(job, task("t1", sh("echo $AZ_BATCH_NODE_ROOT_DIR; echo kept > result.txt")))
    t = wait_task_completed(batch_client, job, "t1")
    root = stdout(batch_client, job, "t1").strip()
    task_dir = os.path.join(root, "workitems", "job-1", "job-1", "t1")
    for folder in ("shared", "startup", "workitems"):
        assert os.path.isdir(os.path.join(root, folder)), folder
    assert os.path.isfile(os.path.join(task_dir, "stdout.txt"))
    assert os.path.isfile(os.path.join(task_dir, "stderr.txt"))
    assert os.path.isfile(os.path.join(task_dir, "wd", "result.txt"))

    names = {f.name for f in batch_client.list_node_files("pool-1", t.node_info.node_id, recursive=True)}
    assert {"shared", "startup", "workitems/job-1/job-1/t1/stdout.txt",
            "workitems/job-1/job-1/t1/wd/result.txt"} <= names


# -- task files ------------------------------------------------------------------------------

def test_task_files_list_range_properties_and_delete(batch_client, job):
    batch_client.create_task(job, task("files", sh("mkdir -p sub; printf 0123456789 > sub/data.txt; echo done")))
    wait_task_completed(batch_client, job, "files")

    shallow = {f.name: f for f in batch_client.list_task_files(job, "files")}
    assert set(shallow) >= {"stdout.txt", "stderr.txt", "wd"}
    assert "wd/sub/data.txt" not in shallow
    assert shallow["wd"].is_directory is True and shallow["wd"].properties is None
    deep = {f.name: f for f in batch_client.list_task_files(job, "files", recursive=True)}
    assert {"wd", "wd/sub", "wd/sub/data.txt", "stdout.txt"} <= set(deep)
    assert deep["wd/sub/data.txt"].is_directory is False
    assert deep["wd/sub/data.txt"].properties.content_length == 10
    assert deep["wd/sub/data.txt"].url.endswith("/jobs/job-1/tasks/files/files/wd/sub/data.txt")
    only_wd = {f.name for f in batch_client.list_task_files(job, "files", recursive=True,
                                                            filter="startswith(name,'wd')")}
    assert only_wd == {"wd", "wd/sub", "wd/sub/data.txt"}

    statuses = []
    part = read_task_file(batch_client, job, "files", "wd/sub/data.txt", ocp_range="bytes=2-5",
                          raw_response_hook=statuses_hook(statuses))
    assert part == b"2345"
    assert statuses == [200]
    assert read_task_file(batch_client, job, "files", "wd/sub/data.txt") == b"0123456789"

    props = batch_client.get_task_file_properties(job, "files", "wd/sub/data.txt")
    assert int(props.content_length) == 10
    assert props.is_directory is False
    assert unquote(props.url).endswith("/files/wd/sub/data.txt")   # the service percent-encodes it
    assert props.last_modified is not None
    assert batch_client.get_task_file_properties(job, "files", "wd/sub").is_directory is True

    batch_client.delete_task_file(job, "files", "wd/sub/data.txt")
    with pytest.raises(ResourceNotFoundError) as raised:
        read_task_file(batch_client, job, "files", "wd/sub/data.txt")
    assert error_code(raised.value) == "FileNotFound"
    assert "wd/sub/data.txt" not in {f.name for f in batch_client.list_task_files(job, "files", recursive=True)}


def test_task_file_paths_cannot_leave_the_task_folder(batch_client, job):
    secret_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # tests/
    batch_client.create_task(job, task("t1", sh(f"ln -s {secret_dir} escape; echo ok")))
    batch_client.create_task(job, task("t2", sh("echo secret-of-t2")))
    wait_task_completed(batch_client, job, "t1")
    wait_task_completed(batch_client, job, "t2")

    # (A bare ".." is not tried: urllib3 removes that dot segment before sending, so the signature fails.)
    for path in ("../t2/stdout.txt", "wd/../../t2/stdout.txt", "/etc/passwd", "wd/../..", "..\\t2\\stdout.txt"):
        with pytest.raises(HttpResponseError) as raised:
            read_task_file(batch_client, job, "t1", path)
        assert raised.value.status_code == 400, path
        assert error_code(raised.value) == "InvalidUri", path
    with pytest.raises(ResourceNotFoundError) as raised:   # a symlink out of the task folder is not followed
        read_task_file(batch_client, job, "t1", "wd/escape/conftest.py")
    assert error_code(raised.value) == "FileNotFound"
    with pytest.raises(HttpResponseError) as raised:
        batch_client.delete_task_file(job, "t1", "../t2/stdout.txt")
    assert raised.value.status_code == 400
    assert raised.value.error.code == "InvalidUri"
    assert stdout(batch_client, job, "t2") == "secret-of-t2\n"


# -- limits, retries, terminate, reactivate, delete ------------------------------------------

def test_max_wall_clock_time_kills_the_whole_process_group(batch_client, job):
    script = 'sleep 30 & echo "$$ $!"; wait'
    batch_client.create_task(job, task("slow", sh(script), constraints=models.BatchTaskConstraints(
        max_wall_clock_time=datetime.timedelta(seconds=1))))
    shell_pid, child_pid = map(int, wait_output(batch_client, job, "slow", 1)[0].split())
    assert pid_alive(child_pid)

    t = wait_task_completed(batch_client, job, "slow", timeout=10)
    info = t.execution_info
    assert info.result == "failure"
    assert info.failure_info.category == "usererror"
    assert info.failure_info.code == "MaxWallClockTimeExceeded"
    assert info.retry_count == 0
    assert (info.end_time - info.start_time).total_seconds() < 10
    wait_for(lambda: not pid_alive(shell_pid) and not pid_alive(child_pid), timeout=5,
             message=f"pids {shell_pid} and {child_pid} gone")


def test_retries_run_a_failing_task_max_task_retry_count_more_times(batch_client, job):
    counter = "$AZ_BATCH_NODE_SHARED_DIR/retry-count"
    batch_client.create_task(job, task("flaky", sh(f"echo run >> {counter}; cat {counter} | wc -l; exit 1"),
                                       constraints=models.BatchTaskConstraints(max_task_retry_count=2)))
    t = wait_task_completed(batch_client, job, "flaky")
    info = t.execution_info
    assert info.retry_count == 2
    assert info.exit_code == 1
    assert info.result == "failure"
    assert info.failure_info.code == "FailureExitCode"
    assert info.last_retry_time is not None
    assert stdout(batch_client, job, "flaky").strip() == "3"   # the third run counted three lines


def test_job_max_task_retry_count_is_the_tasks_default(batch_client):
    make_pool(batch_client)
    make_job(batch_client, constraints=models.BatchJobConstraints(max_task_retry_count=1))
    batch_client.create_task("job-1", task("flaky", sh("exit 1")))
    t = wait_task_completed(batch_client, "job-1", "flaky")
    assert t.constraints.max_task_retry_count == 1
    assert t.execution_info.retry_count == 1


def test_terminate_running_task_then_terminate_again_is_task_completed(batch_client, job):
    batch_client.create_task(job, task("long", sh("echo $$; exec sleep 30")))
    pid = int(wait_output(batch_client, job, "long", 1)[0])
    statuses = []
    batch_client.terminate_task(job, "long", raw_response_hook=statuses_hook(statuses))
    assert statuses == [204]

    t = wait_task_completed(batch_client, job, "long", timeout=5)
    assert t.execution_info.failure_info.code == "TaskEnded"
    assert t.execution_info.result == "failure"
    wait_for(lambda: not pid_alive(pid), timeout=5, message=f"pid {pid} gone")
    with pytest.raises(ResourceExistsError) as raised:
        batch_client.terminate_task(job, "long")
    assert raised.value.status_code == 409
    assert raised.value.error.code == "TaskCompleted"


def test_terminate_an_active_task_completes_it_without_running(batch_client, parked_job):
    batch_client.create_task(parked_job, task("never", "true"))
    batch_client.terminate_task(parked_job, "never")
    t = batch_client.get_task(parked_job, "never")
    assert t.state == "completed"
    assert t.execution_info.failure_info.code == "TaskEnded"
    assert t.node_info is None


def test_reactivate_a_failed_task_runs_it_again_with_retry_count_reset(batch_client, job):
    counter = "$AZ_BATCH_NODE_SHARED_DIR/runs"
    # Runs 1 and 2 fail (one retry), run 3 succeeds.
    script = f"echo run >> {counter}; test $(cat {counter} | wc -l) -ge 3"
    batch_client.create_task(job, task("t1", sh(script),
                                       constraints=models.BatchTaskConstraints(max_task_retry_count=1)))
    failed = wait_task_completed(batch_client, job, "t1")
    assert (failed.execution_info.retry_count, failed.execution_info.exit_code) == (1, 1)

    statuses = []
    batch_client.reactivate_task(job, "t1", raw_response_hook=statuses_hook(statuses))
    assert statuses == [204]
    t = wait_for(lambda: (t := batch_client.get_task(job, "t1")).state == "completed"
                 and t.execution_info.result == "success" and t, message="t1 succeeded")
    assert t.execution_info.retry_count == 0
    assert t.execution_info.exit_code == 0
    assert t.execution_info.failure_info is None

    with pytest.raises(ResourceExistsError) as raised:
        batch_client.reactivate_task(job, "t1")
    assert raised.value.error.code == "TaskSucceeded"


def test_reactivate_a_task_that_is_not_completed_is_task_not_completed(batch_client, parked_job):
    batch_client.create_task(parked_job, task("t1", "true"))
    with pytest.raises(ResourceExistsError) as raised:
        batch_client.reactivate_task(parked_job, "t1")
    assert raised.value.error.code == "TaskNotCompleted"


def test_delete_a_running_task_kills_it_and_removes_it(batch_client, job):
    batch_client.create_task(job, task("doomed", sh("echo $$; echo $AZ_BATCH_TASK_DIR; exec sleep 30")))
    pid_line, task_dir = wait_output(batch_client, job, "doomed", 2)[:2]
    pid = int(pid_line)
    statuses = []
    batch_client.delete_task(job, "doomed", raw_response_hook=statuses_hook(statuses))
    assert statuses == [200]

    with pytest.raises(ResourceNotFoundError) as raised:
        batch_client.get_task(job, "doomed")
    assert raised.value.error.code == "TaskNotFound"
    wait_for(lambda: not pid_alive(pid), timeout=5, message=f"pid {pid} gone")
    assert not os.path.exists(task_dir)
    assert batch_client.get_job_task_counts(job).task_counts.running == 0
    # The slot is free again.
    batch_client.create_task(job, task("next", "true"))
    assert wait_task_completed(batch_client, job, "next").execution_info.exit_code == 0


def test_a_missing_program_is_command_program_not_found(batch_client, job):
    batch_client.create_task(job, task("nope", "no-such-program-xyz --flag"))
    t = wait_task_completed(batch_client, job, "nope")
    info = t.execution_info
    assert info.failure_info.code == "CommandProgramNotFound"
    assert info.failure_info.category == "usererror"
    assert info.exit_code is None
    assert info.result == "failure"


# -- dependencies ----------------------------------------------------------------------------

def dependency_job(client, slots: int = 4):
    make_pool(client, slots=slots)
    return make_job(client, uses_task_dependencies=True)


def test_dependent_tasks_wait_for_their_parents(batch_client):
    job = dependency_job(batch_client)
    batch_client.create_tasks(job, [
        task("A", "sleep 0.4"),
        task("B", "true", depends_on=models.BatchTaskDependencies(task_ids=["A"])),
        task("1", "sleep 0.2"), task("2", "sleep 0.3"), task("3", "true"),
        task("C", "true", depends_on=models.BatchTaskDependencies(
            task_id_ranges=[models.BatchTaskIdRange(start=1, end=3)])),
    ])
    wait_running(batch_client, job, "A")
    assert batch_client.get_task(job, "B").state == "active"

    done = {i: wait_task_completed(batch_client, job, i) for i in ("A", "B", "1", "2", "3", "C")}
    assert done["B"].execution_info.start_time >= done["A"].execution_info.end_time
    assert done["C"].execution_info.start_time >= max(done[i].execution_info.end_time for i in ("1", "2", "3"))
    assert done["B"].depends_on.task_ids == ["A"]


def test_a_failing_parent_blocks_its_dependent(batch_client):
    job = dependency_job(batch_client)
    batch_client.create_task(job, task("parent", sh("exit 1")))
    batch_client.create_task(job, task("child", "true", depends_on=models.BatchTaskDependencies(task_ids=["parent"])))
    wait_task_completed(batch_client, job, "parent")
    time.sleep(0.5)
    child = batch_client.get_task(job, "child")
    assert child.state == "active"
    assert child.execution_info.start_time is None


def test_dependency_action_satisfy_lets_the_child_of_a_failed_parent_run(batch_client):
    job = dependency_job(batch_client)
    batch_client.create_task(job, task("parent", sh("exit 2"), exit_conditions=models.ExitConditions(exit_codes=[
        models.ExitCodeMapping(code=2, exit_options=models.ExitOptions(dependency_action="satisfy"))])))
    batch_client.create_task(job, task("child", "true", depends_on=models.BatchTaskDependencies(task_ids=["parent"])))
    parent = wait_task_completed(batch_client, job, "parent")
    assert parent.execution_info.result == "failure"
    child = wait_task_completed(batch_client, job, "child")
    assert child.execution_info.exit_code == 0


def test_depends_on_needs_a_job_that_uses_task_dependencies(batch_client, parked_job):
    with pytest.raises(HttpResponseError) as raised:
        batch_client.create_task(parked_job, task("child", "true", depends_on=models.BatchTaskDependencies(
            task_ids=["parent"])))
    assert raised.value.status_code == 400
    assert raised.value.error.code == "TaskDependenciesNotSpecifiedOnJob"


# -- slots -----------------------------------------------------------------------------------

def test_a_two_slot_node_runs_two_tasks_at_once_but_never_three(batch_client):
    make_pool(batch_client, slots=2)
    make_job(batch_client)
    batch_client.create_tasks("job-1", [task(f"s{i}", "sleep 0.6") for i in range(3)])
    most = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        counts = batch_client.get_job_task_counts("job-1").task_counts
        most = max(most, counts.running)
        if counts.completed == 3:
            break
        time.sleep(0.05)
    assert most == 2

    spans = sorted((t.execution_info.start_time, t.execution_info.end_time) for t in batch_client.list_tasks("job-1"))
    (start1, end1), (start2, end2), (start3, _) = spans
    assert start2 < end1   # the first two overlapped
    assert start3 >= min(end1, end2)   # the third waited for a free slot
    assert len({t.node_info.node_id for t in batch_client.list_tasks("job-1")}) == 1
