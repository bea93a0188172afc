"""Pools, nodes, node files, conditional requests, paging and scheduling policy of localbatch,
driven through the real azure-batch SDK (and, where the SDK would normalise, signed raw HTTP)."""

import json
import os
from datetime import timedelta
from urllib.parse import unquote

import pytest
from azure.batch import models
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

from localbatch import API_VERSION
from tests.localbatch.helpers import make_job, make_pool, signed_send, wait_for, wait_task_completed

VM_SIZE = "standard_d2s_v3"
POLL = 0.05   # LRO polling interval for begin_* (the SDK's default is 5 s)
NODE_LIFECYCLE = ["creating", "starting", "waitingforstarttask", "idle"]


# -- helpers ----------------------------------------------------------------------------------

def signed_request(localbatch, method: str, path_and_query: str, body: bytes = b"", headers: dict | None = None):
    """A SharedKey-signed request sent byte for byte as given: (status, headers, body as JSON or bytes)."""
    return signed_send(localbatch, method, path_and_query, body, extra=headers)


def error_of(caught) -> tuple[int, str | None]:
    exc = caught.value
    return exc.response.status_code, (exc.error.code if exc.error else None)


def details_of(caught) -> dict:
    return {d.code: d.message for d in caught.value.error.details}


def create_pool(client, pool_id: str, **options):
    options.setdefault("vm_size", VM_SIZE)
    client.create_pool(models.BatchPoolCreateOptions(id=pool_id, **options))


def wait_nodes(client, pool_id: str, predicate, message: str):
    return wait_for(lambda: (nodes := list(client.list_nodes(pool_id))) and all(predicate(n) for n in nodes) and nodes,
                    message=message)


def read_node_file(client, pool_id: str, node_id: str, path: str) -> bytes:
    return b"".join(client.download_node_file(pool_id, node_id, path))


def sh(script: str) -> str:
    return "/bin/sh -c " + json.dumps(script)


def shell_start_task(script: str, **options) -> models.BatchStartTask:
    return models.BatchStartTask(command_line=sh(script), **options)


# -- creating pools ------------------------------------------------------------------------------

def test_create_pool_answers_201_with_entity_headers(batch_client):
    status, headers = batch_client.create_pool(
        models.BatchPoolCreateOptions(id="Created-Pool", vm_size="Standard_D2s_v3", display_name="My pool",
                                      target_dedicated_nodes=0, task_slots_per_node=3),
        cls=lambda response, _body, response_headers: (response.http_response.status_code, response_headers))
    assert status == 201
    pool = batch_client.get_pool("created-pool")   # ids are case-insensitive, case-preserving
    assert pool.id == "Created-Pool"
    assert headers["ETag"].startswith("0x")   # the pool's etag moves on when it turns steady
    assert headers["DataServiceId"].endswith("/pools/Created-Pool")
    assert pool.display_name == "My pool"
    assert pool.vm_size == "standard_d2s_v3"
    assert pool.task_slots_per_node == 3
    assert pool.state == "active"
    assert pool.target_dedicated_nodes == 0 and pool.target_low_priority_nodes == 0
    assert pool.task_scheduling_policy.node_fill_type == "Spread"   # as the service spells it
    assert pool.url.endswith("/pools/Created-Pool")
    assert pool.creation_time is not None and pool.last_modified is not None
    assert batch_client.pool_exists("created-pool") is True


def test_duplicate_pool_id_in_other_case_is_pool_exists(batch_client):
    create_pool(batch_client, "Dup-Pool", display_name="first")
    with pytest.raises(ResourceExistsError) as caught:
        create_pool(batch_client, "dup-POOL", display_name="second")
    assert error_of(caught) == (409, "PoolExists")
    pools = list(batch_client.list_pools())
    assert [(p.id, p.display_name) for p in pools] == [("Dup-Pool", "first")]


@pytest.mark.parametrize("bad_id", ["p" * 65, "has space", "dot.ted", "sla/sh", "ünï", "semi;colon", "a+b"])
def test_invalid_pool_ids_are_refused_and_nothing_is_created(localbatch, batch_client, bad_id):
    with pytest.raises(HttpResponseError) as caught:
        create_pool(batch_client, bad_id, target_dedicated_nodes=1)
    assert error_of(caught) == (400, "InvalidPropertyValue")
    assert details_of(caught)["PropertyName"] == "id"
    assert list(batch_client.list_pools()) == []
    assert localbatch.app.state.pools == {}


def test_pool_id_of_64_characters_with_dash_and_underscore_is_fine(batch_client):
    pool_id = "Az09-_" + "x" * 58
    create_pool(batch_client, pool_id)
    assert batch_client.get_pool(pool_id).id == pool_id


@pytest.mark.parametrize("body, property_name", [
    ({"id": "no-vm-size"}, "vmSize"),
    ({"vmSize": VM_SIZE}, "id"),
])
def test_missing_required_pool_property(localbatch, body, property_name):
    status, _, answer = signed_request(localbatch, "POST", f"/pools?api-version={API_VERSION}",
                                       json.dumps(body).encode())
    assert (status, answer["code"]) == (400, "MissingRequiredProperty")
    assert {"key": "PropertyName", "value": property_name} in answer["values"]
    assert localbatch.app.state.pools == {}


def test_missing_vm_size_through_the_sdk(batch_client):
    with pytest.raises(HttpResponseError) as caught:
        batch_client.create_pool(models.BatchPoolCreateOptions(id="no-vm-size", target_dedicated_nodes=2))
    assert error_of(caught) == (400, "MissingRequiredProperty")
    assert details_of(caught)["PropertyName"] == "vmSize"
    with pytest.raises(ResourceNotFoundError):
        batch_client.get_pool("no-vm-size")


@pytest.mark.parametrize("field, value", [
    ("targetDedicatedNodes", -1), ("taskSlotsPerNode", 0), ("resizeTimeout", "PT1M"),
    ("taskSchedulingPolicy", {"nodeFillType": "diagonal"}),
    ("startTask", {"commandLine": "x", "waitForSuccess": "yes"}),
])
def test_invalid_pool_property_values(localbatch, field, value):
    body = {"id": "bad-values", "vmSize": VM_SIZE, field: value}
    status, _, answer = signed_request(localbatch, "POST", f"/pools?api-version={API_VERSION}",
                                       json.dumps(body).encode())
    assert (status, answer["code"]) == (400, "InvalidPropertyValue")
    assert localbatch.app.state.pools == {}


def test_get_missing_pool_is_pool_not_found(batch_client):
    with pytest.raises(ResourceNotFoundError) as caught:
        batch_client.get_pool("nope")
    assert error_of(caught) == (404, "PoolNotFound")
    # pool_exists raises too (an SDK quirk): the HEAD answer is a 404.
    with pytest.raises(ResourceNotFoundError):
        batch_client.pool_exists("nope")


# -- get / list / $filter / $select --------------------------------------------------------------

def test_list_pools_with_filter_and_select(batch_client):
    create_pool(batch_client, "alpha", task_slots_per_node=1, display_name="A")
    create_pool(batch_client, "beta", task_slots_per_node=2, display_name="B")
    create_pool(batch_client, "gamma", task_slots_per_node=4, display_name="C")
    assert [p.id for p in batch_client.list_pools()] == ["alpha", "beta", "gamma"]
    assert [p.id for p in batch_client.list_pools(filter="id eq 'beta'")] == ["beta"]
    assert [p.id for p in batch_client.list_pools(filter="taskSlotsPerNode gt 1")] == ["beta", "gamma"]
    assert [p.id for p in batch_client.list_pools(filter="startswith(id,'a') or displayName eq 'C'")] == \
        ["alpha", "gamma"]
    assert [p.id for p in batch_client.list_pools(filter="state eq 'active' and id ne 'alpha'")] == ["beta", "gamma"]

    selected = list(batch_client.list_pools(select=["id", "taskSlotsPerNode"]))
    assert [(p.id, p.task_slots_per_node) for p in selected] == [("alpha", 1), ("beta", 2), ("gamma", 4)]
    assert all(p.display_name is None and p.vm_size is None and p.state is None for p in selected)

    one = batch_client.get_pool("gamma", select=["id", "displayName"])
    assert (one.id, one.display_name, one.vm_size, one.task_slots_per_node) == ("gamma", "C", None, None)


def test_bad_filter_and_select_are_invalid_query_parameter_value(batch_client):
    create_pool(batch_client, "filtered")
    for bad in ("state eq", "nosuchproperty eq 'x'", "id eq 'a' and", "id gt", "(id eq 'x'", "id ~ 'x'"):
        with pytest.raises(HttpResponseError) as caught:
            list(batch_client.list_pools(filter=bad))
        assert error_of(caught) == (400, "InvalidQueryParameterValue"), bad
        assert details_of(caught)["QueryParameterName"] == "$filter"
    with pytest.raises(HttpResponseError) as caught:
        list(batch_client.list_nodes("filtered", filter="state eq idle"))
    assert error_of(caught) == (400, "InvalidQueryParameterValue")


# -- resizing -----------------------------------------------------------------------------------

def test_resize_up_and_down_returns_once_steady(batch_client):
    make_pool(batch_client, "elastic", nodes=1)
    poller = batch_client.begin_resize_pool(
        "elastic", models.BatchPoolResizeOptions(target_dedicated_nodes=3, target_low_priority_nodes=1),
        polling_interval=POLL)
    assert batch_client.get_pool("elastic").allocation_state == "resizing"
    poller.result(timeout=20)
    assert poller.done()
    pool = batch_client.get_pool("elastic")
    assert pool.allocation_state == "steady"
    assert (pool.target_dedicated_nodes, pool.target_low_priority_nodes) == (3, 1)
    assert (pool.current_dedicated_nodes, pool.current_low_priority_nodes) == (3, 1)
    nodes = list(batch_client.list_nodes("elastic"))
    assert sorted(n.is_dedicated for n in nodes) == [False, True, True, True]
    assert {n.state for n in nodes} == {"idle"}
    assert len({n.id for n in nodes}) == 4

    batch_client.begin_resize_pool("elastic", models.BatchPoolResizeOptions(
        target_dedicated_nodes=1, target_low_priority_nodes=0), polling_interval=POLL).result(timeout=20)
    pool = batch_client.get_pool("elastic")
    assert (pool.allocation_state, pool.current_dedicated_nodes, pool.current_low_priority_nodes) == ("steady", 1, 0)
    nodes = list(batch_client.list_nodes("elastic"))
    assert [(n.is_dedicated, n.state) for n in nodes] == [(True, "idle")]

    batch_client.begin_resize_pool("elastic", models.BatchPoolResizeOptions(target_dedicated_nodes=0),
                                   polling_interval=POLL).result(timeout=20)
    assert list(batch_client.list_nodes("elastic")) == []
    assert batch_client.get_pool("elastic").current_dedicated_nodes == 0


def test_resize_while_resizing_is_pool_being_resized(batch_client):
    create_pool(batch_client, "busy", target_dedicated_nodes=2)   # creation counts as a resize
    with pytest.raises(ResourceExistsError) as caught:
        batch_client.begin_resize_pool("busy", models.BatchPoolResizeOptions(target_dedicated_nodes=5))
    assert error_of(caught) == (409, "PoolBeingResized")
    wait_for(lambda: batch_client.get_pool("busy").allocation_state == "steady", message="steady")
    pool = batch_client.get_pool("busy")
    assert (pool.target_dedicated_nodes, pool.current_dedicated_nodes) == (2, 2)
    # Once steady, it may be resized again.
    batch_client.begin_resize_pool("busy", models.BatchPoolResizeOptions(target_dedicated_nodes=1),
                                   polling_interval=POLL).result(timeout=20)
    assert batch_client.get_pool("busy").current_dedicated_nodes == 1


def test_resize_with_too_short_timeout_is_invalid(batch_client):
    create_pool(batch_client, "short")
    wait_for(lambda: batch_client.get_pool("short").allocation_state == "steady", message="steady")
    with pytest.raises(HttpResponseError) as caught:
        batch_client.begin_resize_pool("short", models.BatchPoolResizeOptions(
            target_dedicated_nodes=1, resize_timeout=timedelta(minutes=1)))
    assert error_of(caught) == (400, "InvalidPropertyValue")
    assert batch_client.get_pool("short").allocation_state == "steady"


# -- deleting -----------------------------------------------------------------------------------

def test_delete_pool_removes_it_and_its_node_directories(batch_client):
    make_pool(batch_client, "doomed", nodes=2, start_task=shell_start_task('printf %s "$AZ_BATCH_NODE_ROOT_DIR"'))
    nodes = wait_nodes(batch_client, "doomed", lambda n: n.state == "idle", "nodes idle")
    roots = [read_node_file(batch_client, "doomed", n.id, "startup/stdout.txt").decode() for n in nodes]
    assert len(set(roots)) == 2 and all(os.path.isdir(os.path.join(root, "startup")) for root in roots)

    batch_client.begin_delete_pool("doomed", polling_interval=POLL).result(timeout=20)
    with pytest.raises(ResourceNotFoundError) as caught:
        batch_client.get_pool("doomed")
    assert error_of(caught) == (404, "PoolNotFound")
    with pytest.raises(ResourceNotFoundError) as caught:
        list(batch_client.list_nodes("doomed"))
    assert error_of(caught) == (404, "PoolNotFound")
    assert not any(os.path.exists(root) for root in roots)
    assert [row.pool_id for row in batch_client.list_pool_node_counts()] == []
    # The id is free again.
    create_pool(batch_client, "doomed")
    assert batch_client.get_pool("doomed").state == "active"


def test_delete_pool_requeues_its_running_tasks(batch_client):
    make_pool(batch_client, "busy-pool", nodes=1)
    make_job(batch_client, "busy-job", "busy-pool")
    batch_client.create_task("busy-job", models.BatchTaskCreateOptions(id="long", command_line="sleep 30"))
    wait_for(lambda: batch_client.get_task("busy-job", "long").state == "running", message="task running")
    batch_client.begin_delete_pool("busy-pool", polling_interval=POLL).result(timeout=20)
    task = batch_client.get_task("busy-job", "long")
    assert task.state == "active"
    assert task.execution_info.requeue_count == 1
    assert task.node_info is None
    with pytest.raises(ResourceNotFoundError):
        batch_client.get_pool("busy-pool")


# -- node counts ---------------------------------------------------------------------------------

def test_list_pool_node_counts_per_state(batch_client):
    make_pool(batch_client, "counts-a", nodes=2, low_priority=1)
    make_pool(batch_client, "counts-b", nodes=1, start_task=shell_start_task("exit 2"))
    wait_nodes(batch_client, "counts-a", lambda n: n.state == "idle", "counts-a idle")
    wait_nodes(batch_client, "counts-b", lambda n: n.state == "starttaskfailed", "counts-b starttaskfailed")

    rows = {row.pool_id: row for row in batch_client.list_pool_node_counts()}
    assert sorted(rows) == ["counts-a", "counts-b"]
    a, b = rows["counts-a"], rows["counts-b"]
    assert (a.dedicated.idle, a.dedicated.total, a.dedicated.running, a.dedicated.creating) == (2, 2, 0, 0)
    assert (a.low_priority.idle, a.low_priority.total) == (1, 1)
    assert (b.dedicated.start_task_failed, b.dedicated.idle, b.dedicated.total) == (1, 0, 1)
    assert b.low_priority.total == 0
    assert a.dedicated.waiting_for_start_task == 0 and a.dedicated.leaving_pool == 0

    filtered = list(batch_client.list_pool_node_counts(filter="poolId eq 'counts-b'"))
    assert [row.pool_id for row in filtered] == ["counts-b"]

    # A running task shows up in 'running'.
    make_job(batch_client, "counts-job", "counts-a")
    batch_client.create_task("counts-job", models.BatchTaskCreateOptions(id="t", command_line="sleep 30"))
    wait_for(lambda: batch_client.get_task("counts-job", "t").state == "running", message="running")
    row = next(iter(batch_client.list_pool_node_counts(filter="poolId eq 'counts-a'")))
    assert row.dedicated.running + row.low_priority.running == 1
    assert row.dedicated.idle + row.low_priority.idle == 2
    batch_client.terminate_task("counts-job", "t")


# -- nodes ---------------------------------------------------------------------------------------

def test_list_and_get_nodes(batch_client):
    make_pool(batch_client, "nodes-pool", nodes=2, low_priority=1, slots=2)
    nodes = wait_nodes(batch_client, "nodes-pool", lambda n: n.state == "idle", "idle")
    assert len(nodes) == 3
    assert sorted(n.is_dedicated for n in nodes) == [False, True, True]
    for listed in nodes:
        node = batch_client.get_node("nodes-pool", listed.id)
        assert node.id == listed.id and node.id.startswith("tvm-")
        assert node.state == "idle"
        assert node.scheduling_state == "enabled"
        assert node.vm_size == VM_SIZE
        assert node.affinity_id == f"TVM:{node.id}"
        assert node.is_dedicated == listed.is_dedicated
        assert (node.running_tasks_count, node.running_task_slots_count, node.total_tasks_run) == (0, 0, 0)
        assert node.url.endswith(f"/pools/nodes-pool/nodes/{node.id}")
        assert node.allocation_time is not None and node.state_transition_time is not None

    low = [n.id for n in batch_client.list_nodes("nodes-pool", filter="isDedicated eq false")]
    assert low == [n.id for n in nodes if not n.is_dedicated]
    selected = batch_client.get_node("nodes-pool", nodes[0].id, select=["id", "state"])
    assert (selected.id, selected.state, selected.vm_size, selected.is_dedicated) == (nodes[0].id, "idle", None, None)
    pages = list(batch_client.list_nodes("nodes-pool", max_results=2).by_page())
    assert [len(list(page)) for page in pages] == [2, 1]

    with pytest.raises(ResourceNotFoundError) as caught:
        batch_client.get_node("nodes-pool", "tvm-nope")
    assert error_of(caught) == (404, "NodeNotFound")
    with pytest.raises(ResourceNotFoundError) as caught:
        batch_client.get_node("no-such-pool", nodes[0].id)
    assert error_of(caught) == (404, "PoolNotFound")


def test_node_goes_through_the_lifecycle_states(batch_client):
    create_pool(batch_client, "life", target_dedicated_nodes=1,
                start_task=shell_start_task("sleep 1"))
    node_id = wait_for(lambda: [n.id for n in batch_client.list_nodes("life")], message="node")[0]
    seen, infos = [], []

    def watch():
        node = batch_client.get_node("life", node_id)
        if not seen or seen[-1] != node.state:
            seen.append(node.state)
            infos.append(node.start_task_info.state if node.start_task_info else None)
        return node.state == "idle"

    wait_for(watch, interval=0.02, message="idle")
    assert seen[-1] == "idle"
    assert "waitingforstarttask" in seen
    assert infos[seen.index("waitingforstarttask")] == "running"
    positions = [NODE_LIFECYCLE.index(state) for state in seen]
    assert positions == sorted(positions), seen
    node = batch_client.get_node("life", node_id)
    assert node.start_task_info.state == "completed"


def test_successful_start_task(batch_client):
    make_pool(batch_client, "started", nodes=1, start_task=shell_start_task(
        'echo "hello from $AZ_BATCH_NODE_ID"; echo warn >&2; pwd > where.txt; echo "$AZ_BATCH_TASK_DIR" >> where.txt',
        environment_settings=[models.EnvironmentSetting(name="GREETING", value="hi")]))
    node = wait_nodes(batch_client, "started", lambda n: n.state == "idle", "idle")[0]
    info = node.start_task_info
    assert (info.state, info.exit_code, info.result, info.retry_count) == ("completed", 0, "success", 0)
    assert info.failure_info is None
    assert info.start_time <= info.end_time
    assert read_node_file(batch_client, "started", node.id, "startup/stdout.txt") == f"hello from {node.id}\n".encode()
    assert read_node_file(batch_client, "started", node.id, "startup/stderr.txt") == b"warn\n"
    where = read_node_file(batch_client, "started", node.id, "startup/wd/where.txt").decode().split("\n")
    assert where[0].endswith("/startup/wd") and where[1].endswith("/startup")


def test_failing_start_task_marks_node_starttaskfailed_and_gets_no_tasks(batch_client):
    """Fails on the dedicated node only (after one retry); the low-priority node is healthy and
    takes every task."""
    start_task = shell_start_task(
        'echo attempt >> "$AZ_BATCH_NODE_SHARED_DIR/attempts"; test "$AZ_BATCH_NODE_IS_DEDICATED" = false',
        max_task_retry_count=1)
    make_pool(batch_client, "half-bad", nodes=1, low_priority=1, start_task=start_task)
    nodes = wait_nodes(batch_client, "half-bad", lambda n: n.state in ("idle", "starttaskfailed"), "start tasks done")
    bad = next(n for n in nodes if n.is_dedicated)
    good = next(n for n in nodes if not n.is_dedicated)
    assert (bad.state, good.state) == ("starttaskfailed", "idle")
    info = bad.start_task_info
    assert (info.state, info.result, info.exit_code, info.retry_count) == ("completed", "failure", 1, 1)
    assert info.last_retry_time is not None
    assert (info.failure_info.category, info.failure_info.code) == ("usererror", "FailureExitCode")
    assert read_node_file(batch_client, "half-bad", bad.id, "shared/attempts") == b"attempt\nattempt\n"
    assert read_node_file(batch_client, "half-bad", good.id, "shared/attempts") == b"attempt\n"
    assert good.start_task_info.retry_count == 0
    assert [n.id for n in batch_client.list_nodes("half-bad", filter="state eq 'starttaskfailed'")] == [bad.id]

    make_job(batch_client, "half-bad-job", "half-bad")
    batch_client.create_task_collection("half-bad-job", models.BatchTaskGroup(task_values=[
        models.BatchTaskCreateOptions(id=f"t{i}", command_line="true") for i in range(4)]))
    for i in range(4):
        task = wait_task_completed(batch_client, "half-bad-job", f"t{i}")
        assert task.node_info.node_id == good.id
    assert batch_client.get_node("half-bad", bad.id).total_tasks_run == 0
    assert batch_client.get_node("half-bad", good.id).total_tasks_run == 4


def test_tasks_wait_while_the_only_node_failed_its_start_task(batch_client):
    make_pool(batch_client, "all-bad", nodes=1, start_task=shell_start_task("exit 7"))
    node = wait_nodes(batch_client, "all-bad", lambda n: n.state == "starttaskfailed", "starttaskfailed")[0]
    assert node.start_task_info.exit_code == 7 and node.start_task_info.retry_count == 0
    make_job(batch_client, "stuck-job", "all-bad")
    batch_client.create_task("stuck-job", models.BatchTaskCreateOptions(id="t", command_line="true"))
    # A healthy pool runs such a task in well under a second; give the scheduler a few rounds.
    make_pool(batch_client, "control", nodes=1)
    make_job(batch_client, "control-job", "control")
    batch_client.create_task("control-job", models.BatchTaskCreateOptions(id="t", command_line="true"))
    wait_task_completed(batch_client, "control-job", "t")
    task = batch_client.get_task("stuck-job", "t")
    assert task.state == "active" and task.node_info is None
    assert batch_client.get_node("all-bad", node.id).total_tasks_run == 0


# -- node files -----------------------------------------------------------------------------------

@pytest.fixture
def file_node(batch_client):
    make_pool(batch_client, "files-pool", nodes=1, start_task=shell_start_task(
        'echo start-out; mkdir -p deep/er && printf 12345 > deep/er/five.txt; '
        'ln -s / "$AZ_BATCH_NODE_SHARED_DIR/escape"'))
    return wait_nodes(batch_client, "files-pool", lambda n: n.state == "idle", "idle")[0].id


def test_list_node_files(batch_client, file_node):
    top = {f.name: f for f in batch_client.list_node_files("files-pool", file_node)}
    assert {"shared", "startup", "workitems"} <= set(top)
    assert "startup/stdout.txt" not in top
    assert all(f.is_directory for f in top.values())

    everything = {f.name: f for f in batch_client.list_node_files("files-pool", file_node, recursive=True)}
    assert {"startup/stdout.txt", "startup/stderr.txt", "startup/wd", "startup/wd/deep/er/five.txt"} <= set(everything)
    five = everything["startup/wd/deep/er/five.txt"]
    assert five.is_directory is False
    assert int(five.properties.content_length) == 5
    assert five.properties.last_modified is not None
    assert five.url.endswith(f"/pools/files-pool/nodes/{file_node}/files/startup/wd/deep/er/five.txt")
    assert everything["startup/wd"].is_directory is True and everything["startup/wd"].properties is None

    startup = [f.name for f in batch_client.list_node_files("files-pool", file_node, recursive=True,
                                                           filter="startswith(name,'startup')")]
    assert "startup/wd/deep/er/five.txt" in startup and "startup" in startup
    assert all(name.startswith("startup") for name in startup)
    assert not any(name.startswith("shared") for name in startup)

    pages = list(batch_client.list_node_files("files-pool", file_node, recursive=True, max_results=3,
                                              filter="startswith(name,'startup')").by_page())
    paged = [f.name for page in pages for f in page]
    assert paged == startup and len(pages) == -(-len(startup) // 3)


def test_node_file_properties_head(batch_client, file_node):
    props = batch_client.get_node_file_properties("files-pool", file_node, "startup/wd/deep/er/five.txt")
    assert int(props.content_length) == 5
    assert props.is_directory is False
    assert props.last_modified is not None and props.creation_time is not None
    assert unquote(props.url).endswith("/files/startup/wd/deep/er/five.txt")   # the service percent-encodes it
    directory = batch_client.get_node_file_properties("files-pool", file_node, "startup/wd")
    assert directory.is_directory is True
    assert read_node_file(batch_client, "files-pool", file_node, "startup/stdout.txt") == b"start-out\n"
    with pytest.raises(ResourceNotFoundError) as caught:
        batch_client.get_node_file_properties("files-pool", file_node, "startup/nothing.txt")
    assert caught.value.response.status_code == 404
    with pytest.raises(ResourceNotFoundError) as caught:
        read_node_file(batch_client, "files-pool", file_node, "startup/nothing.txt")
    # Downloads are streamed, so the SDK does not read the error body: only the status is known.
    assert caught.value.response.status_code == 404


SDK_ESCAPES = ["../../../state.sqlite3", "startup/../../../../state.sqlite3", "/etc/passwd", "startup/wd/../../..",
               "shared/../../../.."]
RAW_ESCAPES = ["..", "../../../state.sqlite3", "%2e%2e/%2e%2e/%2e%2e/state.sqlite3",
               "%2E%2E%2F%2E%2E%2F%2E%2E%2Fstate.sqlite3", "startup/../../../state.sqlite3",
               "..%2f..%2f..%2fstate.sqlite3", "%2Fetc%2Fpasswd", "startup/%2e%2e/%2e%2e/%2e%2e/state.sqlite3"]


def test_node_file_path_escapes_are_refused_through_the_sdk(batch_client, file_node):
    """The SDK sends these as one encoded segment (..%2F..%2F...). A bare '..' is left out: the
    requests transport folds the dot segment away after signing, so it never reaches the server."""
    for path in SDK_ESCAPES:
        with pytest.raises(HttpResponseError) as caught:
            read_node_file(batch_client, "files-pool", file_node, path)
        assert caught.value.response.status_code == 400, path
        with pytest.raises(HttpResponseError) as caught:
            batch_client.get_node_file_properties("files-pool", file_node, path)
        assert caught.value.response.status_code == 400, path
        with pytest.raises(HttpResponseError) as caught:
            batch_client.delete_node_file("files-pool", file_node, path, recursive=True)
        assert error_of(caught) == (400, "InvalidUri"), path
    properties = batch_client.get_node_file_properties("files-pool", file_node, "startup/stdout.txt")
    assert int(properties.content_length) == 10


def test_node_file_path_escapes_are_refused_on_the_wire(localbatch, batch_client, file_node):
    """Sent byte for byte (no client normalisation of dot segments or of %2e)."""
    for raw in RAW_ESCAPES:
        for method in ("GET", "HEAD", "DELETE"):
            status, _, body = signed_request(
                localbatch, method, f"/pools/files-pool/nodes/{file_node}/files/{raw}?api-version={API_VERSION}")
            assert status == 400, (raw, method, status, body)
            if method != "HEAD":
                assert body["code"] == "InvalidUri", (raw, method)
    # Nothing was deleted: the account's state (the sqlite file the paths aimed at) and the node are intact.
    assert batch_client.get_pool("files-pool").id == "files-pool"
    assert read_node_file(batch_client, "files-pool", file_node, "startup/stdout.txt") == b"start-out\n"


def test_symlink_out_of_the_node_is_not_followed(batch_client, file_node):
    names = {f.name for f in batch_client.list_node_files("files-pool", file_node, recursive=True)}
    assert "shared/escape" in names and not any(n.startswith("shared/escape/") for n in names)
    for path in ("shared/escape/etc/passwd", "shared/escape"):
        with pytest.raises(ResourceNotFoundError) as caught:
            read_node_file(batch_client, "files-pool", file_node, path)
        assert caught.value.response.status_code == 404
        with pytest.raises(ResourceNotFoundError) as caught:
            batch_client.delete_node_file("files-pool", file_node, path, recursive=True)
        assert error_of(caught) == (404, "FileNotFound")
    assert os.path.isdir("/etc")   # what the link points into is untouched


def test_delete_node_file(batch_client, file_node):
    batch_client.delete_node_file("files-pool", file_node, "startup/wd/deep/er/five.txt")
    with pytest.raises(ResourceNotFoundError):
        batch_client.get_node_file_properties("files-pool", file_node, "startup/wd/deep/er/five.txt")
    assert batch_client.get_node_file_properties("files-pool", file_node, "startup/wd/deep").is_directory


# -- conditional requests --------------------------------------------------------------------------

def test_etag_if_match_on_update_resize_and_delete(batch_client):
    make_pool(batch_client, "etag-pool", nodes=0)
    first = batch_client.get_pool("etag-pool").etag
    batch_client.update_pool("etag-pool", models.BatchPoolUpdateOptions(
        metadata=[models.BatchMetadataItem(name="k", value="v1")]),
        etag=first, match_condition=MatchConditions.IfNotModified)
    second = batch_client.get_pool("etag-pool")
    assert second.etag != first
    assert [(m.name, m.value) for m in second.metadata] == [("k", "v1")]

    with pytest.raises(ResourceModifiedError) as caught:
        batch_client.update_pool("etag-pool", models.BatchPoolUpdateOptions(
            metadata=[models.BatchMetadataItem(name="k", value="stale")]),
            etag=first, match_condition=MatchConditions.IfNotModified)
    assert error_of(caught) == (412, "ConditionNotMet")
    with pytest.raises(ResourceModifiedError) as caught:
        batch_client.begin_resize_pool("etag-pool", models.BatchPoolResizeOptions(target_dedicated_nodes=1),
                                       etag=first, match_condition=MatchConditions.IfNotModified)
    assert error_of(caught) == (412, "ConditionNotMet")
    with pytest.raises(ResourceModifiedError) as caught:
        batch_client.begin_delete_pool("etag-pool", etag=first, match_condition=MatchConditions.IfNotModified)
    assert error_of(caught) == (412, "ConditionNotMet")
    after = batch_client.get_pool("etag-pool")
    assert (after.etag, after.state, after.allocation_state) == (second.etag, "active", "steady")
    assert [(m.name, m.value) for m in after.metadata] == [("k", "v1")]

    # If-Unmodified-Since before the last change fails too.
    with pytest.raises(HttpResponseError) as caught:
        batch_client.update_pool("etag-pool", models.BatchPoolUpdateOptions(metadata=[]),
                                 if_unmodified_since=after.last_modified - timedelta(minutes=5))
    assert error_of(caught) == (412, "ConditionNotMet")

    # The current etag works.
    batch_client.begin_delete_pool("etag-pool", etag=after.etag, match_condition=MatchConditions.IfNotModified,
                                   polling_interval=POLL).result(timeout=20)
    with pytest.raises(ResourceNotFoundError):
        batch_client.get_pool("etag-pool")


def test_if_none_match_on_get_is_304(localbatch, batch_client):
    make_pool(batch_client, "cached", nodes=0)   # steady: nothing will change the etag now
    current = batch_client.get_pool("cached").etag
    with pytest.raises(ResourceModifiedError) as caught:   # BatchExceptionPolicy maps 304 so
        batch_client.get_pool("cached", etag=current, match_condition=MatchConditions.IfModified)
    assert caught.value.response.status_code == 304
    assert batch_client.get_pool("cached", etag="0xOLD", match_condition=MatchConditions.IfModified).id == "cached"

    status, headers, body = signed_request(localbatch, "GET", f"/pools/cached?api-version={API_VERSION}",
                                           headers={"If-None-Match": current})
    assert (status, body) == (304, b"")
    status, headers, body = signed_request(localbatch, "GET", f"/pools/cached?api-version={API_VERSION}",
                                           headers={"If-None-Match": "0xOLD"})
    assert status == 200 and body["eTag"] == current and headers["etag"] == current


# -- paging -----------------------------------------------------------------------------------

def test_paging_25_pools_with_filter_and_select(batch_client):
    ids = [f"page-{i:02d}" for i in range(25)]
    for index, pool_id in enumerate(ids):
        create_pool(batch_client, pool_id, task_slots_per_node=1 + index % 2)

    pages = [list(page) for page in batch_client.list_pools(max_results=10).by_page()]
    assert [len(page) for page in pages] == [10, 10, 5]
    assert [p.id for page in pages for p in page] == ids

    pages = [list(page) for page in batch_client.list_pools(max_results=10, select=["id"]).by_page()]
    assert [len(page) for page in pages] == [10, 10, 5]
    assert [p.id for page in pages for p in page] == ids
    for pool in (p for page in pages for p in page):
        assert pool.vm_size is None and pool.state is None and pool.task_slots_per_node is None
        assert pool.creation_time is None and pool.url is None

    odd = [pool_id for index, pool_id in enumerate(ids) if index % 2]
    pages = [list(page) for page in batch_client.list_pools(
        max_results=5, filter="taskSlotsPerNode eq 2", select=["id", "taskSlotsPerNode"]).by_page()]
    assert [len(page) for page in pages] == [5, 5, 2]
    assert [p.id for page in pages for p in page] == odd
    assert all(p.task_slots_per_node == 2 and p.vm_size is None for page in pages for p in page)


def test_paging_25_jobs_through_the_sdk(batch_client):
    ids = [f"job-{i:02d}" for i in range(25)]
    for job_id in ids:
        make_job(batch_client, job_id, "nowhere")
    listed = [job.id for job in batch_client.list_jobs(max_results=10)]
    assert listed == ids and len(set(listed)) == 25
    pages = [list(page) for page in batch_client.list_jobs(max_results=10, filter="startswith(id,'job-1')",
                                                            select=["id", "state"]).by_page()]
    assert [[j.id for j in page] for page in pages] == [ids[10:20]]
    pages = [list(page) for page in batch_client.list_jobs(max_results=4, filter="startswith(id,'job-1')",
                                                            select=["id", "state"]).by_page()]
    assert [len(page) for page in pages] == [4, 4, 2]
    assert all(j.state == "active" and j.pool_info is None and j.creation_time is None
               for page in pages for j in page)


def test_paging_survives_deletions_between_pages(batch_client):
    for index in range(6):
        create_pool(batch_client, f"shrinking-{index}")
    pages = batch_client.list_pools(max_results=2).by_page()
    first = [p.id for p in next(pages)]
    assert first == ["shrinking-0", "shrinking-1"]
    batch_client.begin_delete_pool("shrinking-2", polling_interval=POLL).result(timeout=20)
    rest = [p.id for page in pages for p in page]
    assert rest == ["shrinking-3", "shrinking-4", "shrinking-5"]


@pytest.mark.parametrize("max_results", [0, -1, 1001])
def test_maxresults_out_of_range_is_400(batch_client, max_results):
    make_job(batch_client, "only-job", "nowhere")
    with pytest.raises(HttpResponseError) as caught:
        list(batch_client.list_jobs(max_results=max_results))
    assert error_of(caught) == (400, "OutOfRangeQueryParameterValue")
    assert details_of(caught)["QueryParameterName"] == "maxresults"


def test_maxresults_bounds_are_accepted(batch_client):
    make_job(batch_client, "only-job", "nowhere")
    assert [j.id for j in batch_client.list_jobs(max_results=1)] == ["only-job"]
    assert [j.id for j in batch_client.list_jobs(max_results=1000)] == ["only-job"]


def test_non_numeric_maxresults_and_skiptoken_are_400(localbatch):
    for query in ("maxresults=ten", "$skiptoken=abc"):
        status, _, body = signed_request(localbatch, "GET", f"/pools?api-version={API_VERSION}&{query}")
        assert (status, body["code"]) == (400, "InvalidQueryParameterValue"), query


# -- scheduling policy ----------------------------------------------------------------------------

def run_two_concurrent(batch_client, fill: str, required_slots: int = 1, count: int = 2, seconds: float = 1):
    make_pool(batch_client, "sched", nodes=2, slots=2, fill=fill)
    wait_nodes(batch_client, "sched", lambda n: n.state == "idle", "idle")
    make_job(batch_client, "sched-job", "sched")
    batch_client.create_task_collection("sched-job", models.BatchTaskGroup(task_values=[
        models.BatchTaskCreateOptions(id=f"t{i}", command_line=f"sleep {seconds}", required_slots=required_slots)
        for i in range(count)]))
    return [wait_task_completed(batch_client, "sched-job", f"t{i}") for i in range(count)]


def overlaps(a, b) -> bool:
    return a.execution_info.start_time < b.execution_info.end_time and \
        b.execution_info.start_time < a.execution_info.end_time


def test_spread_puts_concurrent_tasks_on_different_nodes(batch_client):
    first, second = run_two_concurrent(batch_client, "spread")
    assert overlaps(first, second)
    assert first.node_info.node_id != second.node_info.node_id


def test_pack_puts_concurrent_tasks_on_the_same_node(batch_client):
    first, second = run_two_concurrent(batch_client, "pack")
    assert overlaps(first, second)
    assert first.node_info.node_id == second.node_info.node_id


def test_required_slots_two_runs_one_task_per_two_slot_node_at_a_time(batch_client):
    tasks = run_two_concurrent(batch_client, "spread", required_slots=2, count=4, seconds=0.5)
    by_node: dict[str, list] = {}
    for task in tasks:
        assert task.required_slots == 2 and task.execution_info.exit_code == 0
        by_node.setdefault(task.node_info.node_id, []).append(task)
    assert len(by_node) == 2
    for on_node in by_node.values():
        on_node.sort(key=lambda t: t.execution_info.start_time)
        for earlier, later in zip(on_node, on_node[1:], strict=False):
            assert later.execution_info.start_time >= earlier.execution_info.end_time
    # The two nodes did work side by side.
    a, b = (sorted(group, key=lambda t: t.execution_info.start_time)[0] for group in by_node.values())
    assert overlaps(a, b)


def test_node_reports_slots_in_use_while_a_two_slot_task_runs(batch_client):
    make_pool(batch_client, "slots", nodes=1, slots=2)
    make_job(batch_client, "slots-job", "slots")
    batch_client.create_task_collection("slots-job", models.BatchTaskGroup(task_values=[
        models.BatchTaskCreateOptions(id="big", command_line="sleep 30", required_slots=2),
        models.BatchTaskCreateOptions(id="small", command_line="true")]))
    wait_for(lambda: batch_client.get_task("slots-job", "big").state == "running", message="big running")
    node = next(iter(batch_client.list_nodes("slots")))
    assert (node.state, node.running_tasks_count, node.running_task_slots_count) == ("running", 1, 2)
    assert batch_client.get_task("slots-job", "small").state == "active"   # no free slot left
    batch_client.terminate_task("slots-job", "big")
    assert wait_task_completed(batch_client, "slots-job", "small").execution_info.exit_code == 0


# -- routing ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/nosuchthing", "/pools/p/bogus", "/pools/p/nodes/n/files2", "/jobs/j/tasks/t/x/y"])
def test_unknown_route_is_404(localbatch, path):
    status, _, body = signed_request(localbatch, "GET", f"{path}?api-version={API_VERSION}")
    assert (status, body["code"]) == (404, "ResourceNotFound")


@pytest.mark.parametrize("method, path", [("PUT", "/pools"), ("DELETE", "/pools"), ("PATCH", "/nodecounts"),
                                          ("POST", "/pools/p/nodes"), ("PUT", "/pools/p/nodes/n/files/x")])
def test_unsupported_verb_is_405(localbatch, method, path):
    status, _, body = signed_request(localbatch, method, f"{path}?api-version={API_VERSION}")
    assert (status, body["code"]) == (405, "UnsupportedHttpVerb")


def test_missing_api_version_is_400(localbatch):
    status, _, body = signed_request(localbatch, "GET", "/pools")
    assert (status, body["code"]) == (400, "MissingRequiredQueryParameter")
