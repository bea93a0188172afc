"""manage.py audit_verify: an intact chain passes; a record edited, removed, moved or slipped in behind the app's
back is named. On PostgreSQL the trigger refuses UPDATE and DELETE outright, so the tampering here is done the way
only the table's owner could: with the trigger switched off."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from portal.audit.chain import chain_hash, event_hash, row_fields
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
    call_command("audit_verify", "--chunk-size", "2", stdout=out)
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
def test_postgresql_refuses_the_orm_too(five):
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=five[0].id).update(reason="changed")
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=five[0].id).delete()

    assert AuditEvent.objects.count() == 5
