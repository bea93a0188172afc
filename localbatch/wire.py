"""The Batch service's wire format, as its recorded responses show it: the api-versions it accepts,
the enum spellings it writes, the optional fields it leaves out, and what it never sends back.

localbatch keeps entities in one lower-case spelling internally; everything a client reads goes
through the functions here, so the rules of the wire live in one place."""

import re

API_VERSIONS = frozenset({
    # What the azure-batch SDK (15.x: 2025-06-01), the az CLI (2024-02-01.19.0) and the recordings send,
    # and the versions between them; anything else is refused as the service refuses it.
    "2017-05-01.5.0", "2017-06-01.5.1", "2017-09-01.6.0", "2018-03-01.6.1", "2018-08-01.7.0", "2018-12-01.8.0",
    "2019-06-01.9.0", "2019-08-01.10.0", "2020-03-01.11.0", "2020-09-01.12.0", "2021-06-01.14.0",
    "2022-01-01.15.0", "2022-10-01.16.0", "2023-05-01.17.0", "2023-11-01.18.0", "2024-02-01.19.0",
    "2024-07-01.20.0", "2025-06-01",
})

JSON_CONTENT_TYPE = "application/json; odata=minimalmetadata"

# The enum values the service writes in PascalCase, by localbatch's own (lower-case) spelling. Every
# other enum (states, results, scopes, onAllTasksComplete, …) goes out lower case, as recorded.
NODE_FILL_TYPES = {"spread": "Spread", "pack": "Pack"}
UPLOAD_CONDITIONS = {"tasksuccess": "TaskSuccess", "taskfailure": "TaskFailure", "taskcompletion": "TaskCompletion"}
ADD_TASK_STATUSES = {"success": "Success", "clienterror": "ClientError", "servererror": "ServerError"}

# Optional lists the service leaves out of a body when they are unset (and so when they are empty).
OMITTED_WHEN_EMPTY = frozenset({
    "resourceFiles", "environmentSettings", "outputFiles", "metadata", "commonEnvironmentSettings", "errors",
    "resizeErrors", "applicationPackageReferences", "recentTasks", "userAccounts", "mountConfiguration",
})

SSH_FRONTEND_PORT = 50000   # nodes' inbound SSH endpoints start here, one port per node, as on Batch
_NODE_SERIAL = re.compile(r"_(\d+)-")


def _trimmed(entity: dict) -> dict:
    """A copy without localbatch's private keys and without the optional lists that are empty."""
    return {k: v for k, v in entity.items()
            if not k.startswith("_") and not (k in OMITTED_WHEN_EMPTY and not v)}


def task_spec(spec: dict) -> dict:
    """A task, start task, preparation or release task as the service writes it."""
    out = _trimmed(spec)
    if out.get("outputFiles"):
        out["outputFiles"] = [_output_file(item) for item in out["outputFiles"]]
    return out


def _output_file(item: dict) -> dict:
    options = item.get("uploadOptions") or {}
    condition = options.get("uploadCondition")
    if condition is None:
        return item
    return dict(item, uploadOptions=dict(options, uploadCondition=UPLOAD_CONDITIONS.get(condition.lower(), condition)))


def pool_spec(spec: dict) -> dict:
    """The pool part of a pool or of an auto-pool specification."""
    out = _trimmed(spec)
    policy = out.get("taskSchedulingPolicy")
    if policy and policy.get("nodeFillType"):
        fill = policy["nodeFillType"]
        out["taskSchedulingPolicy"] = dict(policy, nodeFillType=NODE_FILL_TYPES.get(fill.lower(), fill))
    if out.get("startTask"):
        out["startTask"] = task_spec(out["startTask"])
    if out.get("userAccounts"):
        # A user account's password is never sent back.
        out["userAccounts"] = [{k: v for k, v in dict({"elevationLevel": "nonadmin"}, **account).items()
                                if k != "password"} for account in out["userAccounts"]]
    image = (out.get("virtualMachineConfiguration") or {}).get("imageReference")
    if image and not image.get("virtualMachineImageId") and "version" not in image:
        out["virtualMachineConfiguration"] = dict(out["virtualMachineConfiguration"],
                                                  imageReference=dict(image, version="latest"))
    return out


def pool(stored: dict, url: str, current_dedicated: int, current_low_priority: int) -> dict:
    out = pool_spec(stored)
    out.update(url=url, currentDedicatedNodes=current_dedicated, currentLowPriorityNodes=current_low_priority)
    out.setdefault("certificateReferences", [])
    return out


def node(stored: dict, pool_stored: dict, url: str) -> dict:
    out = _trimmed(stored)
    out["url"] = url
    out.setdefault("certificateReferences", [])
    if out.get("startTask"):
        out["startTask"] = task_spec(out["startTask"])
    match = _NODE_SERIAL.search(stored["id"])
    out["endpointConfiguration"] = {"inboundEndpoints": [{
        "name": "SSHRule.0", "protocol": "tcp", "publicIPAddress": stored.get("ipAddress", "127.0.0.1"),
        "publicFQDN": "localhost", "frontendPort": SSH_FRONTEND_PORT + (int(match.group(1)) - 1 if match else 0),
        "backendPort": 22}]}
    image = (pool_spec(pool_stored).get("virtualMachineConfiguration") or {}).get("imageReference")
    if image:
        out["virtualMachineInfo"] = {"imageReference": dict(image, exactVersion=image.get("version", "latest"))}
    return out


def job(stored: dict, url: str) -> dict:
    out = _trimmed(stored)
    out["url"] = url
    for kind in ("jobPreparationTask", "jobReleaseTask", "jobManagerTask"):
        if out.get(kind):
            out[kind] = task_spec(out[kind])
    auto = (out.get("poolInfo") or {}).get("autoPoolSpecification")
    if auto:
        auto = {k: v for k, v in auto.items() if not (k == "autoPoolIdPrefix" and not v)}
        auto["pool"] = pool_spec(auto["pool"])
        out["poolInfo"] = {"autoPoolSpecification": auto}
    return out


def task(stored: dict, url: str) -> dict:
    out = task_spec(stored)
    out["url"] = url
    return out


def add_task_status(status: str) -> str:
    return ADD_TASK_STATUSES.get(status, status)


def odata_metadata(account_url: str, kind: str) -> str:
    """The `odata.metadata` of a body: `…/$metadata#pools` for a list, `…#pools/@Element` for one entity."""
    return f"{account_url}/$metadata#{kind}"
