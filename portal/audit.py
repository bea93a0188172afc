"""The audit history: append-only, hash-chained records of what people did (portal.models.AuditEvent).

Services call `record_event` inside the transaction that makes the change, so an action and its record commit
or roll back together."""

from __future__ import annotations


def record_event(*, actor, action: str, obj=None, object_type: str = "", object_id: str = "",
                 object_label: str = "", team_id: int | None = None, reason: str = "",
                 changes: dict | None = None, details: dict | None = None) -> None:
    """Append one event. `actor` is a user or None (the system); `obj` (a model instance) fills the object
    fields when given; `changes` maps field names to [before, after]. The request's address comes from the
    middleware, not from the caller. Not yet writing: the chain is built in the audit issue's work."""
