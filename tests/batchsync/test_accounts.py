"""batchsync.accounts: the configured account's row, and gateways whose keys come from the environment."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from batchsync.accounts import default_account, gateway_for
from portal.models import BatchAccount

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
