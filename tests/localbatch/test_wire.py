"""localbatch answers in the wire format of the real service, as its recorded responses show it: fields left out
when unset, enum spellings, list order, headers, error bodies, ETags, api-versions and the node environment.
Through the real SDK where it shows the difference, in raw HTTP where the SDK hides it."""

import asyncio
import json
import os
import re

import pytest
from azure.batch import BatchClient, models
from azure.batch.aio import BatchClient as AsyncBatchClient
from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError, ResourceModifiedError

from localbatch import API_VERSION
from localbatch.server import start
from tests.localbatch.helpers import make_job, make_pool, sh, signed_send, task, wait_for, wait_task_completed

UBUNTU = models.VirtualMachineConfiguration(
    image_reference=models.BatchVmImageReference(publisher="canonical", offer="0001-com-ubuntu-server-jammy",
                                                 sku="22_04-lts"),
    node_agent_sku_id="batch.node.ubuntu 22.04")
DOTNET_TICKS_ETAG = re.compile(r"^0x[0-9A-F]{15}$")
SUBSCRIPTION = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers"


def get(localbatch, path: str, **options):
    separator = "&" if "?" in path else "?"
    return signed_send(localbatch, "GET", f"{path}{separator}api-version={API_VERSION}", **options)


def post(localbatch, path: str, body: dict, api_version: str = API_VERSION, **options):
    return signed_send(localbatch, "POST", f"{path}?api-version={api_version}", json.dumps(body).encode(), **options)


def ran_job(batch_client, **task_options):
    """pool-1 (one node from an Ubuntu image) and job-1 with one completed task t1."""
    make_pool_with_image(batch_client, "pool-1")
    make_job(batch_client)
    batch_client.create_task("job-1", task("t1", "/bin/true", **task_options))
    return wait_task_completed(batch_client, "job-1", "t1")


def make_pool_with_image(batch_client, pool_id: str, **options):
    batch_client.create_pool(models.BatchPoolCreateOptions(
        id=pool_id, vm_size="standard_d2s_v3", target_dedicated_nodes=1, virtual_machine_configuration=UBUNTU,
        **options))
    wait_for(lambda: batch_client.get_pool(pool_id).allocation_state == "steady", message=f"{pool_id} steady")
    return wait_for(lambda: [n for n in batch_client.list_nodes(pool_id) if n.state == "idle"], message="idle node")


# -- absent vs empty ------------------------------------------------------------------------------

def test_unset_optional_lists_are_absent_but_certificate_references_are_empty(localbatch, batch_client):
    ran_job(batch_client)
    _, _, pool = get(localbatch, "/pools/pool-1")
    _, _, job = get(localbatch, "/jobs/job-1")
    _, _, t1 = get(localbatch, "/jobs/job-1/tasks/t1")
    _, _, nodes = get(localbatch, "/pools/pool-1/nodes")
    node = nodes["value"][0]

    for name in ("metadata", "resizeErrors", "applicationPackageReferences", "userAccounts"):
        assert name not in pool, name
    for name in ("metadata", "commonEnvironmentSettings"):
        assert name not in job, name
    for name in ("resourceFiles", "environmentSettings", "outputFiles", "applicationPackageReferences"):
        assert name not in t1, name
    assert "errors" not in node
    assert pool["certificateReferences"] == [] and node["certificateReferences"] == []
    # What the SDK then gives: None for what is absent, as on Azure.
    sdk_task = batch_client.get_task("job-1", "t1")
    assert (sdk_task.resource_files, sdk_task.environment_settings, sdk_task.output_files) == (None, None, None)
    assert batch_client.get_job("job-1").common_environment_settings is None
    assert batch_client.get_pool("pool-1").resize_errors is None


def test_given_lists_are_kept(localbatch, batch_client):
    make_job(batch_client, "job-env", "nowhere",
             common_environment_settings=[models.EnvironmentSetting(name="A", value="1")])
    batch_client.create_task("job-env", task("t", "true", environment_settings=[
        models.EnvironmentSetting(name="B", value="2")]))
    assert [s.name for s in batch_client.get_job("job-env").common_environment_settings] == ["A"]
    assert [s.name for s in batch_client.get_task("job-env", "t").environment_settings] == ["B"]


# -- enum spellings ---------------------------------------------------------------------------------

def test_add_task_results_are_spelt_as_the_service_spells_them(batch_client):
    make_job(batch_client, "job-1", "nowhere")
    batch_client.create_task("job-1", task("exists", "true"))
    result = batch_client.create_task_collection("job-1", models.BatchTaskGroup(task_values=[
        task("fresh", "true"), task("exists", "true")]))
    assert sorted((r.task_id, r.status) for r in result.result_values) == [
        ("exists", "ClientError"), ("fresh", "Success")]


def test_node_fill_type_and_upload_condition_are_pascal_case_and_states_lower_case(batch_client):
    batch_client.create_pool(models.BatchPoolCreateOptions(
        id="packed", vm_size="standard_d2s_v3", task_scheduling_policy=models.BatchTaskSchedulingPolicy(
            node_fill_type="pack")))
    assert batch_client.get_pool("packed").task_scheduling_policy.node_fill_type == "Pack"
    assert batch_client.get_pool("packed").state == "active"

    make_job(batch_client, "job-1", "nowhere")
    destination = models.OutputFileDestination(container=models.OutputFileBlobContainerDestination(
        container_url="https://account.blob.core.windows.net/out?sig=x"))
    batch_client.create_task("job-1", task("t", "true", output_files=[models.OutputFile(
        file_pattern="*.txt", destination=destination,
        upload_options=models.OutputFileUploadConfiguration(upload_condition="tasksuccess"))]))
    uploaded = batch_client.get_task("job-1", "t").output_files[0]
    assert uploaded.upload_options.upload_condition == "TaskSuccess"
    assert batch_client.get_task("job-1", "t").state == "active"


# -- lists ----------------------------------------------------------------------------------------

def test_lists_come_in_id_order_across_pages(batch_client):
    for pool_id in ("pool-c", "pool-a", "pool-b"):
        batch_client.create_pool(models.BatchPoolCreateOptions(id=pool_id, vm_size="standard_d2s_v3"))
    assert [p.id for p in batch_client.list_pools(max_results=2)] == ["pool-a", "pool-b", "pool-c"]
    assert [row.pool_id for row in batch_client.list_pool_node_counts()] == ["pool-a", "pool-b", "pool-c"]

    make_job(batch_client, "job-z", "nowhere")
    make_job(batch_client, "job-y", "nowhere")
    assert [j.id for j in batch_client.list_jobs()] == ["job-y", "job-z"]
    for task_id in ("t3", "t1", "T2"):
        batch_client.create_task("job-z", task(task_id, "true"))
    assert [t.id for t in batch_client.list_tasks("job-z", max_results=1)] == ["t1", "T2", "t3"]


def test_a_jobs_tasks_start_in_the_order_they_were_added(batch_client):
    make_pool(batch_client, "one-slot", nodes=1)
    make_job(batch_client, "ordered", "one-slot")
    ids = [f"l{i:02d}" for i in range(8)]
    # The SDK's create_tasks sends the collection in reverse order; the service adds it as a set.
    batch_client.create_tasks("ordered", [task(i, "true") for i in ids])
    batch_client.create_task("ordered", task("a-last", "true"))   # added after them, starts after them
    done = [wait_task_completed(batch_client, "ordered", i) for i in ids + ["a-last"]]
    by_start = [t.id for t in sorted(done, key=lambda t: t.execution_info.start_time)]
    assert by_start == ids + ["a-last"]


# -- what the service never sends back, and what nodes carry ----------------------------------------

def test_user_account_passwords_are_never_echoed(localbatch, batch_client):
    batch_client.create_pool(models.BatchPoolCreateOptions(id="users", vm_size="standard_d2s_v3", user_accounts=[
        models.UserAccount(name="alice", password="S3cret!pass"),
        models.UserAccount(name="root-ish", password="An0ther!pass", elevation_level="admin")]))
    accounts = batch_client.get_pool("users").user_accounts
    assert [(a.name, a.password, a.elevation_level) for a in accounts] == [
        ("alice", None, "nonadmin"), ("root-ish", None, "admin")]
    _, _, listed = get(localbatch, "/pools")
    assert "S3cret" not in json.dumps(listed) and "An0ther" not in json.dumps(listed)


def test_nodes_carry_endpoints_image_and_recent_task_execution(batch_client):
    ran_job(batch_client)
    node = next(iter(batch_client.list_nodes("pool-1")))
    endpoint = node.endpoint_configuration.inbound_endpoints[0]
    assert (endpoint.protocol, endpoint.backend_port, endpoint.frontend_port) == ("tcp", 22, 50000)
    image = node.virtual_machine_info.image_reference
    assert (image.publisher, image.sku, image.version, image.exact_version) == (
        "canonical", "22_04-lts", "latest", "latest")
    recent = node.recent_tasks[0]
    assert (recent.task_id, recent.task_state) == ("t1", "completed")
    assert (recent.execution_info.exit_code, recent.execution_info.result) == (0, "success")
    assert recent.execution_info.end_time is not None
    assert batch_client.get_pool("pool-1").virtual_machine_configuration.image_reference.version == "latest"


# -- headers and bodies -------------------------------------------------------------------------------

def test_201_carries_location_and_data_service_id(localbatch):
    status, headers, _ = post(localbatch, "/pools", {"id": "p", "vmSize": "standard_d2s_v3"})
    assert status == 201
    assert headers["location"] == headers["dataserviceid"] == f"{localbatch.endpoint}/pools/p"
    assert DOTNET_TICKS_ETAG.match(headers["etag"])
    status, headers, _ = post(localbatch, "/jobs", {"id": "j", "poolInfo": {"poolId": "p"}})
    assert (status, headers["location"]) == (201, f"{localbatch.endpoint}/jobs/j")
    status, headers, _ = post(localbatch, "/jobs/j/tasks", {"id": "t", "commandLine": "true"})
    assert (status, headers["location"]) == (201, f"{localbatch.endpoint}/jobs/j/tasks/t")


def test_actions_answer_the_request_url_as_data_service_id_and_deletes_no_etag(localbatch, batch_client):
    make_job(batch_client, "j", "nowhere")
    status, headers, _ = post(localbatch, "/jobs/j/disable", {"disableTasks": "requeue"})
    assert status == 202 and headers["dataserviceid"] == f"{localbatch.endpoint}/jobs/j/disable"
    assert DOTNET_TICKS_ETAG.match(headers["etag"])
    status, headers, _ = signed_send(localbatch, "DELETE", f"/jobs/j?api-version={API_VERSION}")
    assert status == 202 and "etag" not in headers and "dataserviceid" not in headers


def test_client_request_id_is_echoed_only_when_asked(localbatch):
    _, headers, _ = get(localbatch, "/pools", extra={"client-request-id": "abc"})
    assert "client-request-id" not in headers and headers["request-id"]
    _, headers, _ = get(localbatch, "/pools", extra={"client-request-id": "abc", "return-client-request-id": "true"})
    assert headers["client-request-id"] == "abc"


def test_bodies_and_etags_as_the_service_writes_them(localbatch, batch_client):
    make_job(batch_client, "j", "nowhere")
    status, headers, body = get(localbatch, "/jobs/j")
    assert headers["content-type"] == "application/json; odata=minimalmetadata"
    assert body["odata.metadata"] == f"{localbatch.endpoint}/$metadata#jobs/@Element"
    assert DOTNET_TICKS_ETAG.match(body["eTag"]) and body["eTag"] == headers["etag"]
    _, _, listed = get(localbatch, "/jobs")
    assert listed["odata.metadata"] == f"{localbatch.endpoint}/$metadata#jobs"

    status, _, error = get(localbatch, "/jobs/missing")
    assert (status, error["code"]) == (404, "JobNotFound")
    assert error["odata.metadata"] == (f"{localbatch.endpoint}/$metadata#Microsoft.Azure.Batch.Protocol.Entities"
                                       ".Container.errors/@Element")
    assert error["message"]["lang"] == "en-US" and "RequestId:" in error["message"]["value"]
    assert post(localbatch, "/pools", {"id": "p", "vmSize": "standard_d2s_v3"})[0] == 201
    status, _, error = post(localbatch, "/pools", {"id": "p", "vmSize": "standard_d2s_v3"})
    assert (status, error["code"]) == (409, "PoolExists") and "values" not in error


def test_a_304_has_no_body_and_the_async_client_goes_on_on_the_same_connection(localbatch, batch_client):
    make_pool(batch_client, "cached", nodes=0)
    current = batch_client.get_pool("cached").etag
    status, headers, body = get(localbatch, "/pools/cached", extra={"If-None-Match": current})
    assert (status, body) == (304, b"") and "content-length" not in headers

    async def twice() -> str:
        credential = AzureNamedKeyCredential(localbatch.account_name, localbatch.account_key)
        async with AsyncBatchClient(localbatch.endpoint, credential) as client:
            with pytest.raises(ResourceModifiedError):
                await client.get_pool("cached", etag=current, match_condition=MatchConditions.IfModified)
            return (await client.get_pool("cached")).id
    assert asyncio.run(twice()) == "cached"


def test_txt_files_are_text_plain(localbatch, batch_client):
    ran_job(batch_client)
    listed = {f.name: f for f in batch_client.list_task_files("job-1", "t1")}
    assert listed["stdout.txt"].properties.content_type == "text/plain"
    # The SDK leaves a file's Content-Type out of its properties, so the header is read raw.
    status, headers, _ = get(localbatch, "/jobs/job-1/tasks/t1/files/stdout.txt")
    assert (status, headers["content-type"], headers["ocp-batch-file-isdirectory"]) == (200, "text/plain", "False")


# -- lenient and strict -----------------------------------------------------------------------------

def test_numbers_and_booleans_sent_as_strings_are_read(localbatch, batch_client):
    status, _, _ = post(localbatch, "/pools", {"id": "strings", "vmSize": "standard_d2s_v3",
                                               "targetDedicatedNodes": "0", "taskSlotsPerNode": "2",
                                               "enableInterNodeCommunication": "false"})
    assert status == 201
    pool = batch_client.get_pool("strings")
    assert (pool.task_slots_per_node, pool.enable_inter_node_communication) == (2, False)
    status, _, error = post(localbatch, "/pools", {"id": "bad", "vmSize": "standard_d2s_v3",
                                                   "enableInterNodeCommunication": "no"})
    assert (status, error["code"]) == (400, "InvalidPropertyValue")


@pytest.mark.parametrize("version", ["2025-06-01", "2024-07-01.20.0", "2024-02-01.19.0", "2022-01-01.15.0"])
def test_the_versions_clients_send_are_accepted(localbatch, version):
    status, _, _ = signed_send(localbatch, "GET", f"/pools?api-version={version}")
    assert status == 200


def test_an_unknown_api_version_is_unsupported_request_version(localbatch):
    status, _, error = post(localbatch, "/pools", {"id": "p", "vmSize": "standard_d2s_v3"}, api_version="2099-01-01")
    assert (status, error["code"]) == (400, "UnsupportedRequestVersion")
    assert localbatch.app.state.pools == {}
    credential = AzureNamedKeyCredential(localbatch.account_name, localbatch.account_key)
    with BatchClient(localbatch.endpoint, credential, api_version="2019-01-01.99.0") as client:
        with pytest.raises(HttpResponseError) as caught:
            list(client.list_pools())
    assert caught.value.error.code == "UnsupportedRequestVersion"


@pytest.mark.parametrize("field, body", [
    ("subnetId", {"networkConfiguration": {"subnetId": "/subscriptions/x/virtualNetworks/v/subnets/s"}}),
    ("subnetId", {"networkConfiguration": {"subnetId": "subnet1"}}),
    ("virtualMachineImageId", {"virtualMachineConfiguration": {
        "imageReference": {"virtualMachineImageId": f"{SUBSCRIPTION}/Microsoft.Compute/gallery/g/images/i/versions/1"},
        "nodeAgentSKUId": "batch.node.ubuntu 22.04"}}),
])
def test_malformed_resource_ids_are_refused(localbatch, field, body):
    status, _, error = post(localbatch, "/pools", {"id": "p", "vmSize": "standard_d2s_v3", **body})
    assert (status, error["code"]) == (400, "InvalidPropertyValue")
    assert {v["key"]: v["value"] for v in error["values"]}["PropertyName"] == field
    assert localbatch.app.state.pools == {}


def test_well_formed_resource_ids_are_accepted(localbatch):
    status, _, _ = post(localbatch, "/pools", {
        "id": "p", "vmSize": "standard_d2s_v3",
        "networkConfiguration": {"subnetId": f"{SUBSCRIPTION}/Microsoft.Network/virtualNetworks/v/subnets/s"},
        "virtualMachineConfiguration": {
            "imageReference": {"virtualMachineImageId": f"{SUBSCRIPTION}/Microsoft.Compute/galleries/g/images/i"},
            "nodeAgentSKUId": "batch.node.ubuntu 22.04"}})
    assert status == 201


# -- the node -------------------------------------------------------------------------------------

def test_node_directories_are_absolute_with_a_relative_data_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    running = start("relative-data", node_start_seconds=0.05)
    try:
        credential = AzureNamedKeyCredential(running.account_name, running.account_key)
        with BatchClient(running.endpoint, credential) as client:
            make_pool(client, nodes=1)
            make_job(client)
            client.create_task("job-1", task("env", sh("env > $AZ_BATCH_TASK_WORKING_DIR/env.txt")))
            assert wait_task_completed(client, "job-1", "env").execution_info.exit_code == 0
            text = b"".join(client.download_task_file("job-1", "env", "wd/env.txt")).decode()
    finally:
        running.stop()
    env = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    for name in ("AZ_BATCH_NODE_ROOT_DIR", "AZ_BATCH_NODE_SHARED_DIR", "AZ_BATCH_NODE_STARTUP_DIR",
                 "AZ_BATCH_NODE_STARTUP_WORKING_DIR", "AZ_BATCH_NODE_MOUNTS_DIR", "AZ_BATCH_TASK_DIR",
                 "AZ_BATCH_TASK_WORKING_DIR"):
        assert os.path.isabs(env[name]), (name, env[name])
    assert env["AZ_BATCH_NODE_STARTUP_WORKING_DIR"] == os.path.join(env["AZ_BATCH_NODE_STARTUP_DIR"], "wd")
    assert os.path.isdir(env["AZ_BATCH_NODE_SHARED_DIR"]) and env["AZ_BATCH_NODE_ROOT_DIR"].startswith(str(tmp_path))
    assert (env["AZ_BATCH_TASK_USER"], env["AZ_BATCH_TASK_USER_IDENTITY"]) == ("_azbatch", "PoolNonAdmin")


def test_task_user_identity_follows_the_tasks_auto_user(batch_client):
    make_pool(batch_client)
    make_job(batch_client)
    admin = models.UserIdentity(auto_user=models.AutoUserSpecification(scope="task", elevation_level="admin"))
    batch_client.create_task("job-1", task("who", sh("echo $AZ_BATCH_TASK_USER_IDENTITY"), user_identity=admin))
    wait_task_completed(batch_client, "job-1", "who")
    assert b"".join(batch_client.download_task_file("job-1", "who", "stdout.txt")) == b"TaskAdmin\n"


def test_a_dangling_symlink_does_not_break_recursive_listings(batch_client):
    make_pool(batch_client)
    make_job(batch_client)
    batch_client.create_task("job-1", task("links", sh("ln -s /no/such/file dangling && ln -s /etc/hostname out")))
    wait_task_completed(batch_client, "job-1", "links")
    names = {f.name for f in batch_client.list_task_files("job-1", "links", recursive=True)}
    assert {"wd/dangling", "wd/out", "stdout.txt"} <= names
    node_id = batch_client.get_task("job-1", "links").node_info.node_id
    node_names = {f.name for f in batch_client.list_node_files("pool-1", node_id, recursive=True)}
    assert "workitems/job-1/job-1/links/wd/dangling" in node_names
