"""What a client does to the nodes of a pool: disable and enable task scheduling, reboot, reimage,
deallocate and start, remove nodes from the pool, node users and remote login, VM extensions, and
uploading the node's Batch service logs to a container."""

import os
import time
import zlib
from datetime import timedelta

from . import errors, validate, wire
from .nodes import Nodes
from .processes import Workers
from .state import AccountState, key_of
from .timeutil import format_duration, from_iso, now_iso, to_iso, utcnow

MAX_NODES_PER_REMOVE = 100
# How what is running on a node ends when the node reboots, is deallocated or disabled.
TASK_OPTIONS = ("requeue", "terminate", "taskcompletion", "retaineddata")
# Node states from which a node takes an action, and the 409 the service answers from the others.
READY_STATES = ("idle", "running", "offline", "starttaskfailed")
BUSY_CODES = {"creating": "NodeBeingCreated", "starting": "NodeBeingStarted", "waitingforstarttask": "NodeBeingStarted",
              "rebooting": "NodeBeingRebooted", "reimaging": "NodeBeingReimaged", "unusable": "NodeStateUnusable"}


class NodeActions:
    """Every method runs under the account lock."""

    def __init__(self, state: AccountState, nodes: Nodes, workers: Workers, account_name: str, account_url: str):
        self.state = state
        self.nodes = nodes
        self.workers = workers
        self.account_name = account_name
        self.account_url = account_url

    # -- task scheduling ----------------------------------------------------------------------
    def disable_scheduling(self, pool: dict, node: dict, body) -> None:
        body = validate.check_object(body or {}, "body")
        option = validate.check_enum(body.get("nodeDisableSchedulingOption", "requeue"), "nodeDisableSchedulingOption",
                                     ("requeue", "terminate", "taskcompletion"))
        self._require_ready(node)
        if node["schedulingState"] == "disabled":
            raise errors.conflict("NodeAlreadyInTargetSchedulingState",
                                  "The specified node is already in the target scheduling state.")
        node["schedulingState"] = "disabled"
        self._end_tasks(node, option)
        if node["state"] == "idle":
            self.nodes.set_state(node["_pool"], node, "offline")
        self.state.save_node(node["_pool"], node)

    def enable_scheduling(self, pool: dict, node: dict) -> None:
        self._require_ready(node)
        if node["schedulingState"] == "enabled":
            raise errors.conflict("NodeAlreadyInTargetSchedulingState",
                                  "The specified node is already in the target scheduling state.")
        node["schedulingState"] = "enabled"
        if node["state"] == "offline":
            self.nodes.set_state(node["_pool"], node, "idle")
        self.state.save_node(node["_pool"], node)

    # -- reboot, reimage, deallocate, start ---------------------------------------------------
    def reboot(self, pool: dict, node: dict, body) -> None:
        body = validate.check_object(body or {}, "body")
        option = validate.check_enum(body.get("nodeRebootOption", "requeue"), "nodeRebootOption", TASK_OPTIONS)
        self._require_ready(node)
        self._stop_then(node, option, "reboot")

    def reimage(self, pool: dict, node: dict, body) -> None:
        validate.check_object(body or {}, "body")
        # Reimage exists only for Cloud Services pools, which the service no longer creates; on every
        # Virtual Machine pool it answers this (recorded from the service).
        raise errors.BatchError(409, "OperationNotValidOnNode", "The specified operation is not valid on the node.",
                                {"Reason": "Operation reimage can be invoked only on pools created with "
                                           "cloudServiceConfiguration"})

    def deallocate(self, pool: dict, node: dict, body) -> None:
        body = validate.check_object(body or {}, "body")
        option = validate.check_enum(body.get("nodeDeallocateOption", "requeue"), "nodeDeallocateOption", TASK_OPTIONS)
        self._require_ready(node)
        self._stop_then(node, option, "deallocate")

    def start(self, pool: dict, node: dict) -> None:
        if node["state"] != "deallocated":
            raise errors.BatchError(409, "OperationNotValidOnNode", "The specified operation is not valid on the node.",
                                    {"Reason": "Only a deallocated node can be started."})
        node["_next_at"] = time.time() + self.nodes.node_start_seconds / 2
        node["lastBootTime"] = now_iso()
        self.nodes.set_state(node["_pool"], node, "starting")

    def _stop_then(self, node: dict, option: str, action: str) -> None:
        """End or requeue what runs on the node, then reboot or deallocate it; with taskcompletion (and
        retaineddata) the node takes no new task and acts once its running tasks have ended."""
        node["_pending_action"] = action
        node["_scheduling_before"] = node.get("_scheduling_before", node["schedulingState"])
        node["schedulingState"] = "disabled"
        self._end_tasks(node, option)
        if option in ("requeue", "terminate") or node["runningTasksCount"] == 0:
            self._act(node)
        else:
            self.state.save_node(node["_pool"], node)

    def _act(self, node: dict) -> None:
        action = node.pop("_pending_action")
        attempt = self.workers.start_tasks.get((node["_pool"], node["id"]))
        if attempt:
            attempt.kill("requeue")
        node["_next_at"] = time.time() + self.nodes.node_start_seconds / 2
        self.nodes.set_state(node["_pool"], node, "rebooting" if action == "reboot" else "deallocating")

    def _end_tasks(self, node: dict, option: str) -> None:
        if option not in ("requeue", "terminate"):
            return
        for (job_key, task_key), attempt in list(self.workers.tasks.items()):
            task = self.state.tasks.get(job_key, {}).get(task_key)
            if task and (task.get("nodeInfo") or {}).get("nodeId") == node["id"]:
                attempt.kill("requeue" if option == "requeue" else "user")

    def tick(self, now: float) -> float:
        """Move nodes on through the states these actions put them in; returns when next due."""
        next_due = now + 60
        for nodes in list(self.state.nodes.values()):
            for node in list(nodes.values()):
                if node.get("_pending_action") and node["runningTasksCount"] == 0:
                    self._act(node)
                state = node["state"]
                if state not in ("rebooting", "deallocating"):
                    continue
                due = node.get("_next_at", now)
                if now < due:
                    next_due = min(next_due, due)
                    continue
                node["schedulingState"] = node.pop("_scheduling_before", "enabled")
                if state == "rebooting":
                    node["_next_at"] = now + self.nodes.node_start_seconds / 2
                    node["lastBootTime"] = now_iso()
                    self.nodes.set_state(node["_pool"], node, "starting")
                else:
                    self.nodes.set_state(node["_pool"], node, "deallocated")
        return next_due

    # -- removing nodes -----------------------------------------------------------------------
    def remove_nodes(self, pool: dict, body) -> None:
        body = validate.check_object(body, "body")
        node_ids = validate.check_list(validate.require(body, "nodeList"), "nodeList")
        if not 1 <= len(node_ids) <= MAX_NODES_PER_REMOVE:
            raise errors.invalid_property("nodeList", len(node_ids),
                                          f"Give from 1 to {MAX_NODES_PER_REMOVE} node ids per request.")
        timeout = validate.check_duration(body.get("resizeTimeout", "PT15M"), "resizeTimeout", 300)
        option = validate.check_enum(body.get("nodeDeallocationOption", "requeue"), "nodeDeallocationOption",
                                     TASK_OPTIONS)
        if pool["state"] == "deleting":
            raise errors.conflict("PoolBeingDeleted", "The specified pool has been marked for deletion and is being "
                                                      "reclaimed.")
        if pool["allocationState"] != "steady":
            raise errors.conflict("PoolBeingResized", "The specified pool is being resized; remove nodes once its "
                                                      "allocation state is steady.")
        pool_key = key_of(pool["id"])
        chosen = []
        for node_id in node_ids:
            node = self.state.nodes[pool_key].get(validate.check_string(node_id, "nodeList"))
            if node is None:
                raise errors.not_found("Node", node_id)
            if node["state"] != "leavingpool" and node not in chosen:
                chosen.append(node)
        for node in chosen:
            target = "targetDedicatedNodes" if node["isDedicated"] else "targetLowPriorityNodes"
            pool[target] = max(0, pool[target] - 1)
            self.nodes.leave_pool(pool_key, node, option)
        pool.update(allocationState="resizing", allocationStateTransitionTime=now_iso(),
                    resizeTimeout=format_duration(timeout))
        self.state.touch(pool)
        self.state.save_pool(pool)

    # -- users and remote login ---------------------------------------------------------------
    def add_user(self, pool: dict, node: dict, body) -> dict:
        body = validate.check_object(body, "body")
        name = validate.check_string(validate.require(body, "name"), "name", 256)
        self._require_ready(node)
        users = node.setdefault("_users", {})
        if name.lower() in users:
            raise errors.exists("NodeUser")
        users[name.lower()] = dict(self._user_settings(body), name=name,
                                   isAdmin=validate.check_bool(body.get("isAdmin", False), "isAdmin"))
        self.state.save_node(node["_pool"], node)
        return users[name.lower()]

    def replace_user(self, pool: dict, node: dict, name: str, body) -> None:
        body = validate.check_object(body or {}, "body")
        user = self._user(node, name)
        self._require_ready(node)
        settings = self._user_settings(body)
        for key in ("hasPassword", "expiryTime", "sshPublicKey"):
            user.pop(key, None)
        user.update(settings)
        self.state.save_node(node["_pool"], node)

    def delete_user(self, pool: dict, node: dict, name: str) -> None:
        self._user(node, name)
        self._require_ready(node)
        del node["_users"][name.lower()]
        self.state.save_node(node["_pool"], node)

    def _user(self, node: dict, name: str) -> dict:
        user = node.get("_users", {}).get(name.lower())
        if user is None:
            raise errors.BatchError(404, "NodeUserNotFound", "The specified node user does not exist.",
                                    {"UserName": name})
        return user

    @staticmethod
    def _user_settings(body: dict) -> dict:
        """What is kept of a user: never the password (nothing reads it back), only that there is one."""
        settings = {}
        if body.get("password") is not None:
            validate.check_string(body["password"], "password", 256)
            settings["hasPassword"] = True
        if body.get("sshPublicKey") is not None:
            settings["sshPublicKey"] = validate.check_string(body["sshPublicKey"], "sshPublicKey", 8192)
        expiry = body.get("expiryTime")
        if expiry is None:
            settings["expiryTime"] = to_iso(utcnow() + timedelta(days=1))
        else:
            try:
                settings["expiryTime"] = to_iso(from_iso(validate.check_string(expiry, "expiryTime")))
            except ValueError:
                raise errors.invalid_property("expiryTime", expiry, "Expected an ISO 8601 date and time.") from None
        return settings

    @staticmethod
    def remote_login(pool: dict, node: dict) -> dict:
        """The node's SSH endpoint, the one its endpointConfiguration shows."""
        endpoint = wire.node(node, pool, "")["endpointConfiguration"]["inboundEndpoints"][0]
        return {"remoteLoginIPAddress": endpoint["publicIPAddress"], "remoteLoginPort": endpoint["frontendPort"]}

    # -- extensions ---------------------------------------------------------------------------
    @staticmethod
    def extensions(pool: dict) -> list[dict]:
        """The pool's VM extensions as each node reports them: provisioned (localbatch runs none of them)."""
        configured = (pool.get("virtualMachineConfiguration") or {}).get("extensions") or []
        return [{"provisioningState": "Succeeded", "vmExtension": extension,
                 "instanceView": {"name": extension.get("name"), "statuses": [{
                     "code": "ProvisioningState/succeeded", "level": 0, "displayStatus": "Provisioning succeeded",
                     "message": "Recorded by localbatch; not run."}]}}
                for extension in configured if isinstance(extension, dict)]

    def extension(self, pool: dict, name: str) -> dict:
        for item in self.extensions(pool):
            if (item["vmExtension"].get("name") or "").lower() == name.lower():
                return item
        raise errors.BatchError(404, "ResourceNotFound", "The specified resource does not exist.",
                                {"ExtensionName": name})

    # -- Batch service logs ---------------------------------------------------------------------
    def service_logs(self, pool: dict, node: dict, body, request_id: str) -> tuple[str, str, list[tuple[str, bytes]]]:
        """(container URL, virtual directory, [(file name, content)]) of an upload of the node's logs."""
        body = validate.check_object(body, "body")
        container_url = validate.check_string(validate.require(body, "containerUrl"), "containerUrl")
        start = self._moment(validate.require(body, "startTime"), "startTime")
        end = self._moment(body["endTime"], "endTime") if body.get("endTime") is not None else None
        if body.get("identityReference") is not None:
            raise errors.BatchError(400, "UnsupportedProperty", "localbatch has no managed identities: give a "
                                    "container URL with a SAS token instead of an identityReference.",
                                    {"PropertyName": "identityReference"})
        # The service names the folder after the account, the pool, the node and the request.
        tag = f"{zlib.crc32(self.account_url.encode()):08X}{zlib.adler32(self.account_name.encode()):08X}"
        directory = f"{self.account_name}-{tag}/{pool['id']}/{node['id']}/{request_id}"
        files = [("agent.log", self._agent_log(pool, node).encode())]
        startup = os.path.join(self.nodes.node_dir(pool["id"], node["id"]), "startup")
        for name in ("stdout.txt", "stderr.txt"):
            path = os.path.join(startup, name)
            try:
                modified = os.path.getmtime(path)
                if modified >= start and (end is None or os.path.getctime(path) <= end):
                    with open(path, "rb") as source:
                        files.append((f"startup/{name}", source.read()))
            except OSError:
                continue
        return container_url, directory, files

    @staticmethod
    def _moment(value, name: str) -> float:
        try:
            return from_iso(validate.check_string(value, name)).timestamp()
        except ValueError:
            raise errors.invalid_property(name, value, "Expected an ISO 8601 date and time.") from None

    @staticmethod
    def _agent_log(pool: dict, node: dict) -> str:
        """What localbatch knows of the node's life, as its Batch agent would have logged it."""
        lines = [f"{node.get('allocationTime')} node {node['id']} allocated to pool {pool['id']} "
                 f"({node.get('vmSize')}, {'dedicated' if node.get('isDedicated') else 'low priority'})",
                 f"{node.get('lastBootTime')} node booted",
                 f"{node.get('stateTransitionTime')} node state {node['state']}, scheduling {node['schedulingState']}"]
        start_task = node.get("startTaskInfo")
        if start_task:
            lines.append(f"{start_task.get('startTime')} start task {start_task.get('state')}, "
                         f"exit code {start_task.get('exitCode')}, result {start_task.get('result')}")
        for recent in node.get("recentTasks") or []:
            info = recent.get("executionInfo") or {}
            lines.append(f"{info.get('endTime', '')} task {recent['jobId']}/{recent['taskId']} {recent['taskState']}"
                         f" exit code {info.get('exitCode')}")
        return "\n".join(lines) + "\n"

    # -- states ---------------------------------------------------------------------------------
    @staticmethod
    def _require_ready(node: dict) -> None:
        if node["state"] in READY_STATES:
            return
        code = BUSY_CODES.get(node["state"])
        if code:
            raise errors.conflict(code, f"The specified node is {node['state']}; try again once it is idle.")
        raise errors.BatchError(409, "OperationNotValidOnNode", "The specified operation is not valid on the node.",
                                {"Reason": f"The node is {node['state']}."})


def upload_logs(container_url: str, directory: str, files: list[tuple[str, bytes]]) -> int:
    """Write the log files under `directory` in the container (outside the account lock); the count written."""
    # Imported here, as in transfer.py: localbatch needs the storage SDK only for what talks to Blob storage.
    from azure.core.exceptions import AzureError, ClientAuthenticationError, ResourceNotFoundError  # noqa: PLC0415
    from azure.storage.blob import ContainerClient  # noqa: PLC0415

    try:
        container = ContainerClient.from_container_url(container_url)
    except ValueError:
        raise errors.invalid_property("containerUrl", _redacted(container_url), "Expected a container URL.") from None
    try:
        for name, content in files:
            container.upload_blob(f"{directory}/{name}", content, overwrite=True)
    except ResourceNotFoundError:
        raise errors.invalid_property("containerUrl", _redacted(container_url),
                                      "The container does not exist.") from None
    except ClientAuthenticationError:
        raise errors.invalid_property("containerUrl", _redacted(container_url),
                                      "The container refused the upload: give a SAS with write access.") from None
    except AzureError as exc:
        raise errors.invalid_property("containerUrl", _redacted(container_url),
                                      f"Writing to the container failed: {exc.__class__.__name__}.") from None
    finally:
        container.close()
    return len(files)


def _redacted(url: str) -> str:
    # A SAS token is a credential: never echo it in an error.
    return url.split("?", 1)[0]
