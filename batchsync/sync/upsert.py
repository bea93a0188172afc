"""The sync's one way of writing rows: insert, or update what the mirror holds unless it is newer (batchsync.sync.mirror
decides what to write; this writes it, the rule checked by the database as it writes)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import connection
from django.db.backends.postgresql.base import ServerBindingCursor  # type: ignore[attr-defined]  # not in the stubs
from django.db.backends.utils import CursorWrapper
from django.db.models import Field

from portal.models import Job, Node, Pool, Task

from .common import chunks

# The synced tables: each is written by `upsert_newer` the same way.
Row = TypeVar("Row", Pool, Node, Job, Task)


def upsert_newer(model: type[Row], key: tuple[str, str], rows: list[Row], update_fields: list[str],
                 compare: tuple[str, ...]) -> set[tuple]:
    """Insert each of `rows`, or update the stored row with its key (parent, Batch id) in `update_fields`, unless the
    stored row is newer, or as new with the same `compare` values (the rule of mirror's `_should_write`, checked by
    the database against the row it holds as it writes: no look-up first). Returns the keys, as (parent pk, id),
    written.

    The rows are the sync's own (built by batchsync.sync.rows, every column set), one per key."""
    fields = _insert_fields(model)
    head, tail = _upsert_sql(model, key, tuple(update_fields), compare, connection.vendor)
    adapters = _adapters(fields)
    written: set[tuple] = set()
    with _parameters_apart() as cursor:
        for part in chunks(rows, connection.ops.bulk_batch_size(fields, rows) or len(rows) or 1):
            values = [[getattr(row, name) if adapt is None else adapt(getattr(row, name)) for name, adapt in adapters]
                      for row in part]
            if connection.vendor == "postgresql":
                # One array per column (UNNEST, as Django's own bulk insert there): a few parameters to plan with,
                # not one per value.
                cursor.execute(head + tail, [list(column) for column in zip(*values, strict=True)])
            else:
                row_placeholder = f"({', '.join(['%s'] * len(fields))})"
                cursor.execute(head + ", ".join([row_placeholder] * len(part)) + tail,
                               [value for row in values for value in row])
            written.update(tuple(found) for found in cursor.fetchall())
    return written


def _parameters_apart() -> CursorWrapper:
    """A cursor for `upsert_newer`'s statement. On PostgreSQL it sends the parameters apart from the statement, in
    binary (its `%b`), rather than as literals written into it as Django's cursors do: quoting 30 arrays of values
    in Python, and PostgreSQL parsing them back, cost about a third of the upsert's time. Wrapped as Django wraps
    its own cursors, so errors are Django's and query logging sees the statement."""
    if connection.vendor != "postgresql":
        return connection.cursor()
    connection.ensure_connection()
    cursor = ServerBindingCursor(connection.connection)
    return connection.make_debug_cursor(cursor) if connection.queries_logged else connection.make_cursor(cursor)


@functools.cache
def _insert_fields(model: type[Row]) -> list[Field]:
    return [field for field in model._meta.concrete_fields if not field.primary_key]


def _adapters(fields: list[Field]) -> list[tuple[str, Callable[[Any], Any] | None]]:
    """Each field's attribute, and the database's own adaption of its values where they need one (datetimes, JSON).
    The sync's rows hold the Python values their columns take (batchsync.sync.rows builds every one), so the checks
    and conversions of Django's `get_db_prep_save`, about 50 µs a task row, would change nothing."""
    ops = connection.ops
    adapters: list[tuple[str, Callable[[Any], Any] | None]] = []
    for field in fields:
        kind = field.get_internal_type()
        if kind == "DateTimeField":
            adapters.append((field.attname, ops.adapt_datetimefield_value))
        elif kind == "JSONField":
            encoder = getattr(field, "encoder", None)
            adapters.append((field.attname, functools.partial(ops.adapt_json_value, encoder=encoder)))
        else:
            adapters.append((field.attname, None))
    return adapters


@functools.cache
def _upsert_sql(model: type[Row], key: tuple[str, str], update_fields: tuple[str, ...], compare: tuple[str, ...],
                vendor: str) -> tuple[str, str]:
    """`upsert_newer`'s statement (on SQLite, before and after its VALUES)."""
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    column = {field.name: quote(field.column) for field in _insert_fields(model)}
    same = "IS NOT DISTINCT FROM" if vendor == "postgresql" else "IS"
    new_time, old_time = f"excluded.{column['state_transition_time']}", f"{table}.{column['state_transition_time']}"
    # Never back in time: a stored row without a time takes anything; else only a time at least as new.
    rule = f"({old_time} IS NULL OR ({new_time} IS NOT NULL AND {new_time} >= {old_time}))"
    if compare:
        # At the same time, a live row whose `compare` values are the same is unchanged; a row marked gone revives.
        unchanged = [f"{new_time} {same} {old_time}", f"{table}.{column['gone_at']} IS NULL"]
        unchanged += [f"excluded.{column[name]} {same} {table}.{column[name]}" for name in compare]
        rule += f" AND NOT ({' AND '.join(unchanged)})"
    keys = ", ".join(column[name] for name in key)
    head = f"INSERT INTO {table} ({', '.join(column.values())}) "
    if vendor == "postgresql":
        # Without a type's length: a varchar(64)[] cast would cut longer values instead of refusing them.
        types = [(field.db_type(connection) or "").split("(")[0] for field in _insert_fields(model)]
        arrays = ", ".join(f"(%b)::{db_type}[]" for db_type in types)
        head += f"SELECT * FROM UNNEST({arrays})"
    else:
        head += "VALUES "
    tail = (f" ON CONFLICT ({keys}) DO UPDATE SET "
            f"{', '.join(f'{column[name]} = excluded.{column[name]}' for name in update_fields)} "
            f"WHERE {rule} RETURNING {keys}")
    return head, tail
