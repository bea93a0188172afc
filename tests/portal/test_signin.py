"""Sign-in: the lockout after repeated failures (through the real login view), and single sign-on's mapping of
Entra ID groups to roles and teams. Entra itself cannot run here, so its claims are a dict; everything after the
token (the backend, the database) is real."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from django.urls import reverse

from portal.accounts.oidc import EntraIDBackend
from portal.accounts.roles import ROLE_NAMES, parse_group_mapping
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

OPERATORS = "6f1c0c1e-0000-4000-8000-000000000001"
VIEWERS = "6f1c0c1e-0000-4000-8000-000000000002"
TEAM_A_GROUP = "6f1c0c1e-0000-4000-8000-00000000000a"
OIDC = {"OIDC_ENABLED": True, "OIDC_RP_CLIENT_ID": "portal-client", "OIDC_RP_CLIENT_SECRET": "s",
        "OIDC_TENANT_ID": "t1", "OIDC_GROUP_ROLES": f"{OPERATORS}=Operator,{VIEWERS}=Viewer",
        "OIDC_GROUP_TEAMS": f"{TEAM_A_GROUP}=Team A"}


def attempt(client, username, password, ip="10.0.0.1"):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_five_failures_lock_the_username_at_that_address(user):
    client = Client()
    for _ in range(4):
        response = attempt(client, "alice", "wrong")
        assert response.status_code == 200 and "did not match" in response.content.decode()
    locked = attempt(client, "alice", "wrong")
    assert locked.status_code == 429 and "Too many failed attempts" in locked.content.decode()
    # Even the right password is refused while locked...
    right = attempt(client, "alice", PASSWORD)
    assert right.status_code == 429 and "_auth_user_id" not in client.session
    # ...from that address only: the same person elsewhere still signs in.
    elsewhere = attempt(Client(), "alice", PASSWORD, ip="10.0.0.2")
    assert elsewhere.status_code == 302


@override_settings(LOGIN_ADDRESS_FAILURE_LIMIT=6)
def test_spraying_many_usernames_from_one_address_locks_the_address(user):
    client = Client()
    for name in ("bob", "carol", "dave"):  # two tries each: under the per-username lock of five
        for _ in range(2):
            assert attempt(client, name, "wrong").status_code == 200
    # The address has six failures across usernames: even alice's right password is refused there...
    refused = attempt(client, "alice", PASSWORD)
    assert refused.status_code == 429 and "_auth_user_id" not in client.session
    # ...and only there.
    assert attempt(Client(), "alice", PASSWORD, ip="10.0.0.2").status_code == 302


@override_settings(LOGIN_ADDRESS_FAILURE_LIMIT=6)
def test_an_address_under_its_limit_still_signs_people_in(user):
    client = Client()
    for name in ("bob", "carol"):
        for _ in range(2):
            attempt(client, name, "wrong")
    assert attempt(client, "alice", PASSWORD).status_code == 302


def test_under_the_limit_the_right_password_still_works(user):
    client = Client()
    for _ in range(4):
        attempt(client, "alice", "wrong")
    assert attempt(client, "alice", PASSWORD).status_code == 302


def test_login_page_offers_microsoft_only_when_configured(client):
    assert "Sign in with Microsoft" not in client.get(reverse("login")).content.decode()
    assert client.get(reverse("oidc_authentication_init")).status_code == 404
    with override_settings(**OIDC):
        html = client.get(reverse("login")).content.decode()
        assert "Sign in with Microsoft" in html and reverse("oidc_authentication_init") in html
        # The button leads to Entra's authorize endpoint with our client id and PKCE.
        response = client.get(reverse("oidc_authentication_init"))
        assert response.status_code == 302 and response["Location"].startswith("https://login.microsoftonline.com/")
        assert "client_id=portal-client" in response["Location"] and "code_challenge=" in response["Location"]


def claims(groups, **extra):
    return {"aud": "portal-client", "tid": "t1", "oid": "o-1", "preferred_username": "Dana@Contoso.com",
            "given_name": "Dana", "family_name": "Diaz", "groups": groups, **extra}


@override_settings(**OIDC)
def test_groups_map_to_roles_and_teams_on_each_sign_in():
    backend = EntraIDBackend()
    dana = backend.create_user(claims([OPERATORS, TEAM_A_GROUP, "unmapped"]))
    assert dana.username == "dana@contoso.com" and not dana.has_usable_password()
    assert set(dana.groups.values_list("name", flat=True)) == {"Operator"}
    assert set(dana.teams.values_list("name", flat=True)) == {"Team A"}

    # Next sign-in: moved from the operators' group to the viewers' and out of team A.
    again = backend.filter_users_by_claims(claims([VIEWERS]))
    assert list(again) == [dana]
    backend.update_user(dana, claims([VIEWERS]))
    dana = get_user_model().objects.get(pk=dana.pk)
    assert set(dana.groups.values_list("name", flat=True)) == {"Viewer"}
    assert not dana.teams.exists() and not dana.has_perm("portal.manage_pools") and dana.has_perm("portal.view_job")

    # No mapped group at all: no role, so the portal shows nothing.
    backend.update_user(dana, claims([]))
    assert not get_user_model().objects.get(pk=dana.pk).groups.exists()


@override_settings(**OIDC)
def test_tokens_for_another_tenant_or_client_are_refused():
    backend = EntraIDBackend()
    assert backend.verify_claims(claims([OPERATORS]))
    assert not backend.verify_claims(claims([OPERATORS], tid="other-tenant"))
    assert not backend.verify_claims(claims([OPERATORS], aud="someone-else"))
    assert not backend.verify_claims(claims([OPERATORS], preferred_username="", email=""))


def test_a_malformed_mapping_is_an_error():
    assert parse_group_mapping(f"{OPERATORS.upper()}=Operator") == {OPERATORS: "Operator"}
    for bad in ("nonsense", f"{OPERATORS}=Superhero", "=Viewer"):
        with pytest.raises(ValueError):
            parse_group_mapping(bad, allowed=ROLE_NAMES)


@override_settings(TRUSTED_PROXY_COUNT=1)
def test_behind_our_proxy_the_lock_follows_the_client_not_the_proxy(user):
    client = Client()
    for _ in range(5):
        client.post(reverse("login"), {"username": "alice", "password": "wrong"}, REMOTE_ADDR="10.9.9.9",
                    HTTP_X_FORWARDED_FOR="203.0.113.7")
    other = Client().post(reverse("login"), {"username": "alice", "password": PASSWORD}, REMOTE_ADDR="10.9.9.9",
                          HTTP_X_FORWARDED_FOR="203.0.113.8")
    assert other.status_code == 302  # same proxy, another client: not locked
    locked = Client().post(reverse("login"), {"username": "alice", "password": PASSWORD}, REMOTE_ADDR="10.9.9.9",
                           HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert locked.status_code == 429
