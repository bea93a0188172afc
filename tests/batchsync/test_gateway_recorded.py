"""The gateway on what the real Batch service sends: recorded responses (tests/batchsync/recorded/README.md says
where each comes from) served over real HTTP to the real SDK, read through BatchGateway."""

import copy

import pytest

from batchsync.gateway import AlreadyExists, BatchGateway, ImageSpec, PoolSpec, TaskFailure, TaskSpec, convert
from tests.batchsync.recorded.service import Answer, RecordedService, recorded, recorded_body

ADD_TASKS = "/jobs/job-1/addtaskcollection"


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
    assert result.failures == (TaskFailure("t0002", "InvalidPropertyValue",
                                           "The value provided for one of the properties in the request body is "
                                           "invalid."),)
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
        gateway.create_pool(PoolSpec(id="ncj-ubuntu1604", vm_size="standard_d1_v2",
                                     image=ImageSpec("canonical", "ubuntuserver", "18.04-lts",
                                                     "batch.node.ubuntu 18.04")))

    assert caught.value.code == "PoolExists" and caught.value.message == "The specified pool already exists."
    assert recorded("cli-extensions/error_pool_exists.json")["status"] == caught.value.status == 409
