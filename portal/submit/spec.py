"""A job template's spec, checked: the pool, the command line with its {placeholders}, the parameters a person
fills in and which values fit each, the fan-out, files, outputs and limits. Pure: no database, no network.

Safety rule: a value never reaches a shell unquoted. Every value is checked against its type (`clean_value`), then
passed through `shlex.quote` (portal.submit.render); the rendered script is itself quoted and run as `/bin/sh -c
'<script>'`. A placeholder therefore stands for whole shell words and must be written outside quotes (`echo
{name}`, not `echo "{name}"`); the spec check refuses the latter.

Command line placeholders: `{parameter}` for each parameter (a file parameter renders as `inputs/<name>`, a
`files` parameter as all of them), plus the fan-out's per-task name (`fan_out.as`: `{file}`, `{value}`, or
`{row.column}` for a CSV). Literal braces are written `{{` and `}}`."""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from batchsync.gateway.specs import ResourceFileSpec

PARAMETER_TYPES = ("string", "integer", "number", "boolean", "choice", "file", "files")
FAN_OUT_KINDS = ("none", "files", "csv", "range")
# More tasks than this in one submission is almost certainly a slip (a range of 1..10,000,000); Batch itself
# allows more, an engineer can split the work.
MAX_TASKS = 100_000
# A string parameter may not be longer than the template allows, and a template may not allow more than this.
DEFAULT_MAX_LENGTH = 1_000
MAX_MAX_LENGTH = 2_000_000
NAME_PATTERN = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
# The submission's own name among the posted values and their errors: a hyphen no parameter name may have.
SUBMISSION_NAME_FIELD = "submission-name"
# Batch's limits on the ids a submission sends: a pool, job or task id is 1 to 64 letters, digits, hyphens and
# underscores; an auto pool's id prefix is at most 20 of them (Batch appends its own unique part).
BATCH_ID_PATTERN = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
AUTO_POOL_ID_PREFIX_MAX = 20
AUTO_POOL_ID_PREFIX_PATTERN = re.compile(rf"\A[A-Za-z0-9_-]{{1,{AUTO_POOL_ID_PREFIX_MAX}}}\Z")
INTEGER_PATTERN = re.compile(r"\A[+-]?[0-9]{1,18}\Z")
NUMBER_PATTERN = re.compile(r"\A[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?\Z")


class SpecError(ValueError):
    """A template's spec is not usable; `problems` lists what to fix, for the engineer editing it."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    label: str
    required: bool = False
    default: object = None
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    help: str = ""
    max_length: int = DEFAULT_MAX_LENGTH
    pattern: str | None = None
    flag: str | None = None            # boolean: rendered as this option when true and as nothing when false
    extensions: tuple[str, ...] = ()   # file(s): allowed endings, lower case, e.g. (".txt",)
    max_files: int = 100
    max_file_bytes: int = 1000 ** 3


@dataclass(frozen=True)
class FanOut:
    kind: str = "none"
    parameter: str | None = None
    placeholder: str | None = None     # the name the per-task value is rendered as in the command line
    start: int = 1                     # range: first value


@dataclass(frozen=True)
class TemplateSpec:
    """A checked template spec; build it with `parse_spec`."""
    command_line: str
    parameters: tuple[Parameter, ...]
    fan_out: FanOut
    pool_id: str | None = None
    auto_pool: dict | None = None
    resource_files: tuple[ResourceFileSpec, ...] = ()
    preparation_command_line: str | None = None
    outputs: tuple[dict, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    max_wall_clock_seconds: int | None = None
    max_task_retry_count: int = 0
    required_slots: int = 1
    priority: int = 0

    def parameter(self, name: str) -> Parameter:
        return next(p for p in self.parameters if p.name == name)

    @property
    def pool_label(self) -> str:
        if self.pool_id:
            return f"pool {self.pool_id}"
        auto = self.auto_pool or {}   # a spec without a pool_id has an auto_pool
        return f"a pool of its own ({auto['node_count']} × {auto['vm_size']})"


# --- the spec ---------------------------------------------------------------------------------------------


def parse_spec(raw: Mapping) -> TemplateSpec:
    """Check a template spec (the JSON stored on a template version) and return it typed; SpecError says what is
    wrong, all problems at once."""
    problems: list[str] = []
    if not isinstance(raw, Mapping):
        raise SpecError(["The spec must be a JSON object."])
    known = {"pool", "command_line", "parameters", "fan_out", "resource_files", "job_preparation", "outputs",
             "environment", "constraints", "required_slots", "priority"}
    problems += [f"Unknown key “{key}”." for key in raw if key not in known]

    pool_id, auto_pool = _parse_pool(raw.get("pool"), problems)
    parameters = _parse_parameters(raw.get("parameters", []), problems)
    names = {p.name for p in parameters}
    fan_out = _parse_fan_out(raw.get("fan_out") or {"kind": "none"}, parameters, problems)
    command_line = raw.get("command_line")
    if not isinstance(command_line, str) or not command_line.strip():
        problems.append("command_line: give the command each task runs.")
        command_line = ""
    else:
        placeholders = set(names)
        if fan_out.placeholder:
            placeholders.add(fan_out.placeholder)
        for problem in command_line_problems(command_line, placeholders, csv_columns=fan_out.kind == "csv"):
            problems.append(f"command_line: {problem}")

    resource_files = []
    for number, item in enumerate(raw.get("resource_files") or [], start=1):
        if (not isinstance(item, Mapping) or set(item) != {"http_url", "file_path"}
                or not str(item["http_url"]).startswith(("https://", "http://"))
                or not _relative_path(item["file_path"])):
            problems.append(f"resource_files[{number}]: give http_url (https://…) and a relative file_path.")
        else:
            resource_files.append(ResourceFileSpec(http_url=item["http_url"], file_path=item["file_path"]))

    preparation = raw.get("job_preparation")
    preparation_command_line = None
    if preparation is not None:
        if not isinstance(preparation, Mapping) or not str(preparation.get("command_line", "")).strip():
            problems.append("job_preparation: give {\"command_line\": \"…\"}.")
        else:
            preparation_command_line = preparation["command_line"]

    outputs = []
    for number, item in enumerate(raw.get("outputs") or [], start=1):
        condition = item.get("upload_condition", "tasksuccess") if isinstance(item, Mapping) else None
        if (not isinstance(item, Mapping) or not isinstance(item.get("pattern"), str) or not item["pattern"].strip()
                or condition not in ("tasksuccess", "taskfailure", "taskcompletion")):
            problems.append(f"outputs[{number}]: give a file pattern, e.g. {{\"pattern\": \"out/*.png\"}}, and "
                            "optionally upload_condition tasksuccess, taskfailure or taskcompletion.")
        else:
            outputs.append({"pattern": item["pattern"], "upload_condition": condition})

    environment = raw.get("environment") or {}
    if not isinstance(environment, Mapping) or not all(
            isinstance(k, str) and NAME_PATTERN.fullmatch(k) and isinstance(v, str) for k, v in environment.items()):
        problems.append("environment: give an object of NAME: \"value\" strings.")
        environment = {}

    constraints = raw.get("constraints") or {}
    wall_clock = constraints.get("max_wall_clock_seconds") if isinstance(constraints, Mapping) else None
    retries = constraints.get("max_task_retry_count", 0) if isinstance(constraints, Mapping) else 0
    if wall_clock is not None and not _int_in(wall_clock, 1, 180 * 24 * 3600):
        problems.append("constraints.max_wall_clock_seconds: give whole seconds, at most 180 days.")
        wall_clock = None
    if not _int_in(retries, -1, 100):
        problems.append("constraints.max_task_retry_count: give a whole number from -1 (unlimited) to 100.")
        retries = 0
    required_slots = raw.get("required_slots", 1)
    if not _int_in(required_slots, 1, 256):
        problems.append("required_slots: give a whole number from 1 to 256.")
        required_slots = 1
    priority = raw.get("priority", 0)
    if not _int_in(priority, -1000, 1000):
        problems.append("priority: give a whole number from -1000 to 1000.")
        priority = 0

    if problems:
        raise SpecError(problems)
    return TemplateSpec(
        command_line=command_line, parameters=tuple(parameters), fan_out=fan_out, pool_id=pool_id,
        auto_pool=auto_pool, resource_files=tuple(resource_files), preparation_command_line=preparation_command_line,
        outputs=tuple(outputs), environment=dict(environment), max_wall_clock_seconds=wall_clock,
        max_task_retry_count=retries, required_slots=required_slots, priority=priority)


def _parse_pool(pool: Any, problems: list[str]) -> tuple[str | None, dict | None]:
    if not isinstance(pool, Mapping) or ("pool_id" in pool) == ("auto_pool" in pool):
        problems.append("pool: give either {\"pool_id\": \"…\"} or {\"auto_pool\": {…}}.")
        return None, None
    if "pool_id" in pool:
        if not isinstance(pool["pool_id"], str) or not BATCH_ID_PATTERN.fullmatch(pool["pool_id"]):
            problems.append("pool.pool_id: 1 to 64 letters, digits, hyphens and underscores.")
            return None, None
        return pool["pool_id"], None
    auto = pool["auto_pool"]
    needed = {"vm_size", "node_count", "image"}
    if not isinstance(auto, Mapping) or not needed <= set(auto):
        problems.append("pool.auto_pool: give vm_size, node_count and image (publisher, offer, sku, "
                        "node_agent_sku_id), and optionally task_slots_per_node and start_task.")
        return None, None
    image = auto["image"]
    if not isinstance(image, Mapping) or not {"publisher", "offer", "sku", "node_agent_sku_id"} <= set(image):
        problems.append("pool.auto_pool.image: give publisher, offer, sku and node_agent_sku_id.")
    if not _int_in(auto["node_count"], 0, 100):
        problems.append("pool.auto_pool.node_count: give a whole number from 0 to 100.")
    if not _int_in(auto.get("task_slots_per_node", 1), 1, 256):
        problems.append("pool.auto_pool.task_slots_per_node: give a whole number from 1 to 256.")
    start_task = auto.get("start_task")
    if start_task is not None and (not isinstance(start_task, Mapping)
                                   or not str(start_task.get("command_line", "")).strip()):
        problems.append("pool.auto_pool.start_task: give {\"command_line\": \"…\"}.")
    # Its optional "id_prefix" is checked against Batch's limits with the other ids (render.batch_id_problems).
    return None, dict(auto)


def _parse_parameters(raw: Any, problems: list[str]) -> list[Parameter]:
    if not isinstance(raw, list):
        problems.append("parameters: give a list.")
        return []
    parameters, seen = [], set()
    for number, item in enumerate(raw, start=1):
        where = f"parameters[{number}]"
        if not isinstance(item, Mapping):
            problems.append(f"{where}: give an object.")
            continue
        name, kind = item.get("name"), item.get("type")
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            problems.append(f"{where}: name must be letters, digits and underscores, not starting with a digit.")
            continue
        where = f"parameter “{name}”"
        if name in seen:
            problems.append(f"{where}: the name is used twice.")
        seen.add(name)
        if kind not in PARAMETER_TYPES:
            problems.append(f"{where}: type must be one of {', '.join(PARAMETER_TYPES)}.")
            continue
        choices = tuple(item.get("choices") or ())
        if kind == "choice" and (not choices or not all(isinstance(c, str) and plain_text(c) for c in choices)):
            problems.append(f"{where}: a choice needs a list of choices (plain text).")
        max_length = item.get("max_length", DEFAULT_MAX_LENGTH)
        if not _int_in(max_length, 1, MAX_MAX_LENGTH):
            problems.append(f"{where}: max_length must be a whole number from 1 to {MAX_MAX_LENGTH}.")
            max_length = DEFAULT_MAX_LENGTH
        pattern = item.get("pattern")
        if pattern is not None:
            try:
                re.compile(pattern)
            except (re.error, TypeError):
                problems.append(f"{where}: pattern is not a valid regular expression.")
                pattern = None
        low, high = item.get("min"), item.get("max")
        for bound in (low, high):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, (int, float))):
                problems.append(f"{where}: min and max must be numbers.")
        flag = item.get("flag")
        if flag is not None and (not isinstance(flag, str) or not re.fullmatch(r"-{1,2}[A-Za-z0-9][A-Za-z0-9_-]*",
                                                                                flag)):
            problems.append(f"{where}: flag must look like an option, e.g. --verbose.")
            flag = None
        extensions = tuple(str(e).lower() for e in item.get("extensions") or ())
        parameter = Parameter(
            name=name, type=kind, label=str(item.get("label") or name.replace("_", " ").capitalize()),
            required=bool(item.get("required", False)), default=item.get("default"), min=low, max=high,
            choices=choices, help=str(item.get("help", "")), max_length=max_length, pattern=pattern, flag=flag,
            extensions=extensions, max_files=item.get("max_files", 100),
            max_file_bytes=item.get("max_file_bytes", 1000 ** 3))
        if parameter.default is not None and kind not in ("file", "files"):
            try:
                clean_value(parameter, parameter.default)
            except ValueError as exc:
                problems.append(f"{where}: the default does not fit the parameter: {exc}")
        parameters.append(parameter)
    return parameters


def _parse_fan_out(raw: Any, parameters: list[Parameter], problems: list[str]) -> FanOut:
    if not isinstance(raw, Mapping) or raw.get("kind", "none") not in FAN_OUT_KINDS:
        problems.append(f"fan_out: kind must be one of {', '.join(FAN_OUT_KINDS)}.")
        return FanOut()
    kind = raw.get("kind", "none")
    if kind == "none":
        return FanOut()
    by_name = {p.name: p for p in parameters}
    parameter = by_name.get(raw.get("parameter") or "")
    wanted = {"files": ("files",), "csv": ("file",), "range": ("integer",)}[kind]
    if parameter is None or parameter.type not in wanted:
        problems.append(f"fan_out: a {kind} fan-out needs \"parameter\" naming a {' or '.join(wanted)} parameter.")
        return FanOut()
    default_placeholder = {"files": "file", "csv": "row", "range": "value"}[kind]
    placeholder = raw.get("as", default_placeholder)
    if not isinstance(placeholder, str) or not NAME_PATTERN.fullmatch(placeholder) or placeholder in by_name:
        problems.append("fan_out.as: a name (letters, digits, underscores) that is not a parameter's name.")
        placeholder = default_placeholder
    start = raw.get("start", 1)
    if not _int_in(start, -(10 ** 9), 10 ** 9):
        problems.append("fan_out.start: give a whole number.")
        start = 1
    return FanOut(kind=kind, parameter=parameter.name, placeholder=placeholder, start=start)


def command_line_problems(command_line: str, placeholders: set[str], *, csv_columns: bool = False) -> list[str]:
    """What is wrong with a command line template's {placeholders}: unknown names, format specs, bad braces."""
    problems = []
    try:
        fields = list(string.Formatter().parse(command_line))
    except ValueError:
        return ["braces do not match; write {{ and }} for a literal brace."]
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if spec or conversion:
            problems.append(f"“{{{name}}}”: only plain {{name}} placeholders are allowed.")
            continue
        base, _, column = name.partition(".")
        if column:
            if not csv_columns or base not in placeholders or not NAME_PATTERN.fullmatch(column):
                problems.append(f"“{{{name}}}” is not a CSV column placeholder of this template.")
        elif base not in placeholders:
            problems.append(f"“{{{name}}}” names no parameter of this template.")
    quoted = _placeholders_inside_quotes(fields)
    if quoted:
        problems.append(f"{', '.join('{' + name + '}' for name in quoted)} inside quotes: each value becomes one "
                        "shell word, quoted for you, so write the placeholder outside quotes.")
    if "\x00" in command_line:
        problems.append("it contains a NUL character.")
    return problems


def _placeholders_inside_quotes(fields: list[tuple[str, str | None, str | None, str | None]]) -> list[str]:
    # A quoted value inside "…" would keep its quotes literally ('7' instead of 7); inside '…' it would not be a
    # placeholder for the shell at all. Tracks the shell's quoting through the literal text between placeholders.
    inside, escaped, found = None, False, []
    for literal, name, _, _ in fields:
        for char in literal:
            if escaped:
                escaped = False
            elif char == "\\" and inside != "'":
                escaped = True
            elif inside is None and char in "'\"":
                inside = char
            elif char == inside:
                inside = None
        if name is not None and inside is not None:
            found.append(name)
    return found


def clean_value(parameter: Parameter, raw: Any) -> str | float | bool:
    """The value of one non-file parameter, converted to its type; ValueError in plain words if it does not fit."""
    kind = parameter.type
    if kind == "string":
        if not isinstance(raw, str):
            raise ValueError("give text.")
        if len(raw) > parameter.max_length:
            raise ValueError(f"at most {parameter.max_length:,} characters, please (this is {len(raw):,}).")
        if not plain_text(raw):
            raise ValueError("line breaks, tabs and other control characters are not allowed.")
        if parameter.pattern and not re.fullmatch(parameter.pattern, raw):
            raise ValueError("this value is not in the form the template expects." +
                             (f" {parameter.help}" if parameter.help else ""))
        return raw
    if kind == "integer":
        if isinstance(raw, bool) or not (isinstance(raw, int) or (isinstance(raw, str)
                                                                   and INTEGER_PATTERN.fullmatch(raw.strip()))):
            raise ValueError("give a whole number, e.g. 42.")
        value: float = int(raw)
        _check_range(parameter, value)
        return value
    if kind == "number":
        if isinstance(raw, bool) or not (isinstance(raw, (int, float)) or (isinstance(raw, str)
                                                                            and NUMBER_PATTERN.fullmatch(raw.strip()))):
            raise ValueError("give a number, e.g. 2.5.")
        value = float(raw)
        if not math.isfinite(value):
            raise ValueError("give a finite number.")
        _check_range(parameter, value)
        # A whole number stays whole (35, not 35.0), on the preview, the submission and the command line alike.
        return int(value) if value.is_integer() and abs(value) < 2 ** 53 else value
    if kind == "boolean":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in ("true", "on", "yes", "1"):
            return True
        if isinstance(raw, str) and raw.strip().lower() in ("false", "off", "no", "0", ""):
            return False
        raise ValueError("give yes or no.")
    if kind == "choice":
        if raw not in parameter.choices:
            raise ValueError(f"choose one of: {', '.join(parameter.choices)}.")
        return raw
    raise ValueError("give a file.")


def _check_range(parameter: Parameter, value: float) -> None:
    if parameter.min is not None and value < parameter.min:
        raise ValueError(f"at least {parameter.min:g}, please.")
    if parameter.max is not None and value > parameter.max:
        raise ValueError(f"at most {parameter.max:g}, please.")


# --- helpers ----------------------------------------------------------------------------------------------


def plain_text(text: str) -> bool:
    # No control characters at all: NUL truncates strings in C programs, line breaks start new commands in
    # anything that re-reads the value, and the rest only ever comes from pasted binary.
    return not any(ord(c) < 32 or ord(c) == 127 for c in text)


def _int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _relative_path(path: object) -> bool:
    return (isinstance(path, str) and path.strip() != "" and not path.startswith(("/", "\\"))
            and ".." not in path.replace("\\", "/").split("/"))

