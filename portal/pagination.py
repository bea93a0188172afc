"""Keyset pagination: pages of a list in a fixed order, found from a cursor rather than OFFSET, and never counted.

Every long list of the portal pages through here (jobs, tasks, submissions, the audit history)."""

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import F, Model, Q, QuerySet
from django.db.models.functions import Coalesce

from portal.params import fits_row_id

PAGE_SIZE = 50


@dataclass(frozen=True)
class Sort:
    """One way to order a list: by a (possibly nullable) field with a unique tiebreak, or by the tiebreak."""

    key: str
    label: str
    field: str | None
    descending: bool = False

    @property
    def param(self) -> str:
        return f"-{self.key}" if self.descending else self.key


@dataclass
class Page:
    items: list
    next_cursor: str | None = None
    prev_cursor: str | None = None
    first: bool = True

    @property
    def has_next(self) -> bool:
        return self.next_cursor is not None

    @property
    def has_prev(self) -> bool:
        return self.prev_cursor is not None


class BadCursor(ValueError):
    pass


# Where a cursor points: (segment, sort value, tiebreak value).
Position = tuple[int, object, object]


def _encode_cursor(segment: int, value: object, tie: object) -> str:
    if isinstance(value, datetime):
        value = value.isoformat()
    raw = json.dumps([segment, value, tie], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, model: type[Model], sort: Sort, tiebreak: str) -> tuple[int, object, object]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        segment, value, tie = json.loads(raw)
        if segment not in (0, 1) or (segment == 1 and sort.field is None):
            raise BadCursor(cursor)
        if sort.field is not None and segment == 0:
            # Sort fields and tiebreaks are concrete fields, never relations.
            value = model._meta.get_field(sort.field).to_python(value)  # type: ignore[union-attr]
            if value is None:
                raise BadCursor(cursor)
        tie = model._meta.get_field(tiebreak).to_python(tie)  # type: ignore[union-attr]
        if not (fits_row_id(value) and fits_row_id(tie)):
            raise BadCursor(cursor)  # a hand-made number past any integer column
    except (ValueError, TypeError, ValidationError, binascii.Error) as exc:
        # JSONDecodeError and UnicodeDecodeError are ValueErrors; to_python raises ValidationError.
        raise BadCursor(cursor) from exc
    return segment, value, tie


def keyset_page(queryset: QuerySet[Any], *, sort: Sort, tiebreak: str, size: int = PAGE_SIZE,
                after: str | None = None, before: str | None = None, sort_index: bool = True) -> Page:
    """One page of `queryset` in `sort` order, after or before a cursor, without OFFSET or COUNT.

    A nullable sort field splits the order into two segments, rows with a value (ordered by value,
    then tiebreak) and rows without (ordered by tiebreak), both in the sort's direction. Each
    segment is one range scan of an index on (filter…, field, tiebreak), so a page deep into
    100,000 rows costs what the first page costs. A cursor holds (segment, value, tiebreak).

    `sort_index=False` says the filters match few rows: the order is then written so that no index
    can produce it, and the database reads the few rows from the filter's index and sorts them.
    Otherwise PostgreSQL may walk the whole sort index looking for them: it assumes the filter's
    rows are spread evenly along the sort, and running tasks, say, all sit at its far end."""
    model = queryset.model
    segments = [0] if sort.field is None else [0, 1]
    backwards = bool(before) and not after
    cursor = before if backwards else after
    position = None
    if cursor:
        try:
            position = _decode_cursor(cursor, model, sort, tiebreak)
        except BadCursor:
            # A stale or hand-edited link shows the first page rather than an error.
            position, backwards = None, False

    def segment_queryset(segment: int, reverse: bool, start: Position | None) -> QuerySet[Any]:
        descending = sort.descending != reverse
        if sort.field is None or segment == 1:
            qs = queryset if sort.field is None else queryset.filter(**{f"{sort.field}__isnull": True})
            if start is not None:
                qs = qs.filter(**{f"{tiebreak}__{'lt' if descending else 'gt'}": start[2]})
            return qs.order_by(f"-{tiebreak}" if descending else tiebreak)
        qs = queryset.filter(**{f"{sort.field}__isnull": False})
        if start is not None:
            _, value, tie = start
            # (field, tie) > (value, tie') written so the first condition bounds the index range
            # on every database; the OR only drops rows equal to the cursor's value.
            if descending:
                qs = qs.filter(Q(**{f"{sort.field}__lte": value}),
                               Q(**{f"{sort.field}__lt": value}) | Q(**{f"{tiebreak}__lt": tie}))
            else:
                qs = qs.filter(Q(**{f"{sort.field}__gte": value}),
                               Q(**{f"{sort.field}__gt": value}) | Q(**{f"{tiebreak}__gt": tie}))
        if sort_index:
            prefix = "-" if descending else ""
            return qs.order_by(f"{prefix}{sort.field}", f"{prefix}{tiebreak}")
        # COALESCE(x, x) sorts as x does (x is never null here) but matches no index.
        key = Coalesce(F(sort.field), F(sort.field))
        return qs.order_by(key.desc() if descending else key.asc(), f"-{tiebreak}" if descending else tiebreak)

    def fetch(reverse: bool, start: Position | None) -> tuple[list, bool]:
        order = list(reversed(segments)) if reverse else segments
        if start is not None:
            order = order[order.index(start[0]):]
        rows: list = []
        for segment in order:
            from_here = start if start is not None and segment == start[0] else None
            rows.extend(segment_queryset(segment, reverse, from_here)[: size + 1 - len(rows)])
            if len(rows) > size:
                return rows[:size], True
        return rows, False

    def position_of(row: Model) -> str:
        value = getattr(row, sort.field) if sort.field else None
        segment = 1 if sort.field and value is None else 0
        return _encode_cursor(segment, value, getattr(row, tiebreak))

    if backwards:
        rows, more_before = fetch(reverse=True, start=position)
        rows.reverse()
        if not more_before:
            # Back at the start: show a full first page, not the remainder of a short one.
            return keyset_page(queryset, sort=sort, tiebreak=tiebreak, size=size, sort_index=sort_index)
        return Page(rows, next_cursor=position_of(rows[-1]) if rows else None,
                    prev_cursor=position_of(rows[0]) if rows else None, first=False)
    rows, more_after = fetch(reverse=False, start=position)
    return Page(rows,
                next_cursor=position_of(rows[-1]) if more_after else None,
                # After a cursor something came before this page; on the first page nothing did.
                prev_cursor=position_of(rows[0]) if position is not None and rows else None,
                first=position is None)
