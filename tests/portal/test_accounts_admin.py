"""Batch accounts in the admin: Admins add, edit and disable them (the key stays in the environment, only its
variable's name is stored); Operators and Viewers may not; every change is in the audit history."""

import pytest
from django.urls import reverse

from portal.models import AuditEvent, BatchAccount
from tests.personas import client_for

pytestmark = pytest.mark.django_db

NEW = {"name": "prod", "account_url": "https://prod.westeurope.batch.azure.com", "account_name": "prodbatch",
       "auth": "shared_key", "key_env_var": "PROD_BATCH_KEY", "enabled": "on", "managed_identity_client_id": ""}


def test_an_admin_adds_an_account_naming_the_variable_that_holds_its_key(portal_admin):
    response = client_for(portal_admin).post(reverse("admin:portal_batchaccount_add"), NEW)

    assert response.status_code == 302, response.content.decode()[:2000]
    account = BatchAccount.objects.get(name="prod")
    assert (account.account_name, account.key_env_var, account.enabled) == ("prodbatch", "PROD_BATCH_KEY", True)
    assert AuditEvent.objects.filter(action="batch_account.create", object_id=str(account.pk)).exists()


def test_a_key_pasted_where_the_variable_name_goes_is_refused_and_nothing_is_saved(portal_admin):
    pasted = {**NEW, "key_env_var": "c2VjcmV0LWtleS1ub3QtYS1uYW1l/+=="}

    response = client_for(portal_admin).post(reverse("admin:portal_batchaccount_add"), pasted)

    assert response.status_code == 200 and "name of an environment variable" in response.content.decode()
    assert not BatchAccount.objects.filter(name="prod").exists()


def test_an_admin_edits_and_disables_an_account_but_cannot_delete_it(portal_admin):
    account = BatchAccount.objects.create(name="prod", account_url=NEW["account_url"], account_name="prodbatch",
                                          key_env_var="PROD_BATCH_KEY")
    admin = client_for(portal_admin)
    change = reverse("admin:portal_batchaccount_change", args=[account.pk])

    assert admin.post(change, {**NEW, "key_env_var": "PROD_KEY_2"}).status_code == 302
    admin.post(reverse("admin:portal_batchaccount_changelist"),
               {"action": "disable_accounts", "_selected_action": [account.pk]})

    account.refresh_from_db()
    assert (account.key_env_var, account.enabled) == ("PROD_KEY_2", False)
    changes = [e.changes for e in AuditEvent.objects.filter(action="batch_account.change").order_by("pk")]
    assert changes == [{"key_env_var": ["PROD_BATCH_KEY", "PROD_KEY_2"]}, {"enabled": [True, False]}]
    assert admin.post(reverse("admin:portal_batchaccount_delete", args=[account.pk]),
                      {"post": "yes"}).status_code == 403
    assert BatchAccount.objects.filter(pk=account.pk).exists()


def test_the_default_account_follows_settings_so_its_address_is_not_edited_here(portal_admin):
    account = BatchAccount.objects.create(name="default", account_url="http://127.0.0.1:8089",
                                          account_name="localbatch", is_default=True)

    page = client_for(portal_admin).get(reverse("admin:portal_batchaccount_change", args=[account.pk]))

    assert page.status_code == 200
    assert 'name="account_url"' not in page.content.decode() and 'name="key_env_var"' in page.content.decode()


@pytest.mark.parametrize("persona", ["operator_a", "viewer", "submitter"])
def test_operators_and_viewers_may_not_add_change_or_disable_accounts(request, persona):
    account = BatchAccount.objects.create(name="prod", account_url=NEW["account_url"], account_name="prodbatch",
                                          key_env_var="PROD_BATCH_KEY")
    client = client_for(request.getfixturevalue(persona))

    added = client.post(reverse("admin:portal_batchaccount_add"), {**NEW, "name": "other"})
    changed = client.post(reverse("admin:portal_batchaccount_change", args=[account.pk]),
                          {**NEW, "key_env_var": "STOLEN"})
    client.post(reverse("admin:portal_batchaccount_changelist"),
                {"action": "disable_accounts", "_selected_action": [account.pk]})

    assert added.status_code in (302, 403) and changed.status_code in (302, 403)
    if added.status_code == 302:
        assert "/admin/login/" in added["Location"]
    account.refresh_from_db()
    assert (account.key_env_var, account.enabled) == ("PROD_BATCH_KEY", True)
    assert not BatchAccount.objects.filter(name="other").exists()
