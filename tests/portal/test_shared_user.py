"""The signed-in person's row, shared through the cache (portal/accounts/permissions.py): read from the database once,
then from Redis, until the row changes; a change (deactivated, new password, deleted) is seen by the next request."""

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from portal.accounts.oidc import EntraIDBackend
from portal.accounts.permissions import CachedPermissionsBackend, shared_user
from portal.cache import TolerantRedisCache
from tests.conftest import free_port
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def user_row_reads(client: Client, path: str) -> tuple[int, int]:
    """The page's status and how many queries read auth_user (the person's row) to answer it."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    return response.status_code, sum('FROM "auth_user" WHERE "auth_user"."id" =' in query["sql"]
                                     for query in queries.captured_queries)


def signed_in(user: User) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_the_row_is_read_from_the_database_once_then_shared(viewer, real_redis):
    client, other_browser = signed_in(viewer), signed_in(viewer)
    assert user_row_reads(client, reverse("job_list")) == (200, 1)
    assert user_row_reads(client, reverse("job_list")) == (200, 0)
    # The person's other session is served the same copy.
    assert user_row_reads(other_browser, reverse("job_list")) == (200, 0)


def test_a_deactivated_person_is_signed_out_at_the_next_request(viewer, real_redis):
    client = signed_in(viewer)
    assert client.get(reverse("job_list")).status_code == 200
    viewer.is_active = False
    viewer.save(update_fields=["is_active"])
    response = client.get(reverse("job_list"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_a_new_password_ends_the_other_sessions_at_their_next_request(viewer, real_redis):
    client = signed_in(viewer)
    assert client.get(reverse("job_list")).status_code == 200
    viewer.set_password("a new password 8")
    viewer.save()
    assert client.get(reverse("job_list")).status_code == 302


def test_a_deleted_person_is_signed_out_and_their_id_means_nobody(viewer, real_redis):
    client = signed_in(viewer)
    assert client.get(reverse("job_list")).status_code == 200
    user_id = viewer.pk
    viewer.delete()
    assert client.get(reverse("job_list")).status_code == 302
    assert CachedPermissionsBackend().get_user(user_id) is None


def test_a_row_changed_while_it_was_being_read_is_not_served_afterwards(viewer, real_redis):
    """The copy is stored under the token read before the row: a change in between moves the token past it."""
    def load_then_change(user_id: int) -> User | None:
        stale = User.objects.get(pk=user_id)
        User.objects.get(pk=user_id).save()     # someone else's change, committed after the row was read
        return stale

    assert shared_user(viewer.pk, load_then_change) is not None
    reads: list[int] = []

    def load(user_id: int) -> User | None:
        reads.append(user_id)
        return User.objects.get(pk=user_id)

    assert shared_user(viewer.pk, load) is not None
    assert reads == [viewer.pk]      # the copy stored during the change was not used
    assert shared_user(viewer.pk, load) is not None
    assert reads == [viewer.pk]      # the one stored after it is


def test_an_inactive_row_shared_by_single_sign_on_is_refused_by_the_password_backend(viewer, real_redis):
    """Single sign-on's backend loads inactive rows too (access checks refuse them); the password backend keeps
    ModelBackend's own refusal whichever backend stored the copy."""
    viewer.is_active = False
    viewer.save(update_fields=["is_active"])
    assert EntraIDBackend().get_user(viewer.pk) == viewer
    assert CachedPermissionsBackend().get_user(viewer.pk) is None


def test_without_redis_the_row_comes_from_the_database(viewer, settings):
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
                                   "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 1}}}
    TolerantRedisCache._down_until = 0.0
    try:
        client = signed_in(viewer)
        assert user_row_reads(client, reverse("job_list")) == (200, 1)
        assert user_row_reads(client, reverse("job_list")) == (200, 1)
    finally:
        TolerantRedisCache._down_until = 0.0    # the next test's Redis answers
