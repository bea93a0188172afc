"""One row, with the rows its queryset selects along (select_related), by primary key, its SQL compiled once.

The job and task pages read their row on every request, and every viewer's page polls. Django compiles a query's SQL
each time it runs it: for a task with its job and account, about 0.55 ms of CPU, more than running the query and
building the objects. `CompiledGet(queryset).get(pk=…)` answers as `queryset.get(pk=…)` does (the object, or the
model's DoesNotExist), from SQL compiled once per thread, each thread holding its own database connection.

What it uses of Django's compiler (its select list, class info and converters) is what QuerySet's own iterator uses;
tests/portal/test_lookups.py compares the objects with `queryset.get` so an upgrade that changes them is caught."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators  # type: ignore[attr-defined]

M = TypeVar("M", bound=Model)

# The key the query is compiled with; it must be its only parameter.
_PROBE = -7_000_001


@dataclass(frozen=True)
class _Compiled:
    sql: str
    compiler: Any                # the SQLCompiler: its converters, bound to this thread's connection
    converters: dict[int, Any]
    init_list: list[str]         # the model's own columns, as Model.from_db takes them
    own_columns: slice
    populators: list[Any]        # the rows selected along, as ModelIterable fills them in


class CompiledGet(Generic[M]):
    def __init__(self, queryset: QuerySet[M]):
        self.queryset = queryset
        self.model = queryset.model
        self._local = threading.local()

    def get(self, *, pk: int | str) -> M:
        db = self.queryset.db
        compiled = getattr(self._local, db, None)
        if compiled is None or compiled.compiler.connection is not connections[db]:
            compiled = self._compile(db)
            setattr(self._local, db, compiled)
        with connections[db].cursor() as cursor:
            cursor.execute(compiled.sql, [pk])
            rows = cursor.fetchall()
        if not rows:
            raise self.model.DoesNotExist(  # type: ignore[attr-defined]
                f"{self.model._meta.object_name} matching query does not exist.")
        if compiled.converters:
            rows = list(compiled.compiler.apply_converters(rows, compiled.converters))
        row = rows[0]      # the primary key is unique
        obj = self.model.from_db(db, compiled.init_list, row[compiled.own_columns])
        for populator in compiled.populators:
            populator.populate(row, obj)
        return obj

    def _compile(self, db: str) -> _Compiled:
        # Without the model's ordering, as QuerySet.get has it: one row needs none.
        compiler = self.queryset.filter(pk=_PROBE).order_by().query.get_compiler(using=db)
        sql, params = compiler.as_sql()
        if list(params) != [_PROBE]:
            raise ImproperlyConfigured(f"CompiledGet takes a queryset without parameters of its own, not {params}")
        select, klass_info = compiler.select, compiler.klass_info
        own = klass_info["select_fields"]
        own_columns = slice(own[0], own[-1] + 1)
        return _Compiled(
            sql=sql, compiler=compiler,
            converters=compiler.get_converters([column for column, _, _ in select[:compiler.col_count]]),
            init_list=[column.target.attname for column, _, _ in select[own_columns]],
            own_columns=own_columns, populators=get_related_populators(klass_info, select, db))
