"""Which Batch accounts the portal fronts, and a gateway for each: signed with a key from the environment, or with
Microsoft Entra ID (nothing secret in the database either way)."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from portal.models import BatchAccount

from .gateway import BatchGateway, BlobStore, Containers, RequestBudget, budget_for, entra_credential

DEFAULT_ACCOUNT_NAME = "default"


def synced_accounts() -> list[int]:
    """Ids of the accounts the sync passes over: the enabled ones (the configured one is created if new)."""
    default_account()
    return list(BatchAccount.objects.filter(enabled=True).order_by("pk").values_list("pk", flat=True))


def default_account() -> BatchAccount:
    """The row of the account configured in settings (BATCH_ACCOUNT_URL/NAME), created on first use.

    Settings stay the source of truth: if they changed since the row was written, the row follows."""
    wanted = {"account_url": settings.BATCH_ACCOUNT_URL, "account_name": settings.BATCH_ACCOUNT_NAME,
              "auth": settings.BATCH_AUTH, "managed_identity_client_id": settings.BATCH_MANAGED_IDENTITY_CLIENT_ID,
              "is_default": True}
    account, created = BatchAccount.objects.get_or_create(name=DEFAULT_ACCOUNT_NAME, defaults=wanted)
    if not created and any(getattr(account, field) != value for field, value in wanted.items()):
        for field, value in wanted.items():
            setattr(account, field, value)
        account.save(update_fields=list(wanted))
    return account


def runs_on(chosen: BatchAccount | None) -> BatchAccount:
    """The account a job template or pool template (its `account`, "runs on") sends work to: the one it names, or
    the default account when it names none (templates written before there were several)."""
    return chosen if chosen is not None else default_account()


class AccountNotConfigured(ImproperlyConfigured):
    """This process lacks what it needs to reach an account (its key's environment variable, say). Names the
    account and the missing setting, never a value: pages show the message as it is."""

    def __init__(self, account: BatchAccount, missing: str) -> None:
        self.account_name = account.name
        self.missing = missing
        super().__init__(f"Batch account {account.name!r} cannot be reached from this process: the environment "
                         f"variable {missing} is not set. An administrator sets it where the portal runs (web and "
                         f"workers) and restarts them.")


def account_key(account: BatchAccount) -> str:
    """The account's shared key, from the environment variable the row names.

    The default account falls back to settings.BATCH_ACCOUNT_KEY (which holds localbatch's public
    development key when nothing is set)."""
    key = os.environ.get(account.key_env_var, "")
    if not key and account.is_default:
        key = settings.BATCH_ACCOUNT_KEY
    if not key:
        raise AccountNotConfigured(account, account.key_env_var)
    return key


def request_budget(account: BatchAccount) -> RequestBudget:
    """The account's request budget, shared through the portal's Redis by every worker process (each process keeps
    its own while Redis does not answer)."""
    return budget_for(account.account_url, settings.BATCH_REQUESTS_PER_SECOND, redis_url=settings.REDIS_URL,
                      key_prefix=settings.REDIS_KEY_PREFIX)


def gateway_for(account: BatchAccount, *, budgeted: bool = False, connections: int | None = None) -> BatchGateway:
    """A gateway to the account; the caller closes it (it is a context manager). `budgeted`: its requests take
    tokens from the account's request budget, shared by every worker process (the sync's do; a person's action is
    not held up); `connections`: how many requests it may have open at once."""
    budget = request_budget(account) if budgeted else None
    ca_bundle = settings.BATCH_CA_BUNDLE or None
    if account.auth == BatchAccount.Auth.ENTRA_ID:
        return BatchGateway(account.account_url, account.account_name,
                            credential=entra_credential(account.managed_identity_client_id), ca_bundle=ca_bundle,
                            budget=budget, connections=connections)
    return BatchGateway(account.account_url, account.account_name, account_key(account), ca_bundle=ca_bundle,
                        budget=budget, connections=connections)


def blob_store() -> BlobStore:
    """The portal's storage account (Azurite by default); the caller closes it (it is a context manager). With
    AZURE_STORAGE_ACCOUNT_URL set, reached with Entra ID (and every SAS a user-delegation SAS), else with the key in
    AZURE_STORAGE_CONNECTION_STRING."""
    containers = Containers(inputs=settings.STORAGE_INPUTS_CONTAINER, logs=settings.STORAGE_LOGS_CONTAINER,
                            outputs=settings.STORAGE_OUTPUTS_CONTAINER, audit=settings.STORAGE_AUDIT_CONTAINER)
    if settings.AZURE_STORAGE_ACCOUNT_URL:
        return BlobStore(containers=containers, account_url=settings.AZURE_STORAGE_ACCOUNT_URL,
                         credential=entra_credential(settings.AZURE_STORAGE_MANAGED_IDENTITY_CLIENT_ID),
                         ca_bundle=settings.AZURE_STORAGE_CA_BUNDLE or None)
    return BlobStore(settings.AZURE_STORAGE_CONNECTION_STRING, containers)
