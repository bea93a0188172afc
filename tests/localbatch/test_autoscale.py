"""Autoscale of pools through the real azure-batch SDK: enable, evaluate, disable, pools created with a
formula, periodic evaluation resizing the pool, and the refusals."""

import json
from datetime import timedelta

import pytest
from azure.batch import BatchClient, models
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError, ResourceExistsError

from localbatch import API_VERSION, admin
from tests.localbatch.helpers import make_pool, sh, signed_send, task, wait_for

VM_SIZE = "standard_d2s_v3"
SIX_MINUTES = timedelta(minutes=6)


def error_of(caught) -> tuple[int, str | None]:
    return caught.value.response.status_code, caught.value.error.code


def details_of(caught) -> dict:
    return {d.code: d.message for d in caught.value.error.details}


def enable(client, pool_id: str, text: str, interval: timedelta | None = SIX_MINUTES, **options):
    client.enable_pool_auto_scale(pool_id, models.BatchPoolEnableAutoScaleOptions(
        auto_scale_formula=text, auto_scale_evaluation_interval=interval), **options)


def evaluate(client, pool_id: str, text: str) -> models.AutoScaleRun:
    return client.evaluate_pool_auto_scale(pool_id, models.BatchPoolEvaluateAutoScaleOptions(auto_scale_formula=text))


def no_retry_client(localbatch) -> BatchClient:
    """A client that gives up at the first 503, so a refusal the SDK would retry shows at once."""
    return BatchClient(localbatch.endpoint, AzureNamedKeyCredential(localbatch.account_name, localbatch.account_key),
                       retry_total=0)


def test_enable_runs_the_formula_at_once_and_resizes_the_pool(localbatch, batch_client):
    make_pool(batch_client, "scaled", nodes=0)
    before = batch_client.get_pool("scaled")
    status, headers = batch_client.enable_pool_auto_scale(
        "scaled", models.BatchPoolEnableAutoScaleOptions(auto_scale_formula="$TargetDedicatedNodes=2",
                                                         auto_scale_evaluation_interval=SIX_MINUTES),
        cls=lambda response, _body, response_headers: (response.http_response.status_code, response_headers))
    assert status == 200
    assert headers["ETag"] != before.etag
    assert headers["DataServiceId"].endswith("/pools/scaled/enableautoscale")
    pool = batch_client.get_pool("scaled")
    assert pool.enable_auto_scale is True
    assert pool.auto_scale_formula == "$TargetDedicatedNodes=2"
    assert pool.auto_scale_evaluation_interval == SIX_MINUTES
    assert pool.auto_scale_run.results == \
        "$TargetDedicatedNodes=2;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue"
    assert pool.auto_scale_run.error is None
    assert pool.auto_scale_run.timestamp == pool.last_modified   # the run is the enable's, as on Batch
    assert pool.target_dedicated_nodes == 2
    wait_for(lambda: (p := batch_client.get_pool("scaled")).allocation_state == "steady"
             and p.current_dedicated_nodes == 2, message="two nodes")


def test_evaluate_answers_the_run_without_applying_it(localbatch, batch_client):
    make_pool(batch_client, "evaluated", nodes=0)
    enable(batch_client, "evaluated", "$TargetDedicatedNodes=1")
    run = evaluate(batch_client, "evaluated", "$TargetDedicatedNodes=3")
    assert isinstance(run, models.AutoScaleRun)
    assert run.results == "$TargetDedicatedNodes=3;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue"
    assert run.error is None and run.timestamp is not None
    pool = batch_client.get_pool("evaluated")
    assert pool.target_dedicated_nodes == 1 and pool.auto_scale_formula == "$TargetDedicatedNodes=1"
    status, headers, body = signed_send(
        localbatch, "POST", f"/pools/evaluated/evaluateautoscale?api-version={API_VERSION}",
        json.dumps({"autoScaleFormula": "a = 2; $TargetLowPriorityNodes = a * 2"}).encode())
    assert status == 200
    assert body["odata.metadata"].endswith("$metadata#Microsoft.Azure.Batch.Protocol.Entities.AutoScaleRun")
    assert body["results"] == ("$TargetDedicatedNodes=1;$TargetLowPriorityNodes=4;"
                               "$NodeDeallocationOption=requeue;a=2")
    assert headers["dataserviceid"].endswith("/pools/evaluated/evaluateautoscale")


def test_evaluate_reports_a_bad_formula_in_the_run(batch_client):
    make_pool(batch_client, "checked", nodes=0)
    enable(batch_client, "checked", "$TargetDedicatedNodes=0")
    run = evaluate(batch_client, "checked", "$TargetDedicatedNodes = (1 +")
    assert run.error.code == "AutoScalingFormulaSyntaxError"
    assert run.error.error_values[0].name == "Message"
    assert run.error.error_values[0].value.startswith("Line 1, Col 29:")
    run = evaluate(batch_client, "checked",
                   "$TargetDedicatedNodes = avg($PendingTasks.GetSample(TimeInterval_Minute * 10, 70))")
    assert run.error.code == "InsufficientSampleData"
    assert run.error.message == "Autoscale evaluation failed due to insufficient sample data"
    assert "Insufficient data from data set: $PendingTasks wanted 70%" in run.error.error_values[0].value
    run = evaluate(batch_client, "checked", "$TargetDedicatedNodes = avg($CPUPercent.GetSample(1))")
    assert run.error.code == "InvalidAutoScalingSettings"
    assert "localbatch does not measure $CPUPercent" in run.error.error_values[0].value


@pytest.mark.parametrize("text, code", [
    ("$TargetDedicatedNodes = 1 +", "AutoScalingFormulaSyntaxError"),
    ("$TargetDedicatedNodes = frobnicate(2)", "AutoScalingFormulaSyntaxError"),
    ("$TargetDedicatedNodes = max($CPUPercent.GetSample(TimeInterval_Minute * 5))", "InvalidAutoScalingSettings"),
    ("x" * 8193, "AutoScalingFormulaTooLong"),
])
def test_enable_refuses_a_formula_it_cannot_use_and_changes_nothing(localbatch, batch_client, text, code):
    make_pool(batch_client, "refusing", nodes=0)
    before = batch_client.get_pool("refusing")
    with pytest.raises(HttpResponseError) as caught:
        enable(batch_client, "refusing", text)
    assert error_of(caught) == (400, code)
    after = batch_client.get_pool("refusing")
    assert after.enable_auto_scale is False and after.auto_scale_formula is None
    assert after.etag == before.etag


def test_the_refusal_says_where_the_formula_is_wrong(localbatch, batch_client):
    make_pool(batch_client, "located", nodes=0)
    with pytest.raises(HttpResponseError) as caught:
        enable(batch_client, "located", "x = 1;\n$TargetDedicatedNodes = x +* 2")
    assert details_of(caught)["Message"].startswith("Line 2, Col 28:")


@pytest.mark.parametrize("interval", [timedelta(minutes=4), timedelta(hours=169)])
def test_enable_refuses_an_interval_outside_5_minutes_to_168_hours(batch_client, interval):
    make_pool(batch_client, "intervals", nodes=0)
    with pytest.raises(HttpResponseError) as caught:
        enable(batch_client, "intervals", "$TargetDedicatedNodes=1", interval)
    assert error_of(caught) == (400, "InvalidPropertyValue")
    assert batch_client.get_pool("intervals").enable_auto_scale is False


def test_enable_without_a_formula_on_a_pool_without_autoscale_is_refused(batch_client):
    make_pool(batch_client, "formula-less", nodes=0)
    with pytest.raises(HttpResponseError) as caught:
        batch_client.enable_pool_auto_scale("formula-less", models.BatchPoolEnableAutoScaleOptions(
            auto_scale_evaluation_interval=SIX_MINUTES))
    assert error_of(caught) == (400, "MissingRequiredProperty")


def test_evaluate_needs_autoscale_enabled(batch_client):
    make_pool(batch_client, "fixed", nodes=0)
    with pytest.raises(ResourceExistsError) as caught:
        evaluate(batch_client, "fixed", "$TargetDedicatedNodes=1")
    assert error_of(caught) == (409, "OperationInvalidForCurrentState")


def test_a_second_enable_within_30_seconds_is_refused_with_503(localbatch, batch_client):
    make_pool(batch_client, "hurried", nodes=0)
    enable(batch_client, "hurried", "$TargetDedicatedNodes=0")
    client = no_retry_client(localbatch)
    try:
        with pytest.raises(HttpResponseError) as caught:
            enable(client, "hurried", "$TargetDedicatedNodes=1")
    finally:
        client.close()
    assert error_of(caught) == (503, "TooManyEnableAutoScaleRequests")
    assert batch_client.get_pool("hurried").auto_scale_formula == "$TargetDedicatedNodes=0"


def test_a_later_enable_replaces_the_formula(localbatch, batch_client):
    admin.set_timing(localbatch.endpoint, localbatch.account_name, localbatch.account_key, time_scale=0.001)
    make_pool(batch_client, "replaced", nodes=0)
    enable(batch_client, "replaced", "$TargetDedicatedNodes=0")
    wait_for(lambda: _enable_or_none(batch_client, "replaced", "$TargetLowPriorityNodes=1"), message="second enable")
    pool = batch_client.get_pool("replaced")
    assert pool.auto_scale_formula == "$TargetLowPriorityNodes=1"
    assert pool.target_low_priority_nodes == 1


def _enable_or_none(client, pool_id: str, text: str):
    try:
        enable(client, pool_id, text, interval=None, retry_total=0)
        return True
    except HttpResponseError as exc:
        if exc.error and exc.error.code == "TooManyEnableAutoScaleRequests":
            return False
        raise


def test_resize_is_refused_while_autoscale_decides_and_allowed_after_disable(batch_client):
    make_pool(batch_client, "manual", nodes=0)
    enable(batch_client, "manual", "$TargetDedicatedNodes=1")
    wait_for(lambda: batch_client.get_pool("manual").allocation_state == "steady", message="steady")
    with pytest.raises(ResourceExistsError) as caught:
        batch_client.begin_resize_pool("manual", models.BatchPoolResizeOptions(target_dedicated_nodes=3),
                                       polling_interval=0.05).result()
    assert error_of(caught)[0] == 409
    assert batch_client.get_pool("manual").target_dedicated_nodes == 1
    batch_client.disable_pool_auto_scale("manual")
    pool = batch_client.get_pool("manual")
    assert pool.enable_auto_scale is False
    assert pool.auto_scale_formula is None and pool.auto_scale_run is None
    assert pool.target_dedicated_nodes == 1   # disabling keeps the size the formula chose
    batch_client.begin_resize_pool("manual", models.BatchPoolResizeOptions(target_dedicated_nodes=2),
                                   polling_interval=0.05).result()
    assert batch_client.get_pool("manual").current_dedicated_nodes == 2


def test_create_a_pool_with_a_formula(batch_client):
    batch_client.create_pool(models.BatchPoolCreateOptions(
        id="born-scaled", vm_size=VM_SIZE, enable_auto_scale=True,
        auto_scale_formula="$TargetDedicatedNodes = 1; $TargetLowPriorityNodes = 1",
        auto_scale_evaluation_interval=timedelta(minutes=5)))
    pool = batch_client.get_pool("born-scaled")
    assert pool.enable_auto_scale is True
    assert pool.auto_scale_run.results.startswith("$TargetDedicatedNodes=1;$TargetLowPriorityNodes=1;")
    assert (pool.target_dedicated_nodes, pool.target_low_priority_nodes) == (1, 1)
    wait_for(lambda: (p := batch_client.get_pool("born-scaled")).allocation_state == "steady"
             and (p.current_dedicated_nodes, p.current_low_priority_nodes) == (1, 1), message="two nodes")


def test_create_pool_with_autoscale_defaults_the_interval_to_15_minutes(batch_client):
    batch_client.create_pool(models.BatchPoolCreateOptions(
        id="default-interval", vm_size=VM_SIZE, enable_auto_scale=True, auto_scale_formula="$TargetDedicatedNodes=0"))
    assert batch_client.get_pool("default-interval").auto_scale_evaluation_interval == timedelta(minutes=15)


@pytest.mark.parametrize("options, code, name", [
    ({"enable_auto_scale": True}, "MissingRequiredProperty", "autoScaleFormula"),
    ({"enable_auto_scale": True, "auto_scale_formula": "$TargetDedicatedNodes=1", "target_dedicated_nodes": 2},
     "InvalidPropertyValue", "targetDedicatedNodes"),
    ({"auto_scale_formula": "$TargetDedicatedNodes=1"}, "InvalidPropertyValue", "autoScaleFormula"),
])
def test_create_pool_refuses_inconsistent_autoscale_settings(localbatch, batch_client, options, code, name):
    with pytest.raises(HttpResponseError) as caught:
        batch_client.create_pool(models.BatchPoolCreateOptions(id="inconsistent", vm_size=VM_SIZE, **options))
    assert error_of(caught) == (400, code)
    assert details_of(caught)["PropertyName"] == name
    assert localbatch.app.state.pools == {}


def test_create_pool_refuses_a_bad_formula(localbatch, batch_client):
    with pytest.raises(HttpResponseError) as caught:
        batch_client.create_pool(models.BatchPoolCreateOptions(
            id="bad-formula", vm_size=VM_SIZE, enable_auto_scale=True, auto_scale_formula="$TargetDedicatedNodes ="))
    assert error_of(caught) == (400, "AutoScalingFormulaSyntaxError")
    assert localbatch.app.state.pools == {}


FOLLOW_PENDING = """
// Nothing before the first sample; then one node per pending task, at most two.
seen = $PendingTasks.GetSamplePercent(TimeInterval_Minute);
$TargetDedicatedNodes = seen < 1 ? 0 : min(2, max($PendingTasks.GetSample(1)));
$NodeDeallocationOption = taskcompletion;
"""


def test_periodic_evaluation_follows_the_pending_tasks(localbatch, batch_client):
    # 0.002 real seconds per service second: the 5-minute interval is 0.6 s, a 30 s sample 60 ms.
    answer = admin.set_timing(localbatch.endpoint, localbatch.account_name, localbatch.account_key, time_scale=0.002)
    assert answer == {"timeScale": 0.002}
    batch_client.create_pool(models.BatchPoolCreateOptions(
        id="elastic", vm_size=VM_SIZE, enable_auto_scale=True, auto_scale_formula=FOLLOW_PENDING,
        auto_scale_evaluation_interval=timedelta(minutes=5)))
    assert batch_client.get_pool("elastic").target_dedicated_nodes == 0
    batch_client.create_job(models.BatchJobCreateOptions(id="work", pool_info=models.BatchPoolInfo(pool_id="elastic")))
    batch_client.create_task_collection("work", models.BatchTaskGroup(
        task_values=[task("t1", sh("sleep 0.5")), task("t2", sh("sleep 0.5"))]))
    wait_for(lambda: batch_client.get_pool("elastic").target_dedicated_nodes == 2, message="scaled out to 2")
    wait_for(lambda: all(t.state == "completed" for t in batch_client.list_tasks("work")), message="tasks done")
    wait_for(lambda: (p := batch_client.get_pool("elastic")).target_dedicated_nodes == 0
             and p.current_dedicated_nodes == 0, message="scaled back in")
    run = batch_client.get_pool("elastic").auto_scale_run
    assert run.error is None
    assert run.results.startswith("$TargetDedicatedNodes=0;$TargetLowPriorityNodes=0;"
                                  "$NodeDeallocationOption=taskcompletion;")


def test_the_timing_route_refuses_nonsense(localbatch):
    with pytest.raises(admin.AdminError) as caught:
        admin.set_timing(localbatch.endpoint, localbatch.account_name, localbatch.account_key, time_scale=0)
    assert caught.value.status == 400
    assert localbatch.app.timing.scale == 1.0
