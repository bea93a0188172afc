"""How fresh the mirror of the Batch accounts is: pages say when they were last synced, and warn when that is old."""

from datetime import datetime, timedelta

from django.utils import timezone

from portal.models import BatchAccount

# A sync normally runs every few seconds; older than this and the page says it may be out of date.
STALE_AFTER = timedelta(minutes=2)


def accounts_freshness(account_ids: list[int]) -> list[tuple[str, datetime | None]]:
    """(name, when its last sync pass completed) of each of these accounts, by name: how fresh each one's mirror
    is, where a page over several accounts would otherwise show only the stalest."""
    return list(BatchAccount.objects.filter(pk__in=account_ids).order_by("name").values_list("name", "last_synced_at"))


def accounts_synced_at(account_ids: list[int]) -> datetime | None:
    """When the least recently synced of these accounts was synced: a page is only as fresh as that."""
    synced = list(BatchAccount.objects.filter(pk__in=account_ids).values_list("last_synced_at", flat=True))
    return None if not synced or None in synced else min(at for at in synced if at is not None)


def sync_is_stale(synced_at: datetime | None, now: datetime | None = None) -> bool:
    return synced_at is None or (now or timezone.now()) - synced_at > STALE_AFTER
