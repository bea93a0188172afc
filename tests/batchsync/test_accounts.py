"""batchsync.accounts: the configured account's row, and gateways whose keys come from the environment."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from batchsync.accounts import AccountNotConfigured, default_account, gateway_for, synced_accounts
from batchsync.tasks import sync_account_task
from portal.models import BatchAccount, Pool
from tests.localbatch.helpers import make_pool

pytestmark = pytest.mark.django_db


def test_default_account_is_created_once_from_settings_and_follows_them(settings):
    settings.BATCH_ACCOUNT_URL, settings.BATCH_ACCOUNT_NAME = "http://127.0.0.1:8089", "localbatch"
    first = default_account()
    assert default_account().pk == first.pk
    assert (first.name, first.is_default, first.account_name) == ("default", True, "localbatch")

    settings.BATCH_ACCOUNT_URL, settings.BATCH_ACCOUNT_NAME = "https://prod.westeurope.batch.azure.com", "prod"
    moved = default_account()

    assert moved.pk == first.pk and BatchAccount.objects.count() == 1
    assert (moved.account_url, moved.account_name) == ("https://prod.westeurope.batch.azure.com", "prod")


def test_gateway_reads_the_key_from_the_variable_the_account_names(localbatch, monkeypatch):
    monkeypatch.setenv("TEAM_B_BATCH_KEY", localbatch.account_key)
    account = BatchAccount.objects.create(name="team-b", account_url=localbatch.endpoint,
                                          account_name=localbatch.account_name, key_env_var="TEAM_B_BATCH_KEY")

    with gateway_for(account) as gateway:
        assert gateway.list_pools() == []   # the key signs requests localbatch accepts


def test_default_account_falls_back_to_the_key_in_settings(localbatch, settings, monkeypatch):
    monkeypatch.delenv("BATCH_ACCOUNT_KEY", raising=False)
    settings.BATCH_ACCOUNT_URL, settings.BATCH_ACCOUNT_NAME = localbatch.endpoint, localbatch.account_name
    settings.BATCH_ACCOUNT_KEY = localbatch.account_key

    with gateway_for(default_account()) as gateway:
        assert gateway.list_jobs() == []


def test_a_missing_key_names_the_variable_to_set(monkeypatch):
    monkeypatch.delenv("TEAM_C_BATCH_KEY", raising=False)
    account = BatchAccount.objects.create(name="team-c", account_url="https://c.batch.azure.com",
                                          account_name="c", key_env_var="TEAM_C_BATCH_KEY")

    with pytest.raises(ImproperlyConfigured, match="TEAM_C_BATCH_KEY"):
        gateway_for(account)


def test_a_missing_key_is_our_error_naming_the_account_and_the_variable(monkeypatch):
    monkeypatch.delenv("TEAM_D_BATCH_KEY", raising=False)
    account = BatchAccount.objects.create(name="team-d", account_url="https://d.batch.azure.com",
                                          account_name="d", key_env_var="TEAM_D_BATCH_KEY")

    with pytest.raises(AccountNotConfigured) as raised:
        gateway_for(account)

    assert (raised.value.account_name, raised.value.missing) == ("team-d", "TEAM_D_BATCH_KEY")
    assert "'team-d'" in str(raised.value)


def test_only_enabled_accounts_are_synced(localbatch, batch_client, monkeypatch):
    """Two accounts on one localbatch (the same jobs seen twice): the disabled one is neither listed for the sync
    nor synced by a task queued before it was disabled."""
    monkeypatch.setenv("TWIN_BATCH_KEY", localbatch.account_key)
    enabled, disabled = (BatchAccount.objects.create(
        name=name, account_url=localbatch.endpoint, account_name=localbatch.account_name,
        key_env_var="TWIN_BATCH_KEY", enabled=name == "on") for name in ("on", "off"))
    make_pool(batch_client, "demo-pool", nodes=0)

    assert enabled.pk in synced_accounts() and disabled.pk not in synced_accounts()
    sync_account_task(enabled.pk)
    sync_account_task(disabled.pk)

    assert Pool.objects.filter(account=enabled, pool_id="demo-pool").exists()
    assert not Pool.objects.filter(account=disabled).exists()
    disabled.refresh_from_db()
    assert disabled.last_synced_at is None
