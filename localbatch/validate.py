"""Checks of request bodies: every rule a create or update must pass before anything changes."""

import re

from . import errors, formula
from .timeutil import UNLIMITED, format_duration, parse_duration

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TASK_USER_DEFAULT = {"autoUser": {"scope": "pool", "elevationLevel": "nonadmin"}}
SEVEN_DAYS = 7 * 86400


def require(body: dict, name: str, prefix: str = ""):
    value = body.get(name)
    if value is None or value == "":
        raise errors.missing_property(prefix + name)
    return value


def check_id(value, name: str = "id") -> str:
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise errors.invalid_property(
            name, value, "An id may contain only letters, digits, hyphens and underscores, at most 64 characters.")
    return value


def check_object(value, name: str) -> dict:
    if not isinstance(value, dict):
        raise errors.invalid_property(name, value, "Expected a JSON object.")
    return value


def check_list(value, name: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise errors.invalid_property(name, value, "Expected a JSON array.")
    return value


def check_int(value, name: str, low: int | None = None, high: int | None = None) -> int:
    # The service reads a number sent as a JSON string too: the az CLI sends "targetDedicatedNodes": "1".
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d{1,18}", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.invalid_property(name, value, "Expected an integer.")
    if (low is not None and value < low) or (high is not None and value > high):
        raise errors.invalid_property(name, value, f"The value must be between {low} and {high}.")
    return value


def check_bool(value, name: str) -> bool:
    # As with numbers, the service reads "true" and "false" sent as JSON strings.
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise errors.invalid_property(name, value, "Expected true or false.")
    return value


def check_enum(value, name: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.lower() not in allowed:
        raise errors.invalid_property(name, value, f"The value must be one of: {', '.join(allowed)}.")
    return value.lower()


def check_duration(value, name: str, minimum: float = 0.0, maximum: float | None = None) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise errors.invalid_property(name, value, "Expected an ISO 8601 duration such as PT1H30M.") from None
    if seconds < minimum or (maximum is not None and seconds > maximum):
        raise errors.invalid_property(name, value, "The duration is out of the allowed range.")
    return seconds


def check_string(value, name: str, max_length: int | None = None) -> str:
    if not isinstance(value, str):
        raise errors.invalid_property(name, value, "Expected a string.")
    if max_length is not None and len(value) > max_length:
        raise errors.invalid_property(name, value[:64] + "…", f"At most {max_length} characters.")
    return value


def check_relative_path(value, name: str) -> str:
    check_string(value, name)
    parts = value.replace("\\", "/").split("/")
    if value.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", value):
        raise errors.invalid_property(name, value, "The path must be relative and may not leave the working directory.")
    return value


def environment_settings(value, name: str) -> list[dict]:
    out = []
    for i, item in enumerate(check_list(value, name)):
        check_object(item, f"{name}[{i}]")
        var = check_string(require(item, "name", f"{name}[{i}]."), f"{name}[{i}].name")
        if "=" in var or "\0" in var:
            raise errors.invalid_property(f"{name}[{i}].name", var,
                                          "An environment variable name may not contain '=' or NUL.")
        val = item.get("value")
        if val is not None:
            check_string(val, f"{name}[{i}].value")
        out.append({"name": var, "value": val} if val is not None else {"name": var})
    return out


def resource_files(value, name: str) -> list[dict]:
    out = []
    for i, item in enumerate(check_list(value, name)):
        where = f"{name}[{i}]"
        check_object(item, where)
        sources = [k for k in ("httpUrl", "storageContainerUrl", "autoStorageContainerName") if item.get(k)]
        if len(sources) != 1:
            raise errors.invalid_property(where, "", "Exactly one of httpUrl, storageContainerUrl and "
                                          "autoStorageContainerName must be given.")
        if item.get("blobPrefix") and sources[0] == "httpUrl":
            raise errors.invalid_property(f"{where}.blobPrefix", item["blobPrefix"],
                                          "blobPrefix needs a container source.")
        if sources[0] == "httpUrl":
            require(item, "filePath", where + ".")
        if item.get("filePath") is not None:
            check_relative_path(item["filePath"], f"{where}.filePath")
        if item.get("fileMode") is not None:
            mode = check_string(item["fileMode"], f"{where}.fileMode")
            if not re.match(r"^0?[0-7]{3,4}$", mode):
                raise errors.invalid_property(f"{where}.fileMode", mode, "fileMode must be octal, such as 0770.")
        out.append(item)
    return out


def output_files(value, name: str) -> list[dict]:
    out = []
    for i, item in enumerate(check_list(value, name)):
        where = f"{name}[{i}]"
        check_object(item, where)
        check_string(require(item, "filePattern", where + "."), f"{where}.filePattern")
        destination = check_object(require(item, "destination", where + "."), f"{where}.destination")
        container = check_object(require(destination, "container", where + ".destination."),
                                 f"{where}.destination.container")
        check_string(require(container, "containerUrl", where + ".destination.container."),
                     f"{where}.destination.container.containerUrl")
        upload = check_object(require(item, "uploadOptions", where + "."), f"{where}.uploadOptions")
        upload["uploadCondition"] = check_enum(upload.get("uploadCondition", "taskcompletion"),
                                               f"{where}.uploadOptions.uploadCondition",
                                               ("tasksuccess", "taskfailure", "taskcompletion"))
        out.append(item)
    return out


def task_constraints(value, name: str, default_retries: int, max_wall: float | None = None) -> dict:
    value = check_object(value or {}, name)
    out = {"maxWallClockTime": UNLIMITED, "retentionTime": format_duration(SEVEN_DAYS),
           "maxTaskRetryCount": default_retries}
    if value.get("maxWallClockTime") is not None:
        out["maxWallClockTime"] = format_duration(check_duration(value["maxWallClockTime"], f"{name}.maxWallClockTime",
                                                                 maximum=max_wall))
    elif max_wall is not None:
        out["maxWallClockTime"] = format_duration(max_wall)
    if value.get("retentionTime") is not None:
        out["retentionTime"] = format_duration(check_duration(value["retentionTime"], f"{name}.retentionTime"))
    if value.get("maxTaskRetryCount") is not None:
        out["maxTaskRetryCount"] = check_int(value["maxTaskRetryCount"], f"{name}.maxTaskRetryCount", -1, 100)
    return out


def exit_options(value, name: str) -> dict:
    check_object(value, name)
    out = {}
    if value.get("jobAction") is not None:
        out["jobAction"] = check_enum(value["jobAction"], f"{name}.jobAction", ("none", "disable", "terminate"))
    if value.get("dependencyAction") is not None:
        out["dependencyAction"] = check_enum(value["dependencyAction"], f"{name}.dependencyAction",
                                             ("satisfy", "block"))
    return out


def exit_conditions(value, name: str) -> dict | None:
    if value is None:
        return None
    check_object(value, name)
    out: dict = {}
    for i, item in enumerate(check_list(value.get("exitCodes"), f"{name}.exitCodes")):
        out.setdefault("exitCodes", []).append({
            "code": check_int(require(item, "code", f"{name}.exitCodes[{i}]."), f"{name}.exitCodes[{i}].code"),
            "exitOptions": exit_options(require(item, "exitOptions", f"{name}.exitCodes[{i}]."),
                                        f"{name}.exitCodes[{i}].exitOptions")})
    for i, item in enumerate(check_list(value.get("exitCodeRanges"), f"{name}.exitCodeRanges")):
        where = f"{name}.exitCodeRanges[{i}]"
        out.setdefault("exitCodeRanges", []).append({
            "start": check_int(require(item, "start", where + "."), where + ".start"),
            "end": check_int(require(item, "end", where + "."), where + ".end"),
            "exitOptions": exit_options(require(item, "exitOptions", where + "."), where + ".exitOptions")})
    for special in ("preProcessingError", "fileUploadError", "default"):
        if value.get(special) is not None:
            out[special] = exit_options(value[special], f"{name}.{special}")
    return out


def depends_on(value, name: str) -> dict | None:
    if value is None:
        return None
    check_object(value, name)
    ids = [check_id(t, f"{name}.taskIds") for t in check_list(value.get("taskIds"), f"{name}.taskIds")]
    if sum(len(t) for t in ids) > 64000:
        raise errors.BatchError(400, "TaskDependencyListTooLong", "The task dependency list is too long.")
    ranges = []
    for i, item in enumerate(check_list(value.get("taskIdRanges"), f"{name}.taskIdRanges")):
        start = check_int(require(item, "start", f"{name}.taskIdRanges[{i}]."), f"{name}.taskIdRanges[{i}].start")
        end = check_int(require(item, "end", f"{name}.taskIdRanges[{i}]."), f"{name}.taskIdRanges[{i}].end")
        if end < start:
            raise errors.invalid_property(f"{name}.taskIdRanges[{i}]", f"{start}-{end}", "end must not be below start.")
        ranges.append({"start": start, "end": end})
    out = {}
    if ids:
        out["taskIds"] = ids
    if ranges:
        out["taskIdRanges"] = ranges
    return out or None


def user_identity(value, name: str) -> dict:
    if value is None:
        return TASK_USER_DEFAULT
    check_object(value, name)
    if value.get("username") and value.get("autoUser"):
        raise errors.invalid_property(name, "", "Give either username or autoUser, not both.")
    if value.get("autoUser"):
        auto = check_object(value["autoUser"], f"{name}.autoUser")
        return {"autoUser": {
            "scope": check_enum(auto.get("scope", "pool"), f"{name}.autoUser.scope", ("task", "pool")),
            "elevationLevel": check_enum(auto.get("elevationLevel", "nonadmin"), f"{name}.autoUser.elevationLevel",
                                         ("nonadmin", "admin"))}}
    if value.get("username"):
        return {"username": check_string(value["username"], f"{name}.username")}
    return TASK_USER_DEFAULT


def task_create(body, job: dict, prefix: str = "") -> dict:
    """A task as stored, from a BatchTaskCreateOptions body; raises BatchError on the first problem."""
    check_object(body, prefix or "body")
    task_id = check_id(require(body, "id", prefix), prefix + "id")
    command_line = check_string(require(body, "commandLine", prefix), prefix + "commandLine", 8192)
    job_retries = (job.get("constraints") or {}).get("maxTaskRetryCount", 0)
    task = {"id": task_id, "commandLine": command_line}
    if body.get("displayName") is not None:
        task["displayName"] = check_string(body["displayName"], prefix + "displayName", 1024)
    task["resourceFiles"] = resource_files(body.get("resourceFiles"), prefix + "resourceFiles")
    task["outputFiles"] = output_files(body.get("outputFiles"), prefix + "outputFiles")
    task["environmentSettings"] = environment_settings(body.get("environmentSettings"), prefix + "environmentSettings")
    task["constraints"] = task_constraints(body.get("constraints"), prefix + "constraints", job_retries)
    task["requiredSlots"] = check_int(body.get("requiredSlots", 1), prefix + "requiredSlots", 1, 256)
    task["userIdentity"] = user_identity(body.get("userIdentity"), prefix + "userIdentity")
    conditions = exit_conditions(body.get("exitConditions"), prefix + "exitConditions")
    if conditions:
        if job.get("onTaskFailure", "noaction") != "performexitoptionsjobaction" and _has_job_action(conditions):
            raise errors.invalid_property(prefix + "exitConditions", "jobAction",
                                          "A jobAction needs the job's onTaskFailure to be "
                                          "performexitoptionsjobaction.")
        task["exitConditions"] = conditions
    dependencies = depends_on(body.get("dependsOn"), prefix + "dependsOn")
    if dependencies:
        if not job.get("usesTaskDependencies"):
            raise errors.BatchError(400, "TaskDependenciesNotSpecifiedOnJob",
                                    "The job does not allow task dependencies: create it with usesTaskDependencies.")
        task["dependsOn"] = dependencies
    for passthrough in ("containerSettings", "affinityInfo", "applicationPackageReferences",
                        "authenticationTokenSettings", "multiInstanceSettings"):
        if body.get(passthrough) is not None:
            task[passthrough] = body[passthrough]
    for special in ("jobPreparationTask", "jobReleaseTask"):
        reserved = (job.get(special) or {}).get("id")
        if reserved and reserved.lower() == task_id.lower():
            raise errors.conflict(f"TaskIdSameAs{special[0].upper()}{special[1:]}",
                                  f"The task id is the same as the job's {special}.")
    return task


def _has_job_action(conditions: dict) -> bool:
    options = [c["exitOptions"] for c in conditions.get("exitCodes", []) + conditions.get("exitCodeRanges", [])]
    options += [conditions[k] for k in ("preProcessingError", "fileUploadError", "default") if k in conditions]
    return any("jobAction" in o for o in options)


def start_task(value, name: str) -> dict | None:
    if value is None:
        return None
    check_object(value, name)
    out = {"commandLine": check_string(require(value, "commandLine", name + "."), name + ".commandLine", 8192)}
    out["resourceFiles"] = resource_files(value.get("resourceFiles"), name + ".resourceFiles")
    out["environmentSettings"] = environment_settings(value.get("environmentSettings"), name + ".environmentSettings")
    out["userIdentity"] = user_identity(value.get("userIdentity"), name + ".userIdentity")
    out["maxTaskRetryCount"] = check_int(value.get("maxTaskRetryCount", 0), name + ".maxTaskRetryCount", -1, 100)
    out["waitForSuccess"] = check_bool(value.get("waitForSuccess", True), name + ".waitForSuccess")
    if value.get("containerSettings") is not None:
        out["containerSettings"] = value["containerSettings"]
    return out


def pool_create(body) -> dict:
    check_object(body, "body")
    pool = {"id": check_id(require(body, "id"))}
    pool["vmSize"] = check_string(require(body, "vmSize"), "vmSize").lower()
    if body.get("displayName") is not None:
        pool["displayName"] = check_string(body["displayName"], "displayName", 1024)
    pool.update(autoscale_settings(body))
    if not pool["enableAutoScale"]:   # with autoscale, the formula's first run sets the targets
        pool["targetDedicatedNodes"] = check_int(body.get("targetDedicatedNodes", 0), "targetDedicatedNodes", 0, 1000)
        pool["targetLowPriorityNodes"] = check_int(body.get("targetLowPriorityNodes", 0), "targetLowPriorityNodes",
                                                   0, 1000)
    pool["resizeTimeout"] = format_duration(check_duration(body.get("resizeTimeout", "PT15M"), "resizeTimeout", 300))
    pool["taskSlotsPerNode"] = check_int(body.get("taskSlotsPerNode", 1), "taskSlotsPerNode", 1, 256)
    policy = check_object(body.get("taskSchedulingPolicy") or {}, "taskSchedulingPolicy")
    pool["taskSchedulingPolicy"] = {"nodeFillType": check_enum(policy.get("nodeFillType", "spread"),
                                                               "taskSchedulingPolicy.nodeFillType", ("spread", "pack"))}
    task = start_task(body.get("startTask"), "startTask")
    if task:
        pool["startTask"] = task
    pool["enableInterNodeCommunication"] = check_bool(body.get("enableInterNodeCommunication", False),
                                                     "enableInterNodeCommunication")
    _check_resource_ids(body)
    for passthrough in ("virtualMachineConfiguration", "networkConfiguration", "metadata", "userAccounts",
                        "applicationPackageReferences", "mountConfiguration", "resourceTags",
                        "targetNodeCommunicationMode",
                        "upgradePolicy", "identity"):
        if body.get(passthrough) is not None:
            pool[passthrough] = body[passthrough]
    return pool


# Azure Resource Manager ids the service checks the form of (it refuses a malformed one with 400).
_ARM = r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
SUBNET_ID = re.compile(_ARM + r"Microsoft\.Network/virtualNetworks/[^/]+/subnets/[^/]+$", re.IGNORECASE)
IMAGE_ID = re.compile(_ARM + r"Microsoft\.Compute/(images/[^/]+|galleries/[^/]+/images/[^/]+(/versions/[^/]+)?)$",
                      re.IGNORECASE)


def _check_resource_ids(body: dict) -> None:
    network = body.get("networkConfiguration")
    if network is not None:
        check_object(network, "networkConfiguration")
        subnet = network.get("subnetId")
        if subnet is not None and not (isinstance(subnet, str) and SUBNET_ID.match(subnet)):
            raise errors.invalid_property("subnetId", subnet, "The subnetId must be the id of a subnet: /subscriptions/"
                                          "{subscription}/resourceGroups/{group}/providers/Microsoft.Network/"
                                          "virtualNetworks/{network}/subnets/{subnet}.")
    configuration = body.get("virtualMachineConfiguration")
    if configuration is not None:
        image = check_object(check_object(configuration, "virtualMachineConfiguration").get("imageReference") or {},
                             "virtualMachineConfiguration.imageReference")
        image_id = image.get("virtualMachineImageId")
        if image_id is not None and not (isinstance(image_id, str) and IMAGE_ID.match(image_id)):
            raise errors.invalid_property("virtualMachineImageId", image_id,
                                          "The image id must be the id of a managed image "
                                          "(/subscriptions/{subscription}/"
                                          "resourceGroups/{group}/providers/Microsoft.Compute/images/{image}) or of a "
                                          "gallery image, with or without /versions/{version} "
                                          "(…/Microsoft.Compute/galleries/{gallery}/images/{image}).")


def job_create(body) -> dict:
    check_object(body, "body")
    job = {"id": check_id(require(body, "id"))}
    if body.get("displayName") is not None:
        job["displayName"] = check_string(body["displayName"], "displayName", 1024)
    pool_info = check_object(require(body, "poolInfo"), "poolInfo")
    if bool(pool_info.get("poolId")) == bool(pool_info.get("autoPoolSpecification")):
        raise errors.invalid_property("poolInfo", "", "Give exactly one of poolId and autoPoolSpecification.")
    if pool_info.get("poolId"):
        job["poolInfo"] = {"poolId": check_id(pool_info["poolId"], "poolInfo.poolId")}
    else:
        spec = check_object(pool_info["autoPoolSpecification"], "poolInfo.autoPoolSpecification")
        prefix = spec.get("autoPoolIdPrefix") or ""
        if prefix and (not ID_PATTERN.match(prefix) or len(prefix) > 20):
            raise errors.invalid_property("poolInfo.autoPoolSpecification.autoPoolIdPrefix", prefix,
                                          "At most 20 letters, digits, hyphens and underscores.")
        lifetime = check_enum(require(spec, "poolLifetimeOption", "poolInfo.autoPoolSpecification."),
                              "poolInfo.autoPoolSpecification.poolLifetimeOption", ("jobschedule", "job"))
        pool_body = dict(check_object(require(spec, "pool", "poolInfo.autoPoolSpecification."),
                                      "poolInfo.autoPoolSpecification.pool"))
        pool_body["id"] = "autopool"  # placeholder to validate the rest; the real id is made at creation
        pool = pool_create(pool_body)
        pool.pop("id")
        job["poolInfo"] = {"autoPoolSpecification": {"autoPoolIdPrefix": prefix, "poolLifetimeOption": lifetime,
                                                     "keepAlive": check_bool(spec.get("keepAlive", False),
                                                                             "poolInfo.autoPoolSpecification.keepAlive"),
                                                     "pool": pool}}
    job["priority"] = check_int(body.get("priority", 0), "priority", -1000, 1000)
    job["maxParallelTasks"] = check_int(body.get("maxParallelTasks", -1), "maxParallelTasks", -1, 1 << 30)
    job["allowTaskPreemption"] = check_bool(body.get("allowTaskPreemption", False), "allowTaskPreemption")
    constraints = check_object(body.get("constraints") or {}, "constraints")
    job["constraints"] = {
        "maxWallClockTime": format_duration(check_duration(constraints["maxWallClockTime"],
                                                           "constraints.maxWallClockTime"))
        if constraints.get("maxWallClockTime") else UNLIMITED,
        "maxTaskRetryCount": check_int(constraints.get("maxTaskRetryCount", 0), "constraints.maxTaskRetryCount",
                                       -1, 100)}
    job["usesTaskDependencies"] = check_bool(body.get("usesTaskDependencies", False), "usesTaskDependencies")
    job["onAllTasksComplete"] = check_enum(body.get("onAllTasksComplete", "noaction"), "onAllTasksComplete",
                                           ("noaction", "terminatejob"))
    job["onTaskFailure"] = check_enum(body.get("onTaskFailure", "noaction"), "onTaskFailure",
                                      ("noaction", "performexitoptionsjobaction"))
    job["commonEnvironmentSettings"] = environment_settings(body.get("commonEnvironmentSettings"),
                                                            "commonEnvironmentSettings")
    if body.get("jobManagerTask") is not None:
        raise errors.BatchError(400, "UnsupportedProperty", "localbatch does not run job manager tasks.",
                                {"PropertyName": "jobManagerTask"})
    prep = body.get("jobPreparationTask")
    if prep is not None:
        check_object(prep, "jobPreparationTask")
        out = {"id": check_id(prep.get("id") or "jobpreparation", "jobPreparationTask.id"),
               "commandLine": check_string(require(prep, "commandLine", "jobPreparationTask."),
                                           "jobPreparationTask.commandLine", 8192)}
        out["resourceFiles"] = resource_files(prep.get("resourceFiles"), "jobPreparationTask.resourceFiles")
        out["environmentSettings"] = environment_settings(prep.get("environmentSettings"),
                                                          "jobPreparationTask.environmentSettings")
        out["constraints"] = task_constraints(prep.get("constraints"), "jobPreparationTask.constraints", 0)
        out["waitForSuccess"] = check_bool(prep.get("waitForSuccess", True), "jobPreparationTask.waitForSuccess")
        out["userIdentity"] = user_identity(prep.get("userIdentity"), "jobPreparationTask.userIdentity")
        out["rerunOnNodeRebootAfterSuccess"] = check_bool(prep.get("rerunOnNodeRebootAfterSuccess", True),
                                                           "jobPreparationTask.rerunOnNodeRebootAfterSuccess")
        job["jobPreparationTask"] = out
    release = body.get("jobReleaseTask")
    if release is not None:
        if prep is None:
            raise errors.invalid_property("jobReleaseTask", "", "A job release task needs a job preparation task.")
        check_object(release, "jobReleaseTask")
        out = {"id": check_id(release.get("id") or "jobrelease", "jobReleaseTask.id"),
               "commandLine": check_string(require(release, "commandLine", "jobReleaseTask."),
                                           "jobReleaseTask.commandLine", 8192)}
        if out["id"].lower() == job["jobPreparationTask"]["id"].lower():
            raise errors.invalid_property("jobReleaseTask.id", out["id"],
                                          "The release task id must differ from the preparation task id.")
        out["resourceFiles"] = resource_files(release.get("resourceFiles"), "jobReleaseTask.resourceFiles")
        out["environmentSettings"] = environment_settings(release.get("environmentSettings"),
                                                          "jobReleaseTask.environmentSettings")
        out["maxWallClockTime"] = format_duration(check_duration(release.get("maxWallClockTime", "PT15M"),
                                                                 "jobReleaseTask.maxWallClockTime", maximum=900))
        out["retentionTime"] = format_duration(check_duration(release.get("retentionTime", "P7D"),
                                                              "jobReleaseTask.retentionTime"))
        out["userIdentity"] = user_identity(release.get("userIdentity"), "jobReleaseTask.userIdentity")
        job["jobReleaseTask"] = out
    for passthrough in ("metadata", "networkConfiguration"):
        if body.get(passthrough) is not None:
            job[passthrough] = body[passthrough]
    return job


# -- autoscale settings of a pool ------------------------------------------------------------

DEFAULT_INTERVAL = 15 * 60
MIN_INTERVAL = 5 * 60
MAX_INTERVAL = 168 * 3600

# How a failed run is reported in autoScaleRun.error, by the kind of FormulaError.
FORMULA_ERRORS = {
    "syntax": ("AutoScalingFormulaSyntaxError", "The specified auto-scaling formula has a syntax error."),
    "unsupported": ("InvalidAutoScalingSettings", "The specified auto-scaling settings are not valid."),
    "samples": ("InsufficientSampleData", "Autoscale evaluation failed due to insufficient sample data"),
    "evaluation": ("AutoScaleEvaluationFailed", "Autoscale evaluation failed"),
}


def check_formula(text, name: str = "autoScaleFormula") -> list[formula.Statement]:
    """The parsed formula, or the 400 the service answers for a formula it cannot use."""
    check_string(text, name)
    if len(text) > formula.MAX_FORMULA_CHARS:
        raise errors.BatchError(400, "AutoScalingFormulaTooLong",
                                "The specified auto-scaling formula exceeds lengths limit.",
                                {"MaxLength": formula.MAX_FORMULA_CHARS})
    try:
        return formula.parse(text)
    except formula.FormulaError as exc:
        code, message = FORMULA_ERRORS[exc.kind]
        raise errors.BatchError(400, code, message, {"Message": str(exc)}) from None


def check_interval(value, name: str = "autoScaleEvaluationInterval") -> float:
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise errors.invalid_property(name, value, "Expected an ISO 8601 duration such as PT15M.") from None
    if not MIN_INTERVAL <= seconds <= MAX_INTERVAL:
        raise errors.invalid_property(name, value, "The interval must be between 5 minutes and 168 hours.")
    return seconds


def autoscale_settings(body: dict, prefix: str = "") -> dict:
    """The autoscale fields of a pool being created (or of an auto-pool specification)."""
    enabled = check_bool(body.get("enableAutoScale", False), prefix + "enableAutoScale")
    if not enabled:
        if body.get("autoScaleFormula") is not None:
            raise errors.invalid_property(prefix + "autoScaleFormula", body["autoScaleFormula"],
                                          "autoScaleFormula may be given only with enableAutoScale set to true.")
        return {"enableAutoScale": False}
    for name in ("targetDedicatedNodes", "targetLowPriorityNodes"):
        if body.get(name) is not None:
            raise errors.invalid_property(prefix + name, body[name],
                                          f"{name} must not be given when enableAutoScale is true: the formula "
                                          f"sets the target.")
    if body.get("autoScaleFormula") in (None, ""):
        raise errors.missing_property(prefix + "autoScaleFormula")
    check_formula(body["autoScaleFormula"], prefix + "autoScaleFormula")
    interval = check_interval(body.get("autoScaleEvaluationInterval", "PT15M"), prefix + "autoScaleEvaluationInterval")
    return {"enableAutoScale": True, "autoScaleFormula": body["autoScaleFormula"],
            "autoScaleEvaluationInterval": format_duration(interval)}
