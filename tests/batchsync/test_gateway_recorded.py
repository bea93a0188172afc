"""The gateway on what the real Batch service sends: recorded responses (tests/batchsync/recorded/README.md says
where each comes from) served over real HTTP to the real SDK, read through BatchGateway."""

import copy
from datetime import datetime, timezone

import pytest

from batchsync.gateway import (
    AlreadyExists,
    BatchGateway,
    FileRecord,
    ImageSpec,
    JobRecord,
    JobSpec,
    NodeRecord,
    NotFound,
    PoolRecord,
    PoolSpec,
    TaskCountsRecord,
    TaskFailure,
    TaskRecord,
    TaskSpec,
    convert,
)
from tests.batchsync.recorded.service import Answer, RecordedService, recorded, recorded_body

ADD_TASKS = "/jobs/job-1/addtaskcollection"
UBUNTU_1804 = ImageSpec("canonical", "ubuntuserver", "18.04-lts", "batch.node.ubuntu 18.04")
WINDOWS_NODE = "tvmps_174d818c048e9ad384f01fbe17cf0a374a0845e5cd1a4052a7374b68912f3a41_d"


def utc(*parts) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


@pytest.fixture
def service():
    service = RecordedService()
    yield service
    service.close()


@pytest.fixture
def gateway(service):
    with BatchGateway(service.endpoint, service.account_name, service.account_key) as gateway:
        yield gateway


def recorded_results_for(request, *, refuse: dict[str, dict] | None = None) -> Answer:
    """An addtaskcollection answer for the tasks in `request`: the real service's recorded "Success" entry for
    each, or, for the ids in `refuse`, a "ClientError" entry with that error."""
    body = recorded_body("cli-extensions/add_task_collection.json")
    success = body["value"][0]
    results = []
    for task in request.json()["value"]:
        if refuse and task["id"] in refuse:
            results.append({"status": "ClientError", "taskId": task["id"], "error": refuse[task["id"]]})
        else:
            results.append({**copy.deepcopy(success), "taskId": task["id"]})
    return Answer(200, {**body, "value": results})


# --- enums without regard to case ----------------------------------------------------------------

@pytest.mark.parametrize("sent, expected", [("Success", "success"), ("ClientError", "clienterror"),
                                            ("clientError", "clienterror"), ("Pack", "pack"),
                                            ("TaskSuccess", "tasksuccess"), ("", None), (None, None)])
def test_enum_value_is_lowercase_whatever_batch_sent(sent, expected):
    assert convert.enum_value(sent) == expected


def test_enum_equals_ignores_case_on_both_sides():
    assert convert.enum_equals("ServerError", "serverError")
    assert not convert.enum_equals("ServerError", "clientError")
    assert not convert.enum_equals(None, "success")


# --- add_tasks: the _settle regression -----------------------------------------------------------

def test_a_recorded_pascalcase_success_answer_settles_the_chunk_at_once(service, gateway):
    """The service's own answer to an 18-task request, verbatim: every task is added by that one request."""
    answer = Answer.recorded("cli-extensions/add_task_collection.json")
    ids = [result["taskId"] for result in answer.body["value"]]
    assert {result["status"] for result in answer.body["value"]} == {"Success"}   # as recorded
    service.routes[("POST", ADD_TASKS)] = answer

    result = gateway.add_tasks("job-1", [TaskSpec(id=task_id, command_line="/bin/true") for task_id in ids],
                               budget_seconds=5)

    assert sorted(result.added) == sorted(ids) and result.failures == ()
    assert len(service.requests_to("POST", ADD_TASKS)) == 1


def test_every_chunk_of_a_large_submission_is_sent_once(service, gateway):
    service.routes[("POST", ADD_TASKS)] = recorded_results_for
    specs = [TaskSpec(id=f"t{n:04d}", command_line="/bin/true") for n in range(250)]

    result = gateway.add_tasks("job-1", specs, budget_seconds=5)

    assert len(result.added) == 250 and result.failures == ()
    assert len(service.requests_to("POST", ADD_TASKS)) == 3


def test_a_pascalcase_clienterror_fails_the_task_at_once_with_batchs_reason(service, gateway):
    error = copy.deepcopy(recorded_body("cli-extensions/error_pool_exists.json"))
    del error["odata.metadata"]
    error.update(code="InvalidPropertyValue", values=[{"key": "PropertyName", "value": "requiredSlots"}])
    error["message"]["value"] = ("The value provided for one of the properties in the request body is invalid."
                                 "\nRequestId:b89ea3f0-6105-4f9e-91a9-fe972b51fb89\nTime:2022-09-06T23:47:58Z")
    service.routes[("POST", ADD_TASKS)] = lambda request: recorded_results_for(request, refuse={"t0002": error})
    specs = [TaskSpec(id=f"t{n:04d}", command_line="/bin/true") for n in range(1, 4)]

    result = gateway.add_tasks("job-1", specs, budget_seconds=5)

    assert sorted(result.added) == ["t0001", "t0003"]
    # Batch's values name the property it refused, and the reason says so (it used to stop at "invalid.").
    assert result.failures == (TaskFailure("t0002", "InvalidPropertyValue",
                                           "The value provided for one of the properties in the request body is "
                                           "invalid: requiredSlots."),)
    assert len(service.requests_to("POST", ADD_TASKS)) == 1


def test_a_pascalcase_servererror_is_sent_again_and_then_added(service, gateway):
    answers = []

    def first_server_error_then_success(request):
        answer = recorded_results_for(request)
        if not answers:
            answer.body["value"][0].update(status="ServerError")
            answer.body["value"][0].pop("eTag")
        answers.append(answer)
        return answer
    service.routes[("POST", ADD_TASKS)] = first_server_error_then_success

    result = gateway.add_tasks("job-1", [TaskSpec(id="a", command_line="c"), TaskSpec(id="b", command_line="c")],
                               budget_seconds=10)

    assert sorted(result.added) == ["a", "b"]
    sent = [[task["id"] for task in request.json()["value"]] for request in service.requests_to("POST", ADD_TASKS)]
    assert sent == [["a", "b"], ["a"]]


def test_a_recorded_error_body_is_our_error_with_batchs_code(service, gateway):
    service.routes[("POST", "/pools")] = Answer.recorded("cli-extensions/error_pool_exists.json")

    with pytest.raises(AlreadyExists) as caught:
        gateway.create_pool(PoolSpec(id="ncj-ubuntu1604", vm_size="standard_d1_v2", image=UBUNTU_1804))

    assert caught.value.code == "PoolExists" and caught.value.message == "The specified pool already exists."
    assert recorded("cli-extensions/error_pool_exists.json")["status"] == caught.value.status == 409


# --- readers: every record the gateway builds, from what the service sent ------------------------

def serve(service, method: str, path: str, name: str) -> dict:
    """Answer `method path` with the recorded response `name`; returns that response."""
    service.routes[(method, path)] = Answer.recorded(name)
    return recorded(name)


def test_pool_record_from_a_recorded_pool(service, gateway):
    serve(service, "GET", "/pools/ncj-ubuntu1604", "cli-extensions/pool_get.json")

    pool = gateway.get_pool("ncj-ubuntu1604")

    assert pool == PoolRecord(
        id="ncj-ubuntu1604", display_name=None, state="active", allocation_state="resizing", vm_size="standard_d1_v2",
        target_dedicated_nodes=1, target_low_priority_nodes=0, current_dedicated_nodes=0, current_low_priority_nodes=0,
        task_slots_per_node=1, node_fill_type="spread",   # sent as "Spread"
        start_task_command_line=None, creation_time=utc(2022, 9, 6, 23, 44, 11, 515371),
        state_transition_time=utc(2022, 9, 6, 23, 44, 11, 515371), last_modified=utc(2022, 9, 6, 23, 44, 11, 515371),
        etag="0x8DA9061B2F7BB2F")


def test_pool_record_with_a_start_task_and_user_accounts(service, gateway):
    serve(service, "GET", "/pools/blobsource1", "cli-extensions/pool_get_with_start_task.json")
    serve(service, "GET", "/pools/computenodepool", "sdk-assets/pool_get_resizing_down.json")

    with_start_task = gateway.get_pool("blobsource1")
    resizing_down = gateway.get_pool("computenodepool")

    assert with_start_task.start_task_command_line == "/bin/bash -c 'set -e; set -o pipefail; sleep 1; wait'"
    assert with_start_task.display_name == "Blender Ubuntu standard pool"
    assert (resizing_down.display_name, resizing_down.node_fill_type, resizing_down.allocation_state) == (
        "test_pool", "spread", "resizing")
    assert (resizing_down.current_dedicated_nodes, resizing_down.target_dedicated_nodes) == (2, 0)


def test_node_records_from_recorded_node_lists(service, gateway):
    creating = serve(service, "GET", "/pools/ncj-ubuntu1604/nodes", "cli-extensions/node_list_creating.json")
    node_id = creating["body"]["value"][0]["id"]

    [node] = gateway.list_nodes("ncj-ubuntu1604")

    assert node == NodeRecord(
        pool_id="ncj-ubuntu1604", id=node_id, state="creating", scheduling_state="enabled", is_dedicated=True,
        running_tasks_count=0, running_task_slots_count=0, total_tasks_run=0, total_tasks_succeeded=0,
        start_task_state=None, start_task_exit_code=None, start_task_result=None, start_task_failure_code=None,
        start_task_failure_message=None, state_transition_time=utc(2022, 9, 6, 23, 45, 3, 208045))


def test_a_node_with_recent_tasks_and_no_errors_list(service, gateway):
    recorded_nodes = serve(service, "GET", "/pools/ncj-ubuntu1604/nodes",
                           "cli-extensions/node_list_with_recent_tasks.json")
    assert "errors" not in recorded_nodes["body"]["value"][0]   # the service leaves it out, not []

    [node] = gateway.list_nodes("ncj-ubuntu1604")

    assert (node.state, node.total_tasks_run, node.total_tasks_succeeded) == ("idle", 1, 1)


def test_job_record_from_a_recorded_job(service, gateway):
    serve(service, "GET", "/jobs/ncj-ubuntu1604", "cli-extensions/job_get.json")

    job = gateway.get_job("ncj-ubuntu1604")

    assert job == JobRecord(
        id="ncj-ubuntu1604", display_name=None, state="active", pool_id="ncj-ubuntu1604", priority=0,
        on_all_tasks_complete="noaction", creation_time=utc(2022, 9, 6, 23, 45, 28, 202185),
        state_transition_time=utc(2022, 9, 6, 23, 45, 28, 218557), start_time=utc(2022, 9, 6, 23, 45, 28, 218557),
        end_time=None, terminate_reason=None, last_modified=utc(2022, 9, 6, 23, 45, 28, 218557),
        etag="0x8DA9061E0AFB569")


def test_listed_jobs_read_as_the_same_records_as_a_job_read_alone(service, gateway):
    job = recorded_body("cli-extensions/job_get.json")
    serve(service, "GET", "/jobs/ncj-ubuntu1604", "cli-extensions/job_get.json")
    service.routes[("GET", "/jobs")] = Answer(200, {"value": [job]})

    [listed] = gateway.list_jobs()

    assert listed == gateway.get_job("ncj-ubuntu1604")
    [request] = service.requests_to("GET", "/jobs")
    assert "executionInfo" in request.query["$select"][0]


def test_task_counts_record_from_recorded_counts(service, gateway):
    serve(service, "GET", "/jobs/xplatJobForTaskTests/taskcounts", "azure-cli/task_counts.json")

    counts = gateway.get_task_counts("xplatJobForTaskTests")

    assert counts == TaskCountsRecord(active=1, running=0, completed=0, succeeded=0, failed=0, active_slots=1,
                                      running_slots=0, completed_slots=0, succeeded_slots=0, failed_slots=0)


def test_task_records_from_a_recorded_task_list(service, gateway):
    serve(service, "GET", "/jobs/ncj-windows-2012-r2/tasks", "cli-extensions/task_list_running_windows.json")

    [task] = gateway.list_tasks("ncj-windows-2012-r2")

    assert (task.id, task.state, task.previous_state, task.command_line) == (
        "myTask", "running", "active", "cmd /c echo | set /p dummy=test")
    assert (task.node_id, task.pool_id) == (
        "tvmps_9b326874fc8976af3d83992dbb2a4c3bc92b8fbf24e86cc51af35f13e1e8e268_d", "ncj-windows-2012-r2")
    assert (task.exit_code, task.result, task.end_time) == (None, None, None)
    assert task.environment == ()                      # environmentSettings absent
    assert task.max_wall_clock_seconds is None         # TimeSpan.MaxValue: unlimited
    assert (task.retry_count, task.requeue_count, task.required_slots) == (0, 0, 1)


def test_task_record_of_a_recorded_completed_task(service, gateway):
    serve(service, "GET", "/jobs/ncj-ubuntu1604/tasks/myTask", "cli-extensions/task_get_completed.json")

    task = gateway.get_task("ncj-ubuntu1604", "myTask")

    assert task == TaskRecord(
        job_id="ncj-ubuntu1604", id="myTask", display_name=None, state="completed", previous_state="running",
        state_transition_time=utc(2022, 9, 6, 23, 45, 31, 168152), creation_time=utc(2022, 9, 6, 23, 45, 29, 995481),
        command_line='/bin/bash -c "echo test"', exit_code=0, result="success", failure_category=None,
        failure_code=None, failure_message=None, retry_count=0, requeue_count=0,
        start_time=utc(2022, 9, 6, 23, 45, 30, 635053), end_time=utc(2022, 9, 6, 23, 45, 31, 168152),
        node_id="tvmps_d60153fb260c911cd921ac8003a07aad582b51c4024f09657a154ab6b1578235_d", pool_id="ncj-ubuntu1604",
        required_slots=1, environment=(), max_wall_clock_seconds=None, max_task_retry_count=0,
        # A success with no exitConditions satisfies the tasks that depend on it (Batch's default).
        dependency_action="satisfy")


def test_task_record_keeps_the_environment_and_limits_batch_sent(service, gateway):
    serve(service, "GET", "/jobs/xplatJobForTaskTests/tasks/xplatTask", "azure-cli/task_get_with_environment.json")

    task = gateway.get_task("xplatJobForTaskTests", "xplatTask")

    assert task.environment == (("env1", "value1"), ("env2", "value2"))
    assert (task.max_wall_clock_seconds, task.max_task_retry_count, task.display_name) == (86_400, 2, "displayName")


def test_file_records_from_recorded_file_lists(service, gateway):
    serve(service, "GET", "/jobs/batch/tasks/test_task/files", "sdk-assets/task_file_list.json")
    node_files = serve(service, "GET", f"/pools/2b751f41/nodes/{WINDOWS_NODE}/files", "sdk-assets/node_file_list.json")

    task_files = gateway.list_task_files("batch", "test_task")
    on_node = gateway.list_node_files("2b751f41", WINDOWS_NODE)

    assert task_files == [FileRecord("stdout.txt", False, 13, utc(2025, 3, 19, 19, 29, 39, 182590)),   # sent as "13"
                          FileRecord("wd", True, None, None)]
    assert [(f.name, f.is_directory, f.size) for f in on_node] == [
        (entry["name"], entry["isDirectory"], int(entry["properties"]["contentLength"]) if "properties" in entry
         else None) for entry in node_files["body"]["value"]]


def test_a_recorded_file_is_read_and_sized(service, gateway):
    serve(service, "GET", "/jobs/batch/tasks/test_task/files/stdout.txt", "sdk-assets/task_file_content.json")
    serve(service, "HEAD", "/jobs/batch/tasks/test_task/files/stdout.txt", "sdk-assets/task_file_properties.json")

    assert gateway.read_task_file("batch", "test_task", "stdout.txt") == b"hello world\r\n"
    assert gateway.get_task_file_size("batch", "test_task", "stdout.txt") == 13


def test_recorded_creates_answer_201_with_an_empty_body(service, gateway):
    serve(service, "POST", "/pools", "cli-extensions/pool_add.json")
    serve(service, "POST", "/jobs", "sdk-assets/job_add.json")

    gateway.create_pool(PoolSpec(id="ncj-ubuntu1604", vm_size="standard_d1_v2", image=UBUNTU_1804))
    gateway.create_job(JobSpec(id="batch_test_job_", pool_id="ncj-ubuntu1604"))

    assert [request.path for request in service.requests] == ["/pools", "/jobs"]


@pytest.mark.parametrize("name, error, code", [
    ("sdk-assets/error_pool_not_found.json", NotFound, "PoolNotFound"),
    ("sdk-assets/error_job_exists.json", AlreadyExists, "JobExists"),
    ("cli-extensions/error_pool_exists.json", AlreadyExists, "PoolExists"),
])
def test_recorded_error_bodies_become_our_errors(service, gateway, name, error, code):
    response = recorded(name)
    method, path = response["request"].split("?")[0].split(" ")
    service.routes[(method, "/pools/p" if method == "GET" else path)] = Answer.recorded(name)
    call = {"GET": lambda: gateway.get_pool("p"),
            "POST /jobs": lambda: gateway.create_job(JobSpec(id="j", pool_id="p")),
            "POST /pools": lambda: gateway.create_pool(PoolSpec(id="p", vm_size="s", image=UBUNTU_1804))}

    with pytest.raises(error) as caught:
        call["GET" if method == "GET" else f"{method} {path}"]()

    first_line = response["body"]["message"]["value"].split("\n")[0]
    assert (caught.value.code, caught.value.status, caught.value.message) == (code, response["status"], first_line)


def test_the_azure_cli_recorded_add_task_answer_settles_in_one_request(service, gateway):
    answer = Answer.recorded("azure-cli/add_task_collection.json")
    service.routes[("POST", "/jobs/xplatJobForTaskTests/addtaskcollection")] = answer

    result = gateway.add_tasks("xplatJobForTaskTests", [TaskSpec(id=f"xplatTask{n}", command_line="c")
                                                        for n in (3, 2, 1)], budget_seconds=5)

    assert sorted(result.added) == ["xplatTask1", "xplatTask2", "xplatTask3"] and result.failures == ()
    assert len(service.requests) == 1


# --- the same records whatever the casing of enums, and with absent lists ------------------------

ENUM_FIELDS = {"state", "previousState", "allocationState", "schedulingState", "nodeFillType", "result",
               "onAllTasksComplete", "category", "status"}


def pascal_case_enums(value):
    """The body with every enum value PascalCased ("active" → "Active"), as the service writes some of them."""
    if isinstance(value, list):
        return [pascal_case_enums(item) for item in value]
    if isinstance(value, dict):
        return {key: (item[:1].upper() + item[1:] if key in ENUM_FIELDS and isinstance(item, str)
                      else pascal_case_enums(item)) for key, item in value.items()}
    return value


READERS = [
    ("cli-extensions/pool_get.json", "GET", "/pools/ncj-ubuntu1604", lambda g: g.get_pool("ncj-ubuntu1604")),
    ("cli-extensions/node_list_with_recent_tasks.json", "GET", "/pools/p/nodes", lambda g: g.list_nodes("p")),
    ("cli-extensions/job_get.json", "GET", "/jobs/j", lambda g: g.get_job("j")),
    ("cli-extensions/task_list_running_windows.json", "GET", "/jobs/j/tasks", lambda g: list(g.list_tasks("j"))),
    ("cli-extensions/task_list_active.json", "GET", "/jobs/j/tasks", lambda g: list(g.list_tasks("j"))),
    ("cli-extensions/task_get_completed.json", "GET", "/jobs/j/tasks/t", lambda g: g.get_task("j", "t")),
]


@pytest.mark.parametrize("name, method, path, read", READERS, ids=[reader[0] for reader in READERS])
def test_records_do_not_depend_on_the_casing_of_enums(service, gateway, name, method, path, read):
    service.routes[(method, path)] = Answer.recorded(name)
    as_recorded = read(gateway)
    shouted = recorded(name)
    service.routes[(method, path)] = Answer(200, pascal_case_enums(shouted["body"]), shouted["headers"])
    assert pascal_case_enums(shouted["body"]) != shouted["body"]

    assert read(gateway) == as_recorded


def test_absent_lists_read_as_empty(service, gateway):
    body = {key: value for key, value in recorded_body("cli-extensions/node_list_creating.json").items()
            if key != "value"}
    service.routes[("GET", "/pools/p/nodes")] = Answer(200, body)
    service.routes[("GET", "/jobs/j/tasks")] = Answer(200, body)
    task = copy.deepcopy(recorded_body("azure-cli/task_get_with_environment.json"))
    del task["environmentSettings"], task["constraints"], task["executionInfo"]
    service.routes[("GET", "/jobs/j/tasks/t")] = Answer(200, task)

    assert gateway.list_nodes("p") == []
    assert list(gateway.list_tasks("j")) == []
    assert gateway.get_task("j", "t").environment == ()
