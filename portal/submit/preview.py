"""The submit preview: what a submission would create (how many tasks, on which pool, how much input), before
anything is written; the preview page shows it with its first tasks, and signs what it checked for the Submit."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from django.core import signing

from portal.models import Submission
from portal.submit.render import SHELL, expand_tasks, shell_script, task_count
from portal.submit.spec import TemplateSpec
from portal.submit.values import InputFile
from portal.units import human_bytes


class Prepared(Protocol):
    """What a preview reads of a checked submission (portal.submit.services.PreparedSubmission, which imports this
    module)."""

    @property
    def values(self) -> dict: ...
    @property
    def files(self) -> dict: ...
    @property
    def rows(self) -> list | None: ...
    @property
    def command_line(self) -> str | None: ...

PREVIEW_SALT = "portal.submit.preview"
PREVIEW_MAX_AGE = 24 * 3600
# The preview page shows this many of the tasks, each command line cut to this many characters.
PREVIEW_TASKS = 5
PREVIEW_COMMAND_CHARS = 2_000


@dataclass(frozen=True)
class Preview:
    """How many tasks a submission creates, where, and how much input it sends; `summary` says it in words."""

    task_count: int
    pool_label: str
    input_bytes: int
    input_files: int

    @property
    def summary(self) -> str:
        tasks = "1 task" if self.task_count == 1 else f"{self.task_count:,} tasks"
        text = f"creates {tasks} on {self.pool_label}"
        if self.input_files:
            text += f"; inputs {human_bytes(self.input_bytes)}"
        return text


def preview(spec: TemplateSpec, values: Mapping, files: Mapping[str, Sequence[InputFile]],
            rows: Sequence[Mapping] | None = None) -> Preview:
    """What these checked values would create."""
    items = [item for given in files.values() for item in given]
    return Preview(task_count=task_count(spec, values, files, rows), pool_label=spec.pool_label,
                   input_bytes=sum(item.size for item in items), input_files=len(items))


def sign_preview(payload: dict) -> str:
    """The values a preview checked, signed, so the Submit that follows carries exactly them."""
    return signing.dumps(payload, salt=PREVIEW_SALT, compress=True)


def read_preview(signed: str) -> dict:
    """The checked values the preview page showed; signing.BadSignature if anything in them was changed."""
    return signing.loads(signed, salt=PREVIEW_SALT, max_age=PREVIEW_MAX_AGE)


def first_tasks(spec: TemplateSpec, prepared: Prepared) -> Iterator[dict]:
    """The first PREVIEW_TASKS tasks of a prepared submission as the preview page lists them."""
    tasks = expand_tasks(spec, prepared.values, prepared.files, rows=prepared.rows,
                         command_line=prepared.command_line)
    for _, task in zip(range(PREVIEW_TASKS), tasks, strict=False):
        # The script, not Batch's `/bin/sh -c '…'` around it: quoted once more as a whole, every quote in it becomes
        # '"'"' and a value like 'Zoë' is hard to find. The script is exactly what the shell runs, each value one
        # quoted word as the person typed it; the wrapper is the same for every task and is said once on the page.
        script = shell_script(task.command_line)
        yield {"id": task.id, "name": task.display_name, "shell": "" if script is None else SHELL,
               "command_line": _cut(task.command_line if script is None else script),
               "files": [item.file_path for item in task.resource_files]}


def _cut(command: str) -> str:
    if len(command) > PREVIEW_COMMAND_CHARS:
        return f"{command[:PREVIEW_COMMAND_CHARS]}… ({len(command):,} characters in all)"
    return command


def shown_values(spec: TemplateSpec, prepared: Prepared, parent: Submission | None = None) -> list[dict]:
    """Each value as the preview shows it; for a re-run, whether it differs from the earlier submission's, and
    what that was."""
    shown = []
    for parameter in spec.parameters:
        if parameter.type in ("file", "files"):
            given = prepared.files.get(parameter.name, ())
            text = _files_words([item.name for item in given])
            before = None
            if parent is not None:
                earlier = [item["name"] for item in (parent.inputs or {}).get(parameter.name, [])]
                mine = [(item.blob or item.url) for item in given]
                theirs = [(item.get("blob") or item.get("url")) for item in
                          (parent.inputs or {}).get(parameter.name, [])]
                before = None if mine == theirs else _files_words(earlier)
            shown.append({"label": parameter.label, "value": text, "before": before})
        elif parameter.name in prepared.values:
            value = prepared.values[parameter.name]
            before = None
            if parent is not None and (parent.parameters or {}).get(parameter.name) != value:
                before = value_words((parent.parameters or {}).get(parameter.name, "–"))
            shown.append({"label": parameter.label, "value": value_words(value), "before": before})
    return shown


def value_words(value: object) -> str:
    """A value as a person reads it: yes/no for a boolean, long text cut."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value)
    return f"{text[:500]}… ({len(text):,} characters)" if len(text) > 500 else text


def _files_words(names: list[str]) -> str:
    if not names:
        return "none"
    more = f" and {len(names) - 10} more" if len(names) > 10 else ""
    return f"{len(names)} file{'s' if len(names) != 1 else ''}: {', '.join(names[:10])}{more}"

