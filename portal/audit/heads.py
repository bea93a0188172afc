"""The audit chain's head, published outside the database and checked against it.

The chain (portal/audit/chain.py) finds a record edited, removed or moved, but not records cut from the end, nor a
whole chain rewritten by someone holding the key. So the newest record's id and hash are written, on a schedule,
as a blob of their own that is never replaced (`heads/<id>-<hash>.json`, created only if absent; in production the
container carries an immutability policy, so not even the portal's own credential can change or delete one).
`check_heads` then asks of every published head: does the database still hold that record, with that hash?"""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.utils import timezone

from batchsync.gateway.storage import BlobStore
from portal.models import AuditEvent

PREFIX = "heads/"


def head_path(event_id: int, digest: str) -> str:
    # Zero-padded, so name order is id order; the hash in the name lets a check read the listing alone.
    return f"{PREFIX}{event_id:012d}-{digest}.json"


def _parsed(path: str) -> tuple[int, str] | None:
    name = path.removeprefix(PREFIX).removesuffix(".json")
    number, _, digest = name.partition("-")
    if not number.isdigit() or len(digest) != 64:
        return None
    return int(number), digest


def publish_head(store: BlobStore) -> int | None:
    """Publish the newest record as a head; its id, or None when there is no record or it was published already."""
    newest = AuditEvent.objects.order_by("-id").values("id", "hash", "at").first()
    if newest is None:
        return None
    body = json.dumps({"id": newest["id"], "hash": newest["hash"], "at": newest["at"].isoformat(),
                       "published_at": timezone.now().isoformat()}, sort_keys=True).encode()
    written = store.put_once(store.containers.audit, head_path(newest["id"], newest["hash"]), body)
    return newest["id"] if written else None


@dataclass(frozen=True)
class HeadsVerdict:
    checked: int
    newest: dict | None = None
    problem: str = ""


def check_heads(store: BlobStore, *, batch: int = 1000) -> HeadsVerdict:
    """Every published head against the database, `batch` at a time (from the listing alone: the names hold id and
    hash); the first one the database no longer holds as published, if any."""
    checked, newest = 0, None
    pending: list[dict] = []
    for blob in [*store.iter_blobs(store.containers.audit, PREFIX), None]:
        if blob is not None:
            parsed = _parsed(blob.path)
            if parsed is None:
                return HeadsVerdict(checked=checked, newest=newest,
                                    problem=f"a blob that is not a head sits among them: {blob.path}")
            pending.append({"id": parsed[0], "hash": parsed[1], "at": blob.last_modified})
        if pending and (blob is None or len(pending) >= batch):
            problem = _check(pending)
            if problem:
                return HeadsVerdict(checked=checked, newest=newest, problem=problem)
            checked, newest, pending = checked + len(pending), pending[-1], []
    return HeadsVerdict(checked=checked, newest=newest)


def _check(heads: list[dict]) -> str:
    stored = dict(AuditEvent.objects.filter(id__in=[head["id"] for head in heads]).values_list("id", "hash"))
    for head in heads:
        found = stored.get(head["id"])
        when = f"{head['at']:%Y-%m-%d %H:%M:%S} UTC" if head["at"] else "at an unknown time"
        if found is None:
            return (f"the head published for record #{head['id']} ({when}) is not in the database: records were "
                    "removed from the end of the history, or the table was emptied.")
        if found != head["hash"]:
            return (f"record #{head['id']} has another hash than the one published for it ({when}): the history up "
                    "to it was rewritten.")
    return ""
