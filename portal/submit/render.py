"""A submission's values turned into the exact job and task specs sent to Batch: each value quoted as one shell
word, the command line run under /bin/sh, files downloaded into inputs/, outputs and logs uploaded when a task
ends. The same inputs always give the same tasks with the same ids."""

from __future__ import annotations

import shlex
import string
from collections.abc import Iterable, Iterator, Mapping, Sequence

from batchsync.gateway.specs import ImageSpec, JobSpec, OutputFileSpec, PoolSpec, ResourceFileSpec, TaskSpec
from portal.submit.spec import AUTO_POOL_ID_PREFIX_MAX, AUTO_POOL_ID_PREFIX_PATTERN, BATCH_ID_PATTERN, TemplateSpec
from portal.submit.values import InputFile

# Folder in the task's working directory that uploaded files are downloaded into, apart from the template's own.
INPUTS_DIR = "inputs"
SHELL = "/bin/sh"


def quote_value(value: object) -> str:
    """One value as a single shell word: the only way a value enters a command line."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, float):
        value = repr(value)
    return shlex.quote(str(value))


def render_script(command_line: str, words: Mapping[str, str]) -> str:
    """The command line template with each {placeholder} replaced by its already-quoted shell word(s)."""
    return _render(_parsed(command_line), words)


def _parsed(command_line: str) -> list[tuple[str, str | None]]:
    """The template's literal text and placeholder names, in order: parsed once for a whole expansion."""
    return [(literal, name) for literal, name, _, _ in string.Formatter().parse(command_line)]


def _render(parts: Sequence[tuple[str, str | None]], words: Mapping[str, str]) -> str:
    return "".join(literal if name is None else literal + words[name] for literal, name in parts)


def shell_command(script: str) -> str:
    """Batch runs a command line without a shell; this runs `script` under one, the script quoted as one word."""
    return f"{SHELL} -c {shlex.quote(script)}"


def shell_script(command_line: str) -> str | None:
    """The script a `shell_command` line runs, as the shell receives it (one layer of quoting, not two), or None for a
    command line shell_command did not make."""
    try:
        words = shlex.split(command_line)
    except ValueError:
        return None
    if len(words) != 3 or words[:2] != [SHELL, "-c"] or shell_command(words[2]) != command_line:
        return None
    return words[2]


def _words_for_values(spec: TemplateSpec, values: Mapping, files: Mapping[str, Sequence[InputFile]]) -> dict:
    words = {}
    for parameter in spec.parameters:
        if parameter.type in ("file", "files"):
            given = files.get(parameter.name, ())
            words[parameter.name] = " ".join(quote_value(f"{INPUTS_DIR}/{item.name}") for item in given)
        elif parameter.name not in values:
            words[parameter.name] = "''"
        elif parameter.type == "boolean" and parameter.flag:
            words[parameter.name] = parameter.flag if values[parameter.name] else ""
        else:
            words[parameter.name] = quote_value(values[parameter.name])
    return words


def _input_resource_files(items: Sequence[InputFile]) -> tuple[ResourceFileSpec, ...]:
    return tuple(ResourceFileSpec(http_url=item.url, file_path=f"{INPUTS_DIR}/{item.name}") for item in items)


def task_count(spec: TemplateSpec, values: Mapping, files: Mapping[str, Sequence[InputFile]],
               rows: Sequence[Mapping] | None = None) -> int:
    kind = spec.fan_out.kind
    if kind == "files":
        return len(files.get(spec.fan_out.parameter or "", ()))
    if kind == "csv":
        return len(rows or ())
    if kind == "range":
        return max(0, values.get(spec.fan_out.parameter, spec.fan_out.start - 1) - spec.fan_out.start + 1)
    return 1


def task_id(index: int) -> str:
    """The id of the index-th task (from 1): derived, never typed, the same every time the submission is expanded."""
    return f"t{index:05d}"


def task_index(identifier: str) -> int | None:
    """The index `task_id` derived `identifier` from (t00037 → 37); None for an id it cannot have made."""
    digits = identifier[1:] if identifier.startswith("t") else ""
    if not (digits.isascii() and digits.isdigit()) or task_id(int(digits)) != identifier:
        return None
    return int(digits) or None


def expand_tasks(spec: TemplateSpec, values: Mapping, files: Mapping[str, Sequence[InputFile]], *,
                 rows: Sequence[Mapping] | None = None, command_line: str | None = None,
                 output_container_url: str | None = None, logs_container_url: str | None = None,
                 job_id: str = "", start: int = 0, only: Sequence[int] | None = None) -> Iterator[TaskSpec]:
    """The task specs of a submission, in order, from the `start`-th (0-based); the same inputs give the same
    tasks with the same ids, so a resumed submission sends exactly what the first attempt would have.

    `only`: just the tasks with these indexes (from 1, ascending), with the ids and specs they have in the whole
    expansion, and `start` counts within them: how a retry of failed tasks sends those and no others."""
    template = command_line if command_line is not None else spec.command_line
    words = _words_for_values(spec, values, files)
    shared_files = list(spec.resource_files)
    fan = spec.fan_out
    for parameter in spec.parameters:
        if parameter.type in ("file", "files") and not (fan.kind == "files" and parameter.name == fan.parameter):
            shared_files += _input_resource_files(files.get(parameter.name, ()))
    outputs_base = []
    for output in spec.outputs:
        if output_container_url:
            outputs_base.append((output["pattern"], output["upload_condition"], output_container_url, "outputs"))
    if logs_container_url:
        # stdout and stderr sit one folder above the working directory; saved whatever the outcome.
        outputs_base.append(("../std*.txt", "taskcompletion", logs_container_url, "logs"))
    # Everything that is the same for every task is worked out once here, not once per task: on a 10,000-task
    # sweep the expansion runs alongside the requests that send it, on the same CPU.
    parts = _parsed(template)
    outputs = [(pattern, condition, url, folder, _output_name(pattern))
               for pattern, condition, url, folder in outputs_base]
    shared = tuple(shared_files)

    count = task_count(spec, values, files, rows)
    indexes: Iterable[int] = (range(start + 1, count + 1) if only is None
                              else (index for index in only[start:] if 1 <= index <= count))
    for index in indexes:
        item_words, item_files, display = {}, [], None
        # parse_spec gives every fan-out but "none" its parameter and placeholder, and a CSV one its rows.
        if fan.kind == "files":
            assert fan.parameter is not None and fan.placeholder is not None
            item = files[fan.parameter][index - 1]
            item_words[fan.placeholder] = quote_value(f"{INPUTS_DIR}/{item.name}")
            item_words[fan.parameter] = item_words[fan.placeholder]
            item_files = list(_input_resource_files([item]))
            display = item.name
        elif fan.kind == "csv":
            assert rows is not None
            row = rows[index - 1]
            item_words.update({f"{fan.placeholder}.{column}": quote_value(value) for column, value in row.items()})
            display = f"row {index}"
        elif fan.kind == "range":
            assert fan.placeholder is not None
            value = fan.start + index - 1
            item_words[fan.placeholder] = quote_value(value)
            display = f"{fan.placeholder} {value}"
        identifier = task_id(index)
        script = _render(parts, {**words, **item_words} if item_words else words)
        yield TaskSpec(
            id=identifier, command_line=shell_command(script), display_name=display,
            resource_files=shared + tuple(item_files) if item_files else shared,
            output_files=tuple(OutputFileSpec(file_pattern=pattern, container_url=url,
                                              path=_output_path(job_id, identifier, folder, name),
                                              upload_condition=condition)
                               for pattern, condition, url, folder, name in outputs),
            max_task_retry_count=None, max_wall_clock_seconds=spec.max_wall_clock_seconds,
            required_slots=spec.required_slots)


def output_path(job_id: str, task_id: str, folder: str, pattern: str) -> str | None:
    """Where an output rule uploads to: the folder `<job>/<task>/<folder>` for a pattern with wildcards (Batch keeps
    each match's path below the pattern's fixed part); for a pattern naming one file, Batch takes the path as the
    blob's whole name, so the file's own name is added to stay in that folder."""
    return _output_path(job_id, task_id, folder, _output_name(pattern))


def _output_name(pattern: str) -> str | None:
    """The file name a pattern naming one file uploads as; None for a pattern with wildcards."""
    if any(c in pattern for c in "*?["):
        return None
    return pattern.rstrip("/").rsplit("/", 1)[-1]


def _output_path(job_id: str, task_id: str, folder: str, name: str | None) -> str | None:
    if not job_id:
        return None
    return f"{job_id}/{task_id}/{folder}" if name is None else f"{job_id}/{task_id}/{folder}/{name}"


def missing_csv_columns(spec: TemplateSpec, rows: Sequence[Mapping], command_line: str | None = None) -> list[str]:
    """CSV columns the command line uses that the uploaded file does not have."""
    if spec.fan_out.kind != "csv" or not rows:
        return []
    template = command_line if command_line is not None else spec.command_line
    prefix = f"{spec.fan_out.placeholder}."
    used = {name[len(prefix):] for _, name, _, _ in string.Formatter().parse(template)
            if name and name.startswith(prefix)}
    return sorted(used - set(rows[0]))


def auto_pool_id_prefix(spec: TemplateSpec, job_id: str) -> str:
    """The id prefix of the pool a job gets to itself: the template's `id_prefix`, else the job id's first 20
    characters (`sub-` and 16 of its hex digits), so the pool's id starts as its job's does."""
    return (spec.auto_pool or {}).get("id_prefix") or job_id[:AUTO_POOL_ID_PREFIX_MAX]


def batch_id_problems(spec: TemplateSpec, *, job_id: str) -> list[str]:
    """The ids and prefixes a submission of `spec` would send that Batch refuses, each naming the field to fix.
    Asked when a template is saved (with a job id shaped as every submission's is) and at the preview; not by
    parse_spec, so that a version saved before a limit was checked still opens and says what is wrong."""
    problems = []
    if not BATCH_ID_PATTERN.fullmatch(job_id):
        problems.append(f"job id “{job_id}”: Batch allows 1 to 64 letters, digits, hyphens and underscores.")
    if spec.auto_pool:
        given = spec.auto_pool.get("id_prefix")
        field_name = "pool.auto_pool.id_prefix" if given else "pool.auto_pool (the id prefix made from the job id)"
        prefix = auto_pool_id_prefix(spec, job_id)
        if not isinstance(prefix, str):
            problems.append(f"{field_name}: give the auto pool's id prefix as text, 1 to {AUTO_POOL_ID_PREFIX_MAX} "
                            "letters, digits, hyphens and underscores.")
        elif not AUTO_POOL_ID_PREFIX_PATTERN.fullmatch(prefix):
            problems.append(f"{field_name}: the auto pool's id prefix “{prefix}” is {len(prefix)} characters; Batch "
                            f"allows 1 to {AUTO_POOL_ID_PREFIX_MAX} letters, digits, hyphens and underscores.")
    return problems


def job_spec(spec: TemplateSpec, *, job_id: str, display_name: str) -> JobSpec:
    """The job a submission creates: tasks are added after it, so it starts with onAllTasksComplete=noaction."""
    auto_pool = None
    if spec.auto_pool:
        auto, image, start_task = spec.auto_pool, spec.auto_pool["image"], spec.auto_pool.get("start_task") or {}
        auto_pool = PoolSpec(
            id=auto_pool_id_prefix(spec, job_id), vm_size=auto["vm_size"], target_dedicated_nodes=auto["node_count"],
            task_slots_per_node=auto.get("task_slots_per_node", 1),
            image=ImageSpec(publisher=image["publisher"], offer=image["offer"], sku=image["sku"],
                            version=image.get("version", "latest"), node_agent_sku_id=image["node_agent_sku_id"]),
            start_task_command_line=start_task.get("command_line"),
            start_task_resource_files=tuple(ResourceFileSpec(**item) for item in start_task.get("resource_files", ())))
    return JobSpec(
        id=job_id, pool_id=spec.pool_id, auto_pool=auto_pool, display_name=display_name[:1024],
        priority=spec.priority, max_task_retry_count=spec.max_task_retry_count,
        preparation_command_line=spec.preparation_command_line, environment=dict(spec.environment),
        on_all_tasks_complete="noaction")

