"""Writing the audit history: `record_event` appends one hash-chained record (portal.models.AuditEvent).

Services call it inside the transaction that makes the change, so an action and its record commit or roll back
together, and as the last write of that transaction: on PostgreSQL it holds a lock that every other audited action
waits for until the transaction ends."""

# Conventions for callers:
#
# - `action` is "<object>.<verb>", lower case, the object as its `object_type`: "pool.resize", "job.terminate",
#   "job.retry_failed", "task.terminate", "task.delete", "submission.create" (a re-run too, with its parent in
#   `details`), "submission.retry_failed" (the failed tasks of an ended job, submitted again),
#   "job_template.version_create", "logs.download", "logs.zip_download", "user.role_change", "auth.login".
#   Add a new one to KNOWN_ACTIONS so the audit page offers it as a filter.
#   Pass `obj=` (a model instance) when there is one: the object fields and the team come from it.
# - Destructive actions (terminate, delete, retry over finished work, resize down, template changes) carry the
#   `reason` the person typed; the pages that offer them ask for one.
# - `changes` is {field: [before, after]} for what the action changed; `details` holds anything else worth
#   keeping (counts, ids, the filters of an export). Both go through portal.redact.sanitised: SAS queries, keys,
#   passwords and tokens are replaced before anything is hashed or stored.
# - Record doing, not viewing: opening a page is not an event; downloading logs or exporting the audit is.
# - The address ("from where") is the current request's, put aside by portal.audit.middleware; callers never
#   pass it. Outside a request (a worker, a shell) it is empty.

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from portal.audit.chain import GENESIS_HASH, chain_hash, row_fields
from portal.audit.middleware import current_ip
from portal.models import AuditEvent, Pool
from portal.redact import sanitised, sanitised_text

# Any fixed number: the key of the PostgreSQL advisory lock that puts appends in one line ("audit" in ASCII).
ADVISORY_LOCK_KEY = 0x6175646974
# Lengths of the model's text fields: values are cut to fit before hashing, so what is stored is what was hashed.
_LIMITS = {"actor_name": 150, "action": 64, "object_type": 40, "object_id": 200, "object_label": 300}

# What the list offers as filters; callers may record other actions and types, which are still shown.
KNOWN_ACTIONS = [
    "auth.login", "auth.login_failed", "auth.lockout", "auth.logout",
    "pool.create", "pool.resize", "pool.delete",
    "submission.create", "submission.retry_failed", "submission.approve", "submission.reject",
    "job.terminate", "job.retry_failed", "task.terminate", "task.delete",
    "logs.download", "logs.zip_download", "results.download", "results.zip_download",
    "job_template.create", "job_template.change", "job_template.delete", "job_template.version_create",
    "pool_template.create", "pool_template.change", "pool_template.delete",
    "batch_account.create", "batch_account.change",
    "vm_price.create", "vm_price.change", "vm_price.delete", "vm_price.import",
    "user.role_change", "user.team_change", "user.delete", "group.permission_change",
    "audit.export",
]
OBJECT_TYPES = ["job", "task", "submission", "pool", "job_template", "pool_template", "batch_account", "user", "group",
                "audit", "vm_price"]


def _clip(name: str, value: object) -> str:
    return sanitised_text(str(value or ""))[: _LIMITS[name]]


def describe(obj: Model) -> tuple[str, str, str, int | None]:
    """(object_type, object_id, object_label, team_id) of a model instance. Pools are known by their Batch id:
    a pool is created in Batch before the portal has a row for it, and keeps its id across re-syncs."""
    object_type = obj._meta.model_name or ""
    if object_type == "jobtemplate":
        object_type = "job_template"
    elif object_type == "pooltemplate":
        object_type = "pool_template"
    elif object_type == "jobtemplateversion":
        object_type = "job_template"
        return object_type, str(obj.template_id), str(obj), None  # type: ignore[attr-defined]  # a version
    object_id = obj.pool_id if isinstance(obj, Pool) else str(obj.pk)
    team_id = getattr(obj, "team_id", None)
    if object_type == "task":
        # A task belongs to its job's team: an Operator's actions on it are on their team's work.
        team_id = obj.job.team_id  # type: ignore[attr-defined]  # a Task
    # Jobs and submissions by their names, the Batch id beside: what the audit page and the export show.
    return object_type, object_id, getattr(obj, "name_and_id", None) or str(obj), team_id


def record_event(*, actor: User | AnonymousUser | None, action: str, obj: Model | None = None, object_type: str = "",
                 object_id: str = "", object_label: str = "", team_id: int | None = None, reason: str = "",
                 changes: dict | None = None, details: dict | None = None) -> None:
    """Append one event. `actor` is a user or None (the system); `obj` (a model instance) fills the object
    fields when given (explicit arguments win); `changes` maps field names to [before, after]. The request's
    address comes from the middleware, not from the caller."""
    if obj is not None:
        described = describe(obj)
        object_type = object_type or described[0]
        object_id = object_id or described[1]
        object_label = object_label or described[2]
        team_id = team_id if team_id is not None else described[3]
    actor_id = actor.pk if actor is not None and getattr(actor, "is_authenticated", False) else None
    actor_name = actor.get_username() if actor is not None and actor_id is not None else ""
    values = {
        "actor_id": actor_id,
        "actor_name": _clip("actor_name", actor_name),
        "action": _clip("action", action),
        "object_type": _clip("object_type", object_type),
        "object_id": _clip("object_id", object_id),
        "object_label": _clip("object_label", object_label),
        "team_id": team_id,
        "ip_address": current_ip(),
        "reason": sanitised_text(reason or "").strip(),
        "changes": sanitised(changes or {}),
        "details": sanitised(details or {}),
    }
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Two appends reading the same last hash would fork the chain. The lock is held until the caller's
            # transaction ends, and under READ COMMITTED (Django's default) the read below then sees the row
            # the previous holder committed.
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ADVISORY_LOCK_KEY])
        # SQLite needs no lock: settings open every transaction with BEGIN IMMEDIATE, which takes the database's
        # single write lock, so appends are already one at a time.
        prev_hash = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first() or GENESIS_HASH
        # Taken under the lock, so times never go backwards along the chain.
        at = timezone.now()
        digest = chain_hash(row_fields(at=at, **values), prev_hash)
        AuditEvent.objects.create(at=at, prev_hash=prev_hash, hash=digest, **values)


def field_changes(before: Model | None, after: Model, *,
                  exclude: tuple[str, ...] = ("created_at", "updated_at")) -> dict:
    """{field: [before, after]} for the concrete fields that differ between two instances of one model."""
    changes = {}
    for field in after._meta.concrete_fields:
        if field.primary_key or field.name in exclude:
            continue
        old = field.value_from_object(before) if before is not None else None
        new = field.value_from_object(after)
        if old != new:
            changes[field.name] = [old, new]
    return changes


def audit_export_record(*, user: User, filters: dict) -> None:
    """Audit data leaving the portal is an action: the export records itself, with the filters it used."""
    record_event(actor=user, action="audit.export", object_type="audit", details={"filters": filters})
