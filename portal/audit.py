"""The audit history: append-only, hash-chained records of what people did (portal.models.AuditEvent).

Services call `record_event` inside the transaction that makes the change, so an action and its record commit
or roll back together. Call it as the last write of that transaction: on PostgreSQL it holds a lock that every
other audited action waits for until the transaction ends.

Conventions for callers:

- `action` is "<object>.<verb>", lower case, the object as its `object_type`: "pool.resize", "job.terminate",
  "job.retry_failed", "task.terminate", "task.delete", "submission.create" (a re-run too, with its parent in
  `details`), "job_template.version_create", "logs.download", "logs.zip_download", "user.role_change",
  "auth.login". Add a new one to KNOWN_ACTIONS so the audit page offers it as a filter.
  Pass `obj=` (a model instance) when there is one: the object fields and the team come from it.
- Destructive actions (terminate, delete, retry over finished work, resize down, template changes) carry the
  `reason` the person typed; the pages that offer them ask for one.
- `changes` is {field: [before, after]} for what the action changed; `details` holds anything else worth
  keeping (counts, ids, the filters of an export). Both go through `sanitised()`: SAS queries, keys, passwords
  and tokens are replaced before anything is hashed or stored.
- Record doing, not viewing: opening a page is not an event; downloading logs or exporting the audit is.
- The address ("from where") is the current request's, put aside by `AuditRequestMiddleware`; callers never
  pass it. Outside a request (a worker, a shell) it is empty.

The chain: each row's `hash` is sha256 over its own fields (`row_fields`, as canonical JSON) and the previous
row's hash, so `manage.py audit_verify` finds a row edited, removed or moved behind the app's back. It cannot
see rows cut from the end; comparing the head hash it prints with one noted earlier does."""

from __future__ import annotations

import contextvars
import hashlib
import ipaddress
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

GENESIS_HASH = "0" * 64
# Any fixed number: the key of the PostgreSQL advisory lock that puts appends in one line ("audit" in ASCII).
ADVISORY_LOCK_KEY = 0x6175646974
REDACTED = "[redacted]"

# What the list offers as filters; callers may record other actions and types, which are still shown.
KNOWN_ACTIONS = [
    "auth.login", "auth.login_failed", "auth.lockout", "auth.logout",
    "pool.create", "pool.resize", "pool.delete",
    "submission.create",
    "job.terminate", "job.retry_failed", "task.terminate", "task.delete",
    "logs.download", "logs.zip_download",
    "job_template.create", "job_template.change", "job_template.delete", "job_template.version_create",
    "pool_template.create", "pool_template.change", "pool_template.delete",
    "user.role_change", "user.team_change", "user.delete", "group.permission_change",
    "audit.export",
]
OBJECT_TYPES = ["job", "task", "submission", "pool", "job_template", "pool_template", "user", "group", "audit"]


VIEW_PERMISSION = "portal.view_auditevent"


def can_view(user) -> bool:
    """Who reads the whole history (the audit pages, addresses included): Operators and Admins."""
    return bool(user and user.is_authenticated and user.is_active and user.has_perm(VIEW_PERMISSION))


# --- where the request came from ---------------------------------------------------------------------------

@dataclass(frozen=True)
class RequestContext:
    ip: str | None
    request: object


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("portal_audit_request",
                                                                                default=None)


def client_ip(request) -> str | None:
    """The address the request came from. X-Forwarded-For is written by whoever sent the request, so it is
    believed only as far as TRUSTED_PROXY_COUNT proxies of ours appended to it: with one proxy, the last entry
    is the address that proxy saw; anything before it could be made up by the client."""
    trusted = int(getattr(settings, "TRUSTED_PROXY_COUNT", 0) or 0)
    candidate = request.META.get("REMOTE_ADDR")
    if trusted > 0:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
        if len(hops) >= trusted:
            candidate = hops[-trusted]
    return normalised_ip(candidate)


def normalised_ip(value) -> str | None:
    """One spelling per address (the database would normalise it otherwise, and the hash must match what is
    read back); None for anything that is not an address."""
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        return None


class AuditRequestMiddleware:
    """Puts the request (and its address) aside for `record_event` and the signal receivers below, which are
    called far from the view. Goes after AuthenticationMiddleware."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _current.set(RequestContext(ip=client_ip(request), request=request))
        try:
            return self.get_response(request)
        finally:
            _current.reset(token)


def current_ip() -> str | None:
    context = _current.get()
    return context.ip if context else None


def current_user():
    """The signed-in person of the current request, or None (a worker, a shell, an anonymous visitor)."""
    context = _current.get()
    user = getattr(context.request, "user", None) if context else None
    return user if user is not None and user.is_authenticated else None


# --- keeping secrets out -----------------------------------------------------------------------------------

# Names whose values are secrets wherever they appear: in `details`, in `changes`, nested.
_SECRET_NAME = re.compile(r"(?i)(password|passwd|secret|token|credential|connection_?string|"
                          r"(^|_)(key|sig|sas)$|account_?key|access_?key|api_?key)")
# Text that carries a credential: a SAS query (its signature), a storage connection string, an auth header.
_SAS_QUERY = re.compile(r"(?i)[?&]sig=")
_INLINE_SECRET = re.compile(r"(?i)(accountkey=|sharedaccesssignature=|\bsig=|^sharedkey |^bearer )")


def sanitised(value, *, _depth: int = 0):
    """`value` with secrets replaced: values under secret-looking names become "[redacted]"; a URL with a SAS
    query keeps its path and loses the query; any other text containing a signature or key becomes
    "[redacted]". Returns plain JSON types (tuples become lists, other objects their text)."""
    if _depth > 20:
        return REDACTED
    if isinstance(value, dict):
        return {str(k): (REDACTED if _SECRET_NAME.search(str(k)) and v not in (None, "")
                         else sanitised(v, _depth=_depth + 1)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [sanitised(item, _depth=_depth + 1) for item in items]
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        # NaN and infinities are not JSON; the database would refuse them.
        return value if math.isfinite(value) else str(value)
    return sanitised_text(value.isoformat() if isinstance(value, datetime) else str(value))


def sanitised_text(text: str) -> str:
    # PostgreSQL refuses NUL in text and JSON; it is never meaningful here.
    text = text.replace("\x00", "")
    if _SAS_QUERY.search(text):
        return _without_queries(text)
    if _INLINE_SECRET.search(text):
        return REDACTED
    return text


def _without_queries(text: str) -> str:
    """Every URL in `text` loses its query string (the SAS); text that is not a URL is redacted whole."""
    def strip(match: re.Match) -> str:
        url = match.group(0)
        parts = urlsplit(url)
        if not parts.query:
            return url
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")) + "?" + REDACTED

    stripped = re.sub(r"(?i)\bhttps?://[^\s\"'<>]+", strip, text)
    return REDACTED if _INLINE_SECRET.search(stripped) else stripped


# --- the chain -------------------------------------------------------------------------------------------

# Lengths of the model's text fields: values are cut to fit before hashing, so what is stored is what was hashed.
_LIMITS = {"actor_name": 150, "action": 64, "object_type": 40, "object_id": 200, "object_label": 300}


def row_fields(*, at: datetime, actor_id, actor_name, action, object_type, object_id, object_label, team_id,
               ip_address, reason, changes, details) -> dict:
    """The fields a row's hash covers, in the form they have when read back from the database."""
    return {
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor_id": actor_id,
        "actor_name": actor_name or "",
        "action": action,
        "object_type": object_type or "",
        "object_id": object_id or "",
        "object_label": object_label or "",
        "team_id": team_id,
        "ip_address": normalised_ip(ip_address),
        "reason": reason or "",
        "changes": changes or {},
        "details": details or {},
    }


def _same_numbers(value):
    """Whole floats as ints: PostgreSQL's jsonb gives 1e20 back as 100000000000000000000, which Python reads as an
    int, so the hash must not tell the two apart."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _same_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_same_numbers(item) for item in value]
    return value


def chain_hash(fields: dict, prev_hash: str) -> str:
    canonical = json.dumps(_same_numbers(fields), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + canonical.encode("utf-8")).hexdigest()


def event_hash(event) -> str:
    """Recompute the hash of a stored AuditEvent (or a dict of its fields) from its contents."""
    get = event.get if isinstance(event, dict) else lambda name: getattr(event, name)
    fields = row_fields(**{name: get(name) for name in ("at", "actor_id", "actor_name", "action", "object_type",
                                                         "object_id", "object_label", "team_id", "ip_address",
                                                         "reason", "changes", "details")})
    return chain_hash(fields, get("prev_hash"))


def _clip(name: str, value) -> str:
    return sanitised_text(str(value or ""))[: _LIMITS[name]]


def describe(obj) -> tuple[str, str, str, int | None]:
    """(object_type, object_id, object_label, team_id) of a model instance. Pools are known by their Batch id:
    a pool is created in Batch before the portal has a row for it, and keeps its id across re-syncs."""
    from portal.models import Pool

    object_type = obj._meta.model_name
    if object_type == "jobtemplate":
        object_type = "job_template"
    elif object_type == "pooltemplate":
        object_type = "pool_template"
    elif object_type == "jobtemplateversion":
        object_type = "job_template"
        return object_type, str(obj.template_id), str(obj), None
    object_id = obj.pool_id if isinstance(obj, Pool) else str(obj.pk)
    team_id = getattr(obj, "team_id", None)
    if object_type == "task":
        # A task belongs to its job's team: an Operator's actions on it are on their team's work.
        team_id = obj.job.team_id
    return object_type, object_id, str(obj), team_id


def record_event(*, actor, action: str, obj=None, object_type: str = "", object_id: str = "",
                 object_label: str = "", team_id: int | None = None, reason: str = "",
                 changes: dict | None = None, details: dict | None = None) -> None:
    """Append one event. `actor` is a user or None (the system); `obj` (a model instance) fills the object
    fields when given (explicit arguments win); `changes` maps field names to [before, after]. The request's
    address comes from the middleware, not from the caller."""
    from portal.models import AuditEvent

    if obj is not None:
        described = describe(obj)
        object_type = object_type or described[0]
        object_id = object_id or described[1]
        object_label = object_label or described[2]
        team_id = team_id if team_id is not None else described[3]
    actor_id = actor.pk if actor is not None and getattr(actor, "is_authenticated", False) else None
    actor_name = actor.get_username() if actor_id is not None else ""
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


# --- changes -----------------------------------------------------------------------------------------------

def field_changes(before, after, *, exclude=("created_at", "updated_at")) -> dict:
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


# --- events from Django's own code: sign-in and memberships ------------------------------------------------
#
# Conventions keep writes out of signals; these are the exception, because sign-in and membership changes happen
# inside Django (its auth views, the admin's forms), where no service of ours is called.

def connect_receivers() -> None:
    from django.apps import apps
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
    from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save

    from portal.models import Team

    User = get_user_model()
    user_logged_in.connect(_logged_in, dispatch_uid="portal.audit.logged_in")
    user_logged_out.connect(_logged_out, dispatch_uid="portal.audit.logged_out")
    user_login_failed.connect(_login_failed, dispatch_uid="portal.audit.login_failed")
    m2m_changed.connect(_groups_changed, sender=User.groups.through, dispatch_uid="portal.audit.groups")
    m2m_changed.connect(_teams_changed, sender=Team.members.through, dispatch_uid="portal.audit.teams")
    m2m_changed.connect(_group_permissions_changed, sender=Group.permissions.through,
                        dispatch_uid="portal.audit.group_permissions")
    post_delete.connect(_user_deleted, sender=User, dispatch_uid="portal.audit.user_deleted")
    pre_save.connect(_user_flags_before, sender=User, dispatch_uid="portal.audit.user_flags_before")
    post_save.connect(_user_flags_after, sender=User, dispatch_uid="portal.audit.user_flags_after")
    if apps.is_installed("axes"):
        from axes.signals import user_locked_out

        user_locked_out.connect(_locked_out, dispatch_uid="portal.audit.locked_out")


def _logged_in(sender, request, user, **kwargs):
    record_event(actor=user, action="auth.login", obj=user, object_type="user")


def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        record_event(actor=user, action="auth.logout", obj=user, object_type="user")


def _login_failed(sender, credentials, request=None, **kwargs):
    from django.contrib.auth import get_user_model

    User = get_user_model()
    # Only the name that was tried: Django has already masked the password, and it is not kept even masked.
    username = str(credentials.get(User.USERNAME_FIELD) or credentials.get("username") or "")[:150]
    known = User._default_manager.filter(**{User.USERNAME_FIELD: username}).values_list("pk", flat=True).first()
    record_event(actor=None, action="auth.login_failed", object_type="user",
                 object_id=str(known) if known else "", object_label=username,
                 details={"username": username, "known_user": known is not None})


def _locked_out(sender, request=None, username=None, ip_address=None, **kwargs):
    # Sent when django-axes locks a name at an address, and again for each attempt refused while it lasts.
    username = str(username or "")[:150]
    record_event(actor=None, action="auth.lockout", object_type="user", object_label=username,
                 details={"username": username})


# The flags that make an account an administrator, or stop it signing in at all, are role changes too.
_USER_FLAGS = ("is_superuser", "is_staff", "is_active")


def _user_flags_before(sender, instance, update_fields=None, raw=False, **kwargs):
    if raw or instance.pk is None or (update_fields is not None and not set(update_fields) & set(_USER_FLAGS)):
        return
    instance._audit_flags_before = (type(instance)._default_manager.filter(pk=instance.pk)
                                    .values(*_USER_FLAGS).first())


def _user_flags_after(sender, instance, created=False, raw=False, **kwargs):
    before = instance.__dict__.pop("_audit_flags_before", None)
    if raw or created or not before:
        return
    changes = {flag: [before[flag], getattr(instance, flag)] for flag in _USER_FLAGS
               if before[flag] != getattr(instance, flag)}
    if changes:
        record_event(actor=current_user(), action="user.role_change", obj=instance, object_type="user",
                     changes=changes)


def _user_deleted(sender, instance, **kwargs):
    record_event(actor=current_user(), action="user.delete", obj=instance, object_type="user")


def _group_permissions_changed(sender, instance, action, reverse, model, pk_set, **kwargs):
    """What a role may do changed (normally only by a migration; an administrator could in the admin)."""
    from django.contrib.auth.models import Group

    if reverse or not isinstance(instance, Group):
        return
    def names():
        return sorted(f"{app}.{code}" for app, code in
                      instance.permissions.values_list("content_type__app_label", "codename"))

    if action.startswith("pre_"):
        instance._audit_permissions_before = names()
    elif action.startswith("post_"):
        before, after = getattr(instance, "_audit_permissions_before", None), names()
        if before is not None and before != after:
            record_event(actor=current_user(), action="group.permission_change", object_type="group",
                         object_id=str(instance.pk), object_label=instance.name,
                         changes={"permissions": [before, after]})


def _groups_changed(sender, instance, action, reverse, model, pk_set, **kwargs):
    _membership_changed(instance=instance, action=action, reverse=reverse, pk_set=pk_set,
                        relation="groups", event="user.role_change",
                        names_of=lambda user: sorted(user.groups.values_list("name", flat=True)),
                        users_of=lambda group: group.user_set.all())


def _teams_changed(sender, instance, action, reverse, model, pk_set, **kwargs):
    # Team.members is the forward side here: `instance` is a Team unless `reverse` (user.teams.add(...)).
    _membership_changed(instance=instance, action=action, reverse=not reverse, pk_set=pk_set,
                        relation="teams", event="user.team_change",
                        names_of=lambda user: sorted(user.teams.values_list("name", flat=True)),
                        users_of=lambda team: team.members.all())


def _membership_changed(*, instance, action, reverse, pk_set, relation, event, names_of, users_of):
    """One event per user whose memberships changed, with the names before and after. `reverse` means
    `instance` is the group or team and `pk_set` holds user ids."""
    from django.contrib.auth import get_user_model

    if action not in ("pre_add", "pre_remove", "pre_clear", "post_add", "post_remove", "post_clear"):
        return
    stash = f"_audit_{relation}_before"
    if action.startswith("pre_"):
        # The state before is read now; after a clear, the post_ signal no longer says who was affected.
        if not reverse:
            users = [instance]
        elif pk_set is None:
            users = list(users_of(instance))
        else:
            users = list(get_user_model()._default_manager.filter(pk__in=pk_set))
        setattr(instance, stash, {user.pk: names_of(user) for user in users})
        return
    befores = getattr(instance, stash, {})
    affected = [instance] if not reverse else list(get_user_model()._default_manager.filter(pk__in=befores))
    actor = current_user()
    for user in affected:
        _record_membership(actor, user, event, relation, befores.get(user.pk), names_of(user))


def _record_membership(actor, user, event, relation, before, after) -> None:
    if before is None or before == after:
        return
    record_event(actor=actor, action=event, obj=user, object_type="user", changes={relation: [before, after]})
