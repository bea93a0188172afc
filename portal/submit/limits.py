"""What Batch would refuse in a submission's tasks, found at the preview instead of after Submit.

Batch refuses a task whose command line is longer than it takes, or one too large to send on its own (a request of
tasks must stay under 1 MB), with a vague "invalid property" long after the person pressed Submit. The tasks of a
submission differ only by their fan-out item (a file name, a CSV row, a number), so the largest of them is the
task of the longest item: checking the first task and that one checks them all, at the cost of two."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence

from batchsync.gateway.specs import TaskSpec
from portal.submit.render import expand_tasks, task_count
from portal.submit.spec import TemplateSpec
from portal.submit.values import InputFile
from portal.units import human_bytes

# Batch's longest command line, as localbatch enforces it (localbatch/validate.py) and Batch answers beyond it with
# 400 InvalidPropertyValue naming commandLine.
COMMAND_LINE_MAX_CHARS = 8192
# A request adding tasks must be under 1 MB; a single task larger than that can never be added. The margin leaves
# room for the JSON around it.
TASK_MAX_BYTES = 1_000_000 - 10_000
# Resource file URLs are signed when the submission is sent; their query string (a SAS) is about this long.
SAS_ALLOWANCE_CHARS = 200


def task_limit_problems(spec: TemplateSpec, values: Mapping, files: Mapping[str, Sequence[InputFile]], *,
                        rows: Sequence[Mapping] | None = None, command_line: str | None = None) -> dict[str, str]:
    """Field name (a parameter, or "command_line") → what Batch would refuse about it, in plain words."""
    count = task_count(spec, values, files, rows)
    problems: dict[str, str] = {}
    for index in sorted({1, _largest_item(spec, files, rows, count)}):
        if not 1 <= index <= count:
            continue
        task = next(expand_tasks(spec, values, files, rows=rows, command_line=command_line, start=index - 1), None)
        if task is None:
            continue
        field = _field_of_the_item(spec, values, files)
        length = len(task.command_line)
        if length > COMMAND_LINE_MAX_CHARS:
            problems.setdefault(field, (
                f"with these values task {task.id}'s command line is {length:,} characters; Batch takes at most "
                f"{COMMAND_LINE_MAX_CHARS:,}. Use shorter values, or pass long text in a file."))
        size = _sent_bytes(task)
        if size > TASK_MAX_BYTES:
            problems.setdefault(field, (
                f"with these values task {task.id} would be about {human_bytes(size)} when sent; Batch takes at most "
                f"{human_bytes(TASK_MAX_BYTES)} per task. Send fewer files to each task."))
    return problems


def _largest_item(spec: TemplateSpec, files: Mapping[str, Sequence[InputFile]], rows: Sequence[Mapping] | None,
                  count: int) -> int:
    """The index (from 1) of the task whose own item adds the most to its command line and files."""
    kind = spec.fan_out.kind
    if kind == "files":
        items = files.get(spec.fan_out.parameter or "", ())
        return 1 + max(range(len(items)), key=lambda i: len(items[i].name), default=0)
    if kind == "csv" and rows:
        return 1 + max(range(len(rows)), key=lambda i: sum(len(str(value)) for value in rows[i].values()))
    return count  # a range: the last number is the longest; no fan-out: the one task


def _field_of_the_item(spec: TemplateSpec, values: Mapping, files: Mapping[str, Sequence[InputFile]]) -> str:
    """Where the person fixes it: the longest value they typed, else the command line."""
    typed = {name: str(value) for name, value in values.items() if not isinstance(value, (list, tuple))}
    if typed:
        return max(typed, key=lambda name: len(typed[name]))
    return spec.fan_out.parameter or "command_line"


def _sent_bytes(task: TaskSpec) -> int:
    body = json.dumps(dataclasses.asdict(task), ensure_ascii=False, default=str).encode()
    return len(body) + SAS_ALLOWANCE_CHARS * (len(task.resource_files) + len(task.output_files))
