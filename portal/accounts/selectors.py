"""Which Batch accounts a page covers, and how fresh their mirror is.

One rule for "which accounts are there, and are there several" (`account_scope`): lists, the dashboard, the failure
page and the pool list ask it, filter with `?account=<name>`, and name the account on each row only when there are
several. Pages say when the mirror was last synced, and warn when that is old."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Q
from django.utils import timezone

from portal import access
from portal.models import BatchAccount, Pool
from portal.pages import shared_value

# A sync normally runs every few seconds; older than this and the page says it may be out of date.
STALE_AFTER = timedelta(minutes=2)

# Between an account's name and a pool id in a pool filter's value (`prod/demo-pool`): Batch pool ids hold only
# letters, digits, hyphens and underscores, and account names are slugs, so the first "/" splits them.
POOL_SEPARATOR = "/"


@dataclass(frozen=True)
class AccountScope:
    """The accounts a page covers for one person: every account they read that has something to show, and the one
    `?account=` chose, if any."""

    accounts: tuple[BatchAccount, ...]
    chosen: BatchAccount | None = None

    @property
    def several(self) -> bool:
        """Whether rows must name their account (and the page offers the account filter)."""
        return len(self.accounts) > 1

    @property
    def ids(self) -> list[int]:
        """The accounts the page's rows come from: the chosen one, or all."""
        return [self.chosen.pk] if self.chosen else [account.pk for account in self.accounts]

    @property
    def param(self) -> str:
        return self.chosen.name if self.chosen else ""

    def named(self, name: str) -> BatchAccount | None:
        return next((account for account in self.accounts if account.name == name), None)


def shown_accounts(user: User | AnonymousUser) -> tuple[BatchAccount, ...]:
    """The accounts `user` reads that have something to show, by name: enabled ones, and disabled ones synced at
    least once (their jobs and pools stay as history). A disabled account that never synced has no rows anywhere,
    so it neither adds a filter choice nor makes the pages name accounts."""
    # One query: the account table is tiny, and access decides per account (access.visible_account_ids would be a
    # second query for the same rows).
    # Every page asks: the rows are read once per PAGE_SHARED_SECONDS for everyone, and access decides per person.
    rows = shared_value("shown-accounts", lambda: list(
        BatchAccount.objects.filter(Q(enabled=True) | Q(last_synced_at__isnull=False)).order_by("name")))
    return tuple(account for account in rows if access.user_can_view_account(user=user, account_id=account.pk))


def account_scope(*, user: User | AnonymousUser, params: Mapping[str, str] | None = None) -> AccountScope:
    """The accounts a page covers; `params["account"]` (an account's name) narrows it to one. A name that is not an
    account the person reads narrows nothing, as any unknown filter value does."""
    accounts = shown_accounts(user)
    name = (params or {}).get("account", "")
    chosen = next((account for account in accounts if account.name == name), None) if name else None
    return AccountScope(accounts=accounts, chosen=chosen)


def pool_param_value(*, account_name: str, pool_id: str, several: bool) -> str:
    """A pool filter's value: the pool id alone with one account; `account/pool` with several, so the same pool id
    in two accounts is two choices."""
    return f"{account_name}{POOL_SEPARATOR}{pool_id}" if several else pool_id


def split_pool_param(text: str) -> tuple[str, str]:
    """(account name or "", pool id) from a pool filter's value; a bare pool id matches that pool in any account."""
    text = text.strip()[:200]
    account_name, sep, pool_id = text.partition(POOL_SEPARATOR)
    return (account_name, pool_id[:64]) if sep else ("", text[:64])


def filtered_account_ids(*, user: User | AnonymousUser, account: str = "", pool_account: str = "") -> list[int]:
    """The accounts a filtered list reads: those `user` reads (account_scope), narrowed to
    `account` and to the account of the chosen pool. Two that disagree select nothing."""
    scope = account_scope(user=user, params={"account": account})
    ids = scope.ids
    if pool_account:
        named = scope.named(pool_account)
        ids = [pk for pk in ids if named is not None and pk == named.pk]
    return ids


def pool_choices(scope: AccountScope) -> list[tuple[str, str]]:
    """(value, label) of each pool a list can be filtered by; with several accounts the same pool id in two of them
    is two choices, each naming its account."""
    rows = (Pool.objects.filter(account_id__in=[account.pk for account in scope.accounts])
            .values_list("account__name", "pool_id").distinct().order_by("pool_id", "account__name"))
    return [(pool_param_value(account_name=name, pool_id=pool_id, several=scope.several),
             f"{pool_id} ({name})" if scope.several else pool_id) for name, pool_id in rows]


def accounts_freshness(account_ids: list[int]) -> list[tuple[str, datetime | None]]:
    """(name, when its last sync pass completed) of each of these accounts that is synced, by name: how fresh each
    one's mirror is, where a page over several accounts would otherwise show only the stalest."""
    return freshness_of(BatchAccount.objects.filter(pk__in=account_ids))


def freshness_of(accounts: Iterable[BatchAccount]) -> list[tuple[str, datetime | None]]:
    """accounts_freshness of account rows already read."""
    return sorted((account.name, account.last_synced_at) for account in accounts if account.enabled)


def accounts_synced_at(account_ids: list[int]) -> datetime | None:
    """When the least recently synced of these accounts was synced: a page is only as fresh as that."""
    return synced_at_of(BatchAccount.objects.filter(pk__in=account_ids, enabled=True).only("enabled", "last_synced_at"))


def synced_at_of(accounts: Iterable[BatchAccount]) -> datetime | None:
    """accounts_synced_at of account rows already read. A disabled account is not synced on purpose, so its age says
    nothing about the page."""
    synced = [account.last_synced_at for account in accounts if account.enabled]
    return None if not synced or None in synced else min(at for at in synced if at is not None)


def sync_is_stale(synced_at: datetime | None, now: datetime | None = None) -> bool:
    return synced_at is None or (now or timezone.now()) - synced_at > STALE_AFTER
