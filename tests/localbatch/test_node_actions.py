"""What a client does to nodes, through the real azure-batch SDK: disable/enable scheduling, reboot, reimage,
deallocate/start, remove nodes, node users, remote login settings, extensions and the upload of the
node's Batch service logs (to a real Azurite container)."""

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from azure.batch import models
from azure.batch.models import _models as internal_models
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from localbatch import API_VERSION
from tests.localbatch.helpers import make_job, make_pool, sh, signed_send, task, wait_for, wait_task_completed

POLL = 0.05


def error_of(caught) -> tuple[int, str | None]:
    return caught.value.response.status_code, caught.value.error.code


def details_of(caught) -> dict:
    return {d.code: d.message for d in caught.value.error.details}


def only_node(client, pool_id: str) -> models.BatchNode:
    nodes = list(client.list_nodes(pool_id))
    assert len(nodes) == 1
    return nodes[0]


def running(client, job_id: str, task_id: str) -> models.BatchTask:
    return wait_for(lambda: (t := client.get_task(job_id, task_id)).state == "running" and t,
                    message=f"{task_id} running")


def node_state(client, pool_id: str, node_id: str, state: str) -> models.BatchNode:
    return wait_for(lambda: (n := client.get_node(pool_id, node_id)).state == state and n,
                    message=f"node {state}")


def disable(client, pool_id: str, node_id: str, option: str, **kwargs):
    return client.disable_node_scheduling(
        pool_id, node_id, models.BatchNodeDisableSchedulingOptions(node_disable_scheduling_option=option), **kwargs)


# -- task scheduling ------------------------------------------------------------------------------

def test_disable_with_taskcompletion_lets_the_task_finish_then_takes_no_new_task(batch_client):
    make_pool(batch_client, "calm", nodes=1)
    make_job(batch_client, "job", "calm")
    batch_client.create_task("job", task("first", sh("sleep 1")))
    node_id = running(batch_client, "job", "first").node_info.node_id
    status, headers = disable(batch_client, "calm", node_id, "taskcompletion",
                              cls=lambda response, _body, h: (response.http_response.status_code, h))
    assert status == 200
    assert headers["DataServiceId"].endswith(f"/pools/calm/nodes/{node_id}/disablescheduling")
    assert batch_client.get_node("calm", node_id).scheduling_state == "disabled"
    assert wait_task_completed(batch_client, "job", "first").execution_info.result == "success"
    node_state(batch_client, "calm", node_id, "offline")
    batch_client.create_task("job", task("second", sh("true")))
    assert batch_client.get_task("job", "second").state == "active"
    with pytest.raises(ResourceExistsError) as caught:
        disable(batch_client, "calm", node_id, "requeue")
    assert error_of(caught) == (409, "NodeAlreadyInTargetSchedulingState")
    batch_client.enable_node_scheduling("calm", node_id)
    assert batch_client.get_node("calm", node_id).scheduling_state == "enabled"
    assert wait_task_completed(batch_client, "job", "second").execution_info.result == "success"
    with pytest.raises(ResourceExistsError) as caught:
        batch_client.enable_node_scheduling("calm", node_id)
    assert error_of(caught) == (409, "NodeAlreadyInTargetSchedulingState")


def test_disable_with_requeue_puts_the_running_task_back_in_the_queue(batch_client):
    make_pool(batch_client, "requeuing", nodes=1)
    make_job(batch_client, "job", "requeuing")
    batch_client.create_task("job", task("long", sh("sleep 30")))
    node_id = running(batch_client, "job", "long").node_info.node_id
    disable(batch_client, "requeuing", node_id, "requeue")
    back = wait_for(lambda: (t := batch_client.get_task("job", "long")).state == "active" and t, message="requeued")
    assert back.execution_info.requeue_count == 1
    node_state(batch_client, "requeuing", node_id, "offline")


def test_disable_with_terminate_ends_the_running_task(batch_client):
    make_pool(batch_client, "stopping", nodes=1)
    make_job(batch_client, "job", "stopping")
    batch_client.create_task("job", task("long", sh("sleep 30")))
    node_id = running(batch_client, "job", "long").node_info.node_id
    disable(batch_client, "stopping", node_id, "terminate")
    ended = wait_task_completed(batch_client, "job", "long")
    assert ended.execution_info.result == "failure"
    assert ended.execution_info.failure_info.code == "TaskEnded"


def test_an_unknown_option_is_refused_and_changes_nothing(localbatch, batch_client):
    make_pool(batch_client, "strict", nodes=1)
    node_id = only_node(batch_client, "strict").id
    status, _, body = signed_send(localbatch, "POST",
                                  f"/pools/strict/nodes/{node_id}/disablescheduling?api-version={API_VERSION}",
                                  json.dumps({"nodeDisableSchedulingOption": "someday"}).encode())
    assert (status, body["code"]) == (400, "InvalidPropertyValue")
    assert batch_client.get_node("strict", node_id).scheduling_state == "enabled"


# -- reboot, reimage, deallocate, start ---------------------------------------------------------

def test_reboot_requeues_the_task_and_runs_the_start_task_again(batch_client):
    make_pool(batch_client, "rebooted", nodes=1, start_task=models.BatchStartTask(
        command_line=sh("echo started >> $AZ_BATCH_NODE_SHARED_DIR/boots"), wait_for_success=True))
    make_job(batch_client, "job", "rebooted")
    batch_client.create_task("job", task("long", sh("sleep 2")))
    node = batch_client.get_node("rebooted", running(batch_client, "job", "long").node_info.node_id)
    first_boot = node.last_boot_time
    poller = batch_client.begin_reboot_node("rebooted", node.id, internal_models.BatchNodeRebootOptions(
        node_reboot_kind="requeue"), polling_interval=POLL)
    poller.result()
    rebooted = node_state(batch_client, "rebooted", node.id, "idle")
    assert rebooted.last_boot_time > first_boot
    assert rebooted.scheduling_state == "enabled"
    done = wait_task_completed(batch_client, "job", "long")
    assert done.execution_info.requeue_count == 1 and done.execution_info.result == "success"
    boots = b"".join(batch_client.download_node_file("rebooted", node.id, "shared/boots"))
    assert boots == b"started\nstarted\n"


def test_reboot_with_taskcompletion_waits_for_the_task(batch_client):
    make_pool(batch_client, "patient", nodes=1)
    make_job(batch_client, "job", "patient")
    batch_client.create_task("job", task("short", sh("sleep 1")))
    node_id = running(batch_client, "job", "short").node_info.node_id
    batch_client.begin_reboot_node("patient", node_id, internal_models.BatchNodeRebootOptions(
        node_reboot_kind="taskcompletion"), polling_interval=POLL)
    done = wait_task_completed(batch_client, "job", "short")
    assert done.execution_info.result == "success" and done.execution_info.requeue_count == 0
    node_state(batch_client, "patient", node_id, "idle")


def test_reimage_answers_as_the_service_does_for_virtual_machine_pools(batch_client):
    make_pool(batch_client, "imaged", nodes=1)
    node_id = only_node(batch_client, "imaged").id
    with pytest.raises(ResourceExistsError) as caught:
        batch_client.begin_reimage_node("imaged", node_id, internal_models.BatchNodeReimageOptions(
            node_reimage_option="terminate"), polling_interval=POLL)
    assert error_of(caught) == (409, "OperationNotValidOnNode")
    assert "cloudServiceConfiguration" in details_of(caught)["Reason"]
    assert batch_client.get_node("imaged", node_id).state == "idle"


def test_deallocate_then_start_a_node(batch_client):
    make_pool(batch_client, "sleepy", nodes=1)
    node_id = only_node(batch_client, "sleepy").id
    batch_client.begin_deallocate_node("sleepy", node_id, internal_models.BatchNodeDeallocateOptions(
        node_deallocate_option="requeue"), polling_interval=POLL).result()
    node_state(batch_client, "sleepy", node_id, "deallocated")
    make_job(batch_client, "job", "sleepy")
    batch_client.create_task("job", task("waits", sh("true")))
    assert batch_client.get_task("job", "waits").state == "active"
    batch_client.begin_start_node("sleepy", node_id, polling_interval=POLL).result()
    node_state(batch_client, "sleepy", node_id, "idle")
    assert wait_task_completed(batch_client, "job", "waits").execution_info.result == "success"
    with pytest.raises(ResourceExistsError) as caught:
        batch_client.begin_start_node("sleepy", node_id, polling_interval=POLL)
    assert error_of(caught) == (409, "OperationNotValidOnNode")


# -- removing nodes -----------------------------------------------------------------------------

def test_remove_nodes_shrinks_the_pool_by_those_nodes(batch_client):
    make_pool(batch_client, "shrinking", nodes=3)
    nodes = sorted(n.id for n in batch_client.list_nodes("shrinking"))
    before = batch_client.get_pool("shrinking").etag
    status, headers = batch_client._remove_nodes_internal(   # the raw call, to see its answer
        "shrinking", models.BatchNodeRemoveOptions(node_ids=nodes[:2], node_deallocation_option="taskcompletion"),
        cls=lambda response, _body, h: (response.http_response.status_code, h))
    assert status == 202
    assert headers["DataServiceId"].endswith("/pools/shrinking/removenodes")
    assert headers["ETag"] != before
    pool = batch_client.get_pool("shrinking")
    assert pool.target_dedicated_nodes == 1 and pool.allocation_state == "resizing"
    wait_for(lambda: [n.id for n in batch_client.list_nodes("shrinking")] == nodes[2:], message="two nodes gone")
    assert batch_client.get_pool("shrinking").allocation_state == "steady"


def test_remove_nodes_through_the_poller(batch_client):
    make_pool(batch_client, "polled", nodes=2)
    node_id = sorted(n.id for n in batch_client.list_nodes("polled"))[0]
    batch_client.begin_remove_nodes("polled", models.BatchNodeRemoveOptions(node_ids=[node_id]),
                                    polling_interval=POLL).result()
    assert node_id not in [n.id for n in batch_client.list_nodes("polled")]
    assert batch_client.get_pool("polled").current_dedicated_nodes == 1


def test_remove_nodes_refusals_change_nothing(localbatch, batch_client):
    make_pool(batch_client, "kept", nodes=1)
    node_id = only_node(batch_client, "kept").id
    with pytest.raises(ResourceNotFoundError) as caught:
        batch_client.begin_remove_nodes("kept", models.BatchNodeRemoveOptions(node_ids=[node_id, "tvm-nope"]))
    assert error_of(caught) == (404, "NodeNotFound")
    status, _, body = signed_send(localbatch, "POST", f"/pools/kept/removenodes?api-version={API_VERSION}",
                                  json.dumps({"nodeList": [node_id] * 101}).encode())
    assert (status, body["code"]) == (400, "InvalidPropertyValue")
    batch_client.begin_resize_pool("kept", models.BatchPoolResizeOptions(target_dedicated_nodes=2))
    with pytest.raises(ResourceExistsError) as caught:
        batch_client.begin_remove_nodes("kept", models.BatchNodeRemoveOptions(node_ids=[node_id]))
    assert error_of(caught) == (409, "PoolBeingResized")
    assert node_id in [n.id for n in batch_client.list_nodes("kept")]


# -- users and remote login -----------------------------------------------------------------------

def test_node_users_are_created_replaced_and_deleted_without_keeping_passwords(localbatch, batch_client, tmp_path):
    make_pool(batch_client, "logins", nodes=1)
    node_id = only_node(batch_client, "logins").id
    status, headers = batch_client.create_node_user(
        "logins", node_id, models.BatchNodeUserCreateOptions(name="ops", password="s3cret-Passw0rd", is_admin=True),
        cls=lambda response, _body, _h: (response.http_response.status_code, response.http_response.headers))
    assert status == 201
    assert headers["Location"].endswith(f"/pools/logins/nodes/{node_id}/users/ops")
    assert headers["DataServiceId"] == headers["Location"]
    with pytest.raises(ResourceExistsError) as caught:
        batch_client.create_node_user("logins", node_id, models.BatchNodeUserCreateOptions(name="OPS", password="x"))
    assert error_of(caught) == (409, "NodeUserExists")
    batch_client.replace_node_user("logins", node_id, "ops", models.BatchNodeUserReplaceOptions(
        password="an0ther-Passw0rd", expiry_time=datetime.now(timezone.utc) + timedelta(days=3)))
    with pytest.raises(ResourceNotFoundError) as caught:
        batch_client.replace_node_user("logins", node_id, "nobody", models.BatchNodeUserReplaceOptions(password="x"))
    assert error_of(caught) == (404, "NodeUserNotFound")
    stored = json.dumps(localbatch.app.state.nodes["logins"][node_id])
    assert "Passw0rd" not in stored and "ops" in stored
    batch_client.delete_node_user("logins", node_id, "ops")
    with pytest.raises(ResourceNotFoundError) as caught:
        batch_client.delete_node_user("logins", node_id, "ops")
    assert error_of(caught) == (404, "NodeUserNotFound")


def test_a_node_user_needs_a_name(batch_client):
    make_pool(batch_client, "nameless", nodes=1)
    node_id = only_node(batch_client, "nameless").id
    with pytest.raises(HttpResponseError) as caught:
        batch_client.create_node_user("nameless", node_id, models.BatchNodeUserCreateOptions(password="x"))
    assert error_of(caught) == (400, "MissingRequiredProperty")


def test_remote_login_settings_are_the_nodes_ssh_endpoint(localbatch, batch_client):
    make_pool(batch_client, "remote", nodes=2)
    nodes = sorted(batch_client.list_nodes("remote"), key=lambda n: int(n.id.split("_")[1].split("-")[0]))
    ports = [batch_client.get_node_remote_login_settings("remote", n.id).remote_login_port for n in nodes]
    assert ports == [50000, 50001]
    settings = batch_client.get_node_remote_login_settings("remote", nodes[0].id)
    assert settings.remote_login_ip_address == nodes[0].ip_address
    status, headers, body = signed_send(
        localbatch, "GET", f"/pools/remote/nodes/{nodes[0].id}/remoteloginsettings?api-version={API_VERSION}")
    assert status == 200
    assert body["odata.metadata"].endswith("#Microsoft.Azure.Batch.Protocol.Entities.RemoteLoginSettings")
    assert headers["dataserviceid"].endswith("/remoteloginsettings")
    with pytest.raises(ResourceNotFoundError):
        batch_client.get_node_remote_login_settings("remote", "tvm-nope")


# -- extensions -------------------------------------------------------------------------------------

def test_a_node_without_extensions_lists_none(batch_client):
    make_pool(batch_client, "plain", nodes=1)
    node_id = only_node(batch_client, "plain").id
    assert list(batch_client.list_node_extensions("plain", node_id)) == []
    with pytest.raises(ResourceNotFoundError):
        batch_client.get_node_extension("plain", node_id, "secretext")


def test_a_pools_extensions_show_as_provisioned_on_its_nodes(batch_client):
    extension = models.VMExtension(name="secretext", type="KeyVaultForLinux", publisher="Microsoft.Azure.KeyVault",
                                   type_handler_version="1.0", auto_upgrade_minor_version=True)
    batch_client.create_pool(models.BatchPoolCreateOptions(
        id="extended", vm_size="standard_d2s_v3", target_dedicated_nodes=1,
        virtual_machine_configuration=models.VirtualMachineConfiguration(
            node_agent_sku_id="batch.node.ubuntu 22.04", extensions=[extension],
            image_reference=models.BatchVmImageReference(publisher="canonical", offer="0001-com-ubuntu-server-jammy",
                                                         sku="22_04-lts"))))
    wait_for(lambda: batch_client.get_pool("extended").allocation_state == "steady", message="steady")
    node_id = only_node(batch_client, "extended").id
    listed = list(batch_client.list_node_extensions("extended", node_id))
    assert [(e.vm_extension.name, e.provisioning_state) for e in listed] == [("secretext", "Succeeded")]
    one = batch_client.get_node_extension("extended", node_id, "secretext")
    assert one.vm_extension.publisher == "Microsoft.Azure.KeyVault"
    assert one.instance_view.statuses[0].code == "ProvisioningState/succeeded"


# -- Batch service logs ---------------------------------------------------------------------------------

def test_upload_batch_service_logs_writes_the_nodes_logs_to_the_container(batch_client, azurite):
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = f"logs{uuid.uuid4().hex[:12]}"
    blobs.create_container(container)
    sas = generate_container_sas(azurite.account_name, container, account_key=azurite.account_key,
                                 permission=ContainerSasPermissions(write=True, create=True),
                                 expiry=datetime.now(timezone.utc) + timedelta(hours=1))
    make_pool(batch_client, "logged", nodes=1, start_task=models.BatchStartTask(command_line=sh("echo hello-start")))
    node_id = only_node(batch_client, "logged").id
    wait_for(lambda: batch_client.get_node("logged", node_id).start_task_info.state == "completed",
             message="start task done")
    result = batch_client.upload_node_logs("logged", node_id, models.UploadBatchServiceLogsOptions(
        container_url=f"{azurite.blob_endpoint}/{container}?{sas}",
        start_time=datetime.now(timezone.utc) - timedelta(minutes=10)))
    assert result.number_of_files_uploaded == 3
    directory = result.virtual_directory_name
    assert directory.startswith("localbatch-") and f"/logged/{node_id}/" in directory
    client = blobs.get_container_client(container)
    names = sorted(b.name for b in client.list_blobs())
    assert names == [f"{directory}/agent.log", f"{directory}/startup/stderr.txt", f"{directory}/startup/stdout.txt"]
    assert node_id in client.download_blob(f"{directory}/agent.log").readall().decode()
    assert client.download_blob(f"{directory}/startup/stdout.txt").readall() == b"hello-start\n"


def test_upload_to_a_missing_container_is_refused_without_echoing_the_sas(batch_client, azurite):
    make_pool(batch_client, "unlogged", nodes=1)
    node_id = only_node(batch_client, "unlogged").id
    url = f"{azurite.blob_endpoint}/nothere{uuid.uuid4().hex[:8]}?sv=2021&sig=c2VjcmV0"
    with pytest.raises(HttpResponseError) as caught:
        batch_client.upload_node_logs("unlogged", node_id, models.UploadBatchServiceLogsOptions(
            container_url=url, start_time=datetime.now(timezone.utc)))
    assert error_of(caught)[0] == 400
    assert "sig=" not in json.dumps(details_of(caught))
