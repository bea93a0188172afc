"""manage.py audit_verify: an intact chain passes; a record edited, removed, moved or slipped in behind the app's
back is named. On PostgreSQL the trigger refuses UPDATE and DELETE outright, so the tampering here is done the way
only the table's owner could: with the trigger switched off."""

import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from portal.audit.chain import chain_hash, event_hash, row_fields, unkeyed_hash
from portal.audit.services import record_event
from portal.models import AuditEvent

pytestmark = pytest.mark.django_db

TRIGGER = "portal_auditevent_append_only"


def behind_the_apps_back(sql: str, params=()) -> None:
    """Raw SQL on the audit table, bypassing the append-only trigger on PostgreSQL (as its owner could)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"ALTER TABLE portal_auditevent DISABLE TRIGGER {TRIGGER}")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute(f"ALTER TABLE portal_auditevent ENABLE TRIGGER {TRIGGER}")


def verify() -> str:
    out = StringIO()
    call_command("audit_verify", "--chunk-size", "2", "--no-heads", stdout=out)
    return out.getvalue()


def failure() -> str:
    with pytest.raises(CommandError) as caught:
        verify()
    assert caught.value.returncode == 1
    return str(caught.value)


@pytest.fixture
def five(no_role):
    # The persona without a role: making it records nothing, and these tests count records.
    for n in range(5):
        record_event(actor=no_role, action="task.retry", object_type="task", object_id=str(n), reason=f"try {n}",
                     changes={"state": ["completed", "active"]}, details={"n": n})
    return list(AuditEvent.objects.order_by("id"))


def test_an_intact_chain_is_counted_and_its_head_printed(five):
    assert verify() == f"5 records, chain intact; head {five[-1].hash}\n"


def test_an_empty_history_is_intact():
    assert verify().startswith("0 records, chain intact")


def test_an_edited_record_is_named(five):
    behind_the_apps_back("UPDATE portal_auditevent SET reason = %s WHERE id = %s", ["nothing happened", five[2].id])

    message = failure()
    assert f"audit record #{five[2].id} (" in message and "task.retry" in message
    assert "edited" in message and "after 2 intact records" in message


def test_an_edited_json_field_is_named(five):
    behind_the_apps_back("UPDATE portal_auditevent SET details = %s WHERE id = %s", ['{"n": 99}', five[3].id])

    assert f"audit record #{five[3].id} " in failure()


def test_a_removed_record_names_the_next_one(five):
    behind_the_apps_back("DELETE FROM portal_auditevent WHERE id = %s", [five[2].id])

    message = failure()
    assert f"audit record #{five[3].id} (" in message
    assert f"a record between #{five[1].id} and it was removed" in message


def test_removing_the_first_records_is_seen(five):
    behind_the_apps_back("DELETE FROM portal_auditevent WHERE id <= %s", [five[1].id])

    assert f"audit record #{five[2].id} (" in failure()


def test_an_edited_and_rehashed_record_is_seen_at_the_next_one(five):
    edited = AuditEvent.objects.values().get(pk=five[1].id) | {"reason": "forged"}
    behind_the_apps_back("UPDATE portal_auditevent SET reason = %s, hash = %s WHERE id = %s",
                         ["forged", event_hash(edited), five[1].id])

    message = failure()
    assert f"audit record #{five[2].id} (" in message and "edited and its hash recomputed" in message


def test_reordered_records_are_named(five):
    # Swap the ids of two records, through a free id.
    a, b = five[1].id, five[3].id
    behind_the_apps_back("UPDATE portal_auditevent SET id = %s WHERE id = %s", [10_000, a])
    behind_the_apps_back("UPDATE portal_auditevent SET id = %s WHERE id = %s", [a, b])
    behind_the_apps_back("UPDATE portal_auditevent SET id = %s WHERE id = %s", [b, 10_000])

    message = failure()
    assert f"audit record #{a} (" in message and "reordered" in message


def test_a_record_slipped_in_is_named(five, no_role):
    # A forger who knows the algorithm writes a valid-looking record after #2 and gives it an id between.
    forged_at = five[1].at
    fields = row_fields(at=forged_at, actor_id=None, actor_name="", action="pool.delete", object_type="pool",
                        object_id="x", object_label="x", team_id=None, ip_address=None, reason="", changes={},
                        details={})
    digest = chain_hash(fields, five[1].hash)
    behind_the_apps_back("UPDATE portal_auditevent SET id = id + 100 WHERE id >= %s", [five[2].id])
    AuditEvent.objects.create(id=five[2].id, at=forged_at, action="pool.delete", object_type="pool", object_id="x",
                              object_label="x", prev_hash=five[1].hash, hash=digest)

    message = failure()
    assert f"audit record #{five[2].id + 100} (" in message and "not part of the chain" in message


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger exists on PostgreSQL only")
@pytest.mark.parametrize("sql", ["UPDATE portal_auditevent SET reason = 'changed' WHERE id = %s",
                                 "DELETE FROM portal_auditevent WHERE id = %s"])
def test_postgresql_refuses_to_change_or_remove_a_record(five, sql):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [five[0].id])

    assert AuditEvent.objects.get(pk=five[0].id).reason == "try 0"
    assert verify().startswith("5 records, chain intact")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger exists on PostgreSQL only")
def test_postgresql_refuses_truncate_to_a_role_that_may_truncate(five):
    # A role given TRUNCATE on the table (as its owner has), not a superuser: the statement trigger refuses it.
    role = f"audit_truncate_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} NOLOGIN")
        cursor.execute(f"GRANT TRUNCATE, SELECT ON portal_auditevent TO {role}")
        try:
            with pytest.raises(DatabaseError, match="TRUNCATE on portal_auditevent refused"), transaction.atomic():
                cursor.execute(f"SET LOCAL ROLE {role}")
                cursor.execute("TRUNCATE portal_auditevent")
        finally:
            cursor.execute(f"REVOKE ALL ON portal_auditevent FROM {role}")
            cursor.execute(f"DROP ROLE {role}")

    assert AuditEvent.objects.count() == 5


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger exists on PostgreSQL only")
def test_postgresql_refuses_the_orm_too(five):
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=five[0].id).update(reason="changed")
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=five[0].id).delete()

    assert AuditEvent.objects.count() == 5


def forged_fields(at):
    return row_fields(at=at, actor_id=None, actor_name="", action="pool.delete", object_type="pool", object_id="x",
                      object_label="x", team_id=None, ip_address=None, reason="", changes={}, details={})


def append_as_the_apps_role(at, prev_hash, digest) -> AuditEvent:
    """An INSERT any writer of the table can make (the app's own role may append): no trigger stands in its way."""
    return AuditEvent.objects.create(at=at, action="pool.delete", object_type="pool", object_id="x", object_label="x",
                                     prev_hash=prev_hash, hash=digest)


@pytest.mark.parametrize("how", ["plain sha256", "another key"])
def test_a_record_appended_without_the_audit_key_is_named(five, how):
    # The forger knows the algorithm and can write the table, but not the key in the processes' environment.
    at, prev = five[-1].at, five[-1].hash
    digest = unkeyed_hash(forged_fields(at), prev) if how == "plain sha256" else chain_hash(
        forged_fields(at), prev, key=b"a guess")
    forged = append_as_the_apps_role(at, prev, digest)

    message = failure()
    assert f"audit record #{forged.id} (" in message and "after 5 intact records" in message
    assert ("forged" in message) and ("audit key" in message)


def test_the_key_comes_from_the_environment_and_a_changed_key_fails_every_record(five, settings):
    settings.AUDIT_HMAC_KEY = "another key from the environment"
    message = failure()
    assert f"audit record #{five[0].id} (" in message and "after 0 intact records" in message


def test_records_from_before_the_key_verify_as_a_prefix_and_are_counted(no_role):
    # Two records as the chain wrote them before it was keyed, then the keyed ones from today's code.
    prev, at = "0" * 64, timezone.now() - timedelta(minutes=5)
    for _ in range(2):
        digest = unkeyed_hash(forged_fields(at), prev)
        prev = append_as_the_apps_role(at, prev, digest).hash
    for n in range(3):
        record_event(actor=no_role, action="task.retry", object_type="task", object_id=str(n))

    out = verify()
    assert out.startswith("5 records, chain intact") and "The first 2 records predate the audit key" in out
    # An unkeyed record after keyed ones is not an old one: it is refused.
    last = AuditEvent.objects.order_by("-id").first()
    forged = append_as_the_apps_role(last.at, last.hash, unkeyed_hash(forged_fields(last.at), last.hash))
    assert f"audit record #{forged.id} (" in failure()
