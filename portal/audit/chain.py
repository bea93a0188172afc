"""The audit history's hash chain: each row's `hash` is an HMAC-SHA256, keyed with the audit key, over its own fields
(`row_fields`, as canonical JSON) and the previous row's hash, so `verify` finds a row edited, removed or moved
behind the app's back, and a row added by anyone who can write the table but does not hold the key (the app's own
database role included: the key lives in the web and worker processes' environment, not in the database).

It cannot see rows cut from the end; comparing the head hash `verify` reports with one noted earlier does.

Rows written before the chain was keyed (plain sha256) still verify, but only as a prefix: once a keyed row
appears, every later row must be keyed, so a forger cannot append unkeyed rows after it."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.utils.crypto import salted_hmac

from portal.audit.middleware import normalised_ip
from portal.models import AuditEvent

GENESIS_HASH = "0" * 64

def row_fields(*, at: datetime, actor_id: int | None, actor_name: str | None, action: str, object_type: str | None,
               object_id: str | None, object_label: str | None, team_id: int | None, ip_address: str | None,
               reason: str | None, changes: Any, details: Any) -> dict:
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


def _same_numbers(value: Any) -> Any:
    """Whole floats as ints: PostgreSQL's jsonb gives 1e20 back as 100000000000000000000, which Python reads as an
    int, so the hash must not tell the two apart."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _same_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_same_numbers(item) for item in value]
    return value


def audit_key() -> bytes:
    """AUDIT_HMAC_KEY from the environment, or else one derived from SECRET_KEY (so `make dev` is keyed too)."""
    configured = getattr(settings, "AUDIT_HMAC_KEY", "")
    if configured:
        return configured.encode()
    return salted_hmac("portal.audit.chain", "audit key", algorithm="sha256").digest()


def _message(fields: dict, prev_hash: str) -> bytes:
    canonical = json.dumps(_same_numbers(fields), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return prev_hash.encode("ascii") + b"\n" + canonical.encode("utf-8")


def chain_hash(fields: dict, prev_hash: str, *, key: bytes | None = None) -> str:
    return hmac.new(audit_key() if key is None else key, _message(fields, prev_hash), hashlib.sha256).hexdigest()


def unkeyed_hash(fields: dict, prev_hash: str) -> str:
    """How rows were hashed before the chain was keyed: accepted only before the first keyed row."""
    return hashlib.sha256(_message(fields, prev_hash)).hexdigest()


def _stored_fields(event: AuditEvent | dict) -> tuple[dict, str]:
    get: Callable[[str], Any] = event.get if isinstance(event, dict) else lambda name: getattr(event, name)
    fields = row_fields(**{name: get(name) for name in ("at", "actor_id", "actor_name", "action", "object_type",
                                                         "object_id", "object_label", "team_id", "ip_address",
                                                         "reason", "changes", "details")})
    return fields, get("prev_hash")


def event_hash(event: AuditEvent | dict, *, key: bytes | None = None) -> str:
    """Recompute the (keyed) hash of a stored AuditEvent (or a dict of its fields) from its contents."""
    return chain_hash(*_stored_fields(event), key=key)


# --- verifying -----------------------------------------------------------------------------------------------

_STORED_FIELDS = ["id", "at", "actor_id", "actor_name", "action", "object_type", "object_id", "object_label",
                  "team_id", "ip_address", "reason", "changes", "details", "prev_hash", "hash"]


@dataclass(frozen=True)
class Verdict:
    """What `verify` found: `count` intact records from the start, the last one's hash (`head`), and the first
    broken record with what is wrong with it, if any."""

    count: int
    head: str
    broken: dict | None = None
    problem: str = ""
    unkeyed: int = 0  # records from the start hashed before the chain was keyed


def verify(*, chunk_size: int = 2000) -> Verdict:
    """Recompute every record's hash in id order and check that each names the one before it. Memory stays bounded
    by `chunk_size`, not by the table."""
    count, previous, broken, unkeyed, key = 0, None, None, 0, audit_key()
    rows = AuditEvent.objects.order_by("id").values(*_STORED_FIELDS).iterator(chunk_size=chunk_size)
    for row in rows:
        if row["prev_hash"] != (previous["hash"] if previous else GENESIS_HASH):
            broken = row
            break
        if event_hash(row, key=key) != row["hash"]:
            # Still a prefix written before the key (every row so far unkeyed) may be plain sha256.
            if unkeyed != count or unkeyed_hash(*_stored_fields(row)) != row["hash"]:
                broken = row
                break
            unkeyed += 1
        count, previous = count + 1, row
    # Closes the database cursor (a server-side one on PostgreSQL) before the explaining query below.
    rows.close()
    head = previous["hash"] if previous else GENESIS_HASH
    if broken is None:
        return Verdict(count=count, head=head, unkeyed=unkeyed)
    return Verdict(count=count, head=head, broken=broken, problem=_problem(broken, previous, keyed=unkeyed < count),
                   unkeyed=unkeyed)


def _problem(row: dict, previous: dict | None, *, keyed: bool) -> str:
    if row["prev_hash"] == (previous["hash"] if previous else GENESIS_HASH):
        if unkeyed_hash(*_stored_fields(row)) == row["hash"] and keyed:
            return ("forged: its hash is a plain sha256, not made with the portal's audit key, after records that "
                    "were; someone who can write the table, but does not hold the key, added it.")
        return ("edited or forged: its contents do not match its hash under the portal's audit key (a record "
                "changed, or one added by someone without the key).")
    if row["prev_hash"] == GENESIS_HASH:
        # A first record that claims the start breaks the chain only when edited (above): this one has a previous.
        assert previous is not None
        return (f"it claims to be the first record, but #{previous['id']} comes before it: records were "
                "inserted before it, or it was moved.")
    # Only on a break: one lookup through the unique index on hash.
    predecessor = AuditEvent.objects.filter(hash=row["prev_hash"]).values_list("id", flat=True).first()
    if predecessor is None:
        before = f"#{previous['id']}" if previous else "the start"
        return (f"the record it follows is missing: a record between {before} and it was removed, or the "
                "record before it was edited and its hash recomputed.")
    if predecessor > row["id"]:
        return f"reordered: it follows #{predecessor}, which now comes after it."
    return (f"it follows #{predecessor}, so the records after #{predecessor} and before it are not part of "
            "the chain: inserted, or reordered.")
