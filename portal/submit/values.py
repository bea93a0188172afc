"""A person's values checked against a template's parameters: each value typed, each uploaded file's name, kind and
size, and the rows of a CSV the tasks fan out over. Raises ParameterErrors with one plain message per parameter."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from portal.submit.spec import (
    DEFAULT_MAX_LENGTH,
    MAX_TASKS,
    NAME_PATTERN,
    Parameter,
    TemplateSpec,
    clean_value,
    plain_text,
)
from portal.units import human_bytes

MAX_CSV_ROWS = MAX_TASKS
# A file name as it lands in the task's working directory: no folders, no leading dot or dash (an option to
# the program), nothing the shell or Batch treats specially even before quoting.
FILE_NAME_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._+ -]{0,199}\Z")
FILE_NAME_RULE = ("Use a plain file name: letters, digits, spaces, dots, hyphens, underscores and plus signs, "
                  "starting with a letter or digit, at most 200 characters, no folders.")


class ParameterErrors(ValueError):
    """Values a person gave do not fit the template; `errors` maps each parameter name (or "__all__") to words."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class InputFile:
    """A file a person uploaded for a `file` or `files` parameter. `url` is where Batch downloads it from (a blob
    URL with a read SAS, or any https URL); `content` is needed only for a CSV that the tasks fan out over.
    `blob` is its path in the inputs container when it was uploaded through the portal: that, not a signed URL, is
    what a submission keeps."""
    name: str
    url: str
    size: int = 0
    content: bytes | None = None
    blob: str | None = None
    snapshot: str | None = None        # the blob's snapshot taken at submission: what the tasks read


def clean_file(parameter: Parameter, item: InputFile) -> InputFile:
    if not isinstance(item, InputFile):
        raise ValueError("give an uploaded file.")
    if not FILE_NAME_PATTERN.fullmatch(item.name) or item.name.endswith((" ", ".")):
        raise ValueError(f"“{_shown(item.name)}” is not a plain file name. {FILE_NAME_RULE}")
    if parameter.extensions and not item.name.lower().endswith(parameter.extensions):
        raise ValueError(f"“{item.name}” is not one of the accepted kinds of file ({', '.join(parameter.extensions)}).")
    if not isinstance(item.size, int) or item.size < 0 or item.size > parameter.max_file_bytes:
        raise ValueError(f"“{item.name}” is larger than {human_bytes(parameter.max_file_bytes)}, the limit for this "
                         "template.")
    if not item.url.startswith(("https://", "http://")) or any(c in item.url for c in " \n\r\x00"):
        raise ValueError(f"“{item.name}” has no usable download address; upload it again.")
    return item


def clean_values(spec: TemplateSpec, values: Mapping, files: Mapping[str, Sequence[InputFile]] | None = None
                 ) -> tuple[dict, dict[str, tuple[InputFile, ...]]]:
    """Every parameter's value checked and typed (defaults filled in), and the uploaded files per parameter.

    Raises ParameterErrors with one plain message per parameter at fault; values for names the template does not
    have are refused too (a tampered or outdated form)."""
    files = files or {}
    errors: dict[str, str] = {}
    by_name = {p.name: p for p in spec.parameters}
    for name in list(values) + list(files):
        if name not in by_name:
            errors[str(name)[:64]] = "this template has no such parameter (the form may be out of date; reload it)."
    cleaned: dict = {}
    cleaned_files: dict[str, tuple[InputFile, ...]] = {}
    for parameter in spec.parameters:
        if parameter.type in ("file", "files"):
            given = tuple(files.get(parameter.name) or ())
            if parameter.name in values:
                errors[parameter.name] = "upload the file rather than typing its name."
                continue
            if not given:
                if parameter.required:
                    errors[parameter.name] = ("upload a file." if parameter.type == "file"
                                              else "upload one or more files.")
                continue
            if parameter.type == "file" and len(given) > 1:
                errors[parameter.name] = "upload just one file."
                continue
            if len(given) > parameter.max_files:
                errors[parameter.name] = f"at most {parameter.max_files} files, please (you gave {len(given)})."
                continue
            try:
                given = tuple(clean_file(parameter, item) for item in given)
            except ValueError as exc:
                errors[parameter.name] = str(exc)
                continue
            names = [item.name.lower() for item in given]
            if len(set(names)) != len(names):
                errors[parameter.name] = "two files have the same name; rename one."
                continue
            cleaned_files[parameter.name] = given
            continue
        raw = values.get(parameter.name)
        if raw is None or (isinstance(raw, str) and raw == "" and parameter.type not in ("string", "boolean")):
            if parameter.default is not None:
                raw = parameter.default
            elif parameter.required:
                errors[parameter.name] = "this is required."
                continue
            elif parameter.type == "boolean":
                raw = False
            else:
                continue
        if parameter.required and parameter.type == "string" and raw == "":
            errors[parameter.name] = "this is required."
            continue
        try:
            cleaned[parameter.name] = clean_value(parameter, raw)
        except ValueError as exc:
            errors[parameter.name] = str(exc)
    if errors:
        raise ParameterErrors(errors)
    return cleaned, cleaned_files


def parse_csv(parameter_name: str, content: bytes, *, max_value_length: int = DEFAULT_MAX_LENGTH) -> list[dict]:
    """The rows of an uploaded CSV as dicts keyed by its header; ParameterErrors for what a person must fix."""
    def refuse(message: str) -> NoReturn:
        raise ParameterErrors({parameter_name: message})

    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        refuse("the CSV file is not UTF-8 text; save it as “CSV UTF-8”.")
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if not header:
            refuse("the CSV file is empty; its first line must name the columns.")
        columns = [column.strip() for column in header]
        for column in columns:
            if not NAME_PATTERN.fullmatch(column):
                refuse(f"the column name “{_shown(column)}” is not usable: use letters, digits and underscores, "
                       "not starting with a digit.")
        if len(set(columns)) != len(columns):
            refuse("two columns have the same name.")
        rows = []
        for line, record in enumerate(reader, start=2):
            if not any(cell.strip() for cell in record):
                continue
            if len(record) != len(columns):
                refuse(f"line {line} has {len(record)} values but the header names {len(columns)} columns.")
            for cell in record:
                if len(cell) > max_value_length or not plain_text(cell):
                    refuse(f"line {line}: values must be single lines of at most {max_value_length:,} characters.")
            rows.append(dict(zip(columns, record, strict=True)))
            if len(rows) > MAX_CSV_ROWS:
                refuse(f"the CSV file has more than {MAX_CSV_ROWS:,} rows; split it.")
    except csv.Error as exc:
        refuse(f"the CSV file could not be read ({exc}).")
    if not rows:
        refuse("the CSV file has a header but no rows.")
    return rows


def _shown(text: str) -> str:
    """A name as it may be shown back: control characters made visible, and not too long."""
    return "".join(c if 32 <= ord(c) != 127 else "?" for c in text)[:80]
