"""The audit chain's heads in write-once storage (a real Azurite): published on a schedule, never replaced, and
checked by audit_verify, which then finds what the chain alone cannot: records cut from the end, a table emptied,
and a history rewritten whole by someone holding the key."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from batchsync.tasks import publish_audit_head_task
from portal.audit.chain import event_hash
from portal.audit.heads import PREFIX, publish_head
from portal.audit.services import record_event
from portal.models import AuditEvent
from tests.portal.test_audit_verify import behind_the_apps_back

pytestmark = pytest.mark.django_db


@pytest.fixture
def audit_store(store, settings):
    """The test Azurite, with an audit container of this test's own."""
    store.containers = type(store.containers)(**{**store.containers.__dict__,
                                                 "audit": f"audit-{store.containers.logs[5:]}"})
    settings.STORAGE_AUDIT_CONTAINER = store.containers.audit
    store.ensure_containers()
    return store


def record(no_role, count):
    for n in range(count):
        record_event(actor=no_role, action="task.retry", object_type="task", object_id=str(n), reason=f"r{n}")
    return list(AuditEvent.objects.order_by("id"))


def verify() -> str:
    out = StringIO()
    call_command("audit_verify", stdout=out)
    return out.getvalue()


def failure() -> str:
    with pytest.raises(CommandError) as caught:
        verify()
    assert caught.value.returncode == 1
    return str(caught.value)


def heads(store) -> list[str]:
    return [blob.path for blob in store.iter_blobs(store.containers.audit, PREFIX)]


def test_a_head_is_published_once_per_new_record_and_never_replaced(audit_store, no_role):
    assert publish_head(audit_store) is None          # nothing recorded yet: nothing to publish
    events = record(no_role, 3)
    publish_audit_head_task()                         # as beat runs it
    assert heads(audit_store) == [f"{PREFIX}{events[-1].id:012d}-{events[-1].hash}.json"]
    first = audit_store.read_all(audit_store.containers.audit, heads(audit_store)[0])
    assert publish_head(audit_store) is None          # no new record: nothing written, the blob unchanged
    assert audit_store.read_all(audit_store.containers.audit, heads(audit_store)[0]) == first
    record(no_role, 2)
    publish_head(audit_store)
    assert len(heads(audit_store)) == 2
    newest = AuditEvent.objects.order_by("-id").first()
    assert verify().endswith(f"2 published heads match, the newest for record #{newest.id}.\n")


def test_records_cut_from_the_end_are_found_by_their_published_head(audit_store, no_role):
    events = record(no_role, 5)
    publish_head(audit_store)
    behind_the_apps_back("DELETE FROM portal_auditevent WHERE id >= %s", [events[3].id])

    message = failure()     # the chain of the three left is intact; the head says there were more
    assert f"record #{events[-1].id}" in message and "removed from the end" in message


def test_a_history_rewritten_whole_with_the_key_is_found(audit_store, no_role):
    events = record(no_role, 4)
    publish_head(audit_store)
    # Someone holding the key rewrites record 2 and rehashes it and every record after it: the chain verifies.
    behind_the_apps_back("UPDATE portal_auditevent SET reason = 'rewritten' WHERE id = %s", [events[1].id])
    prev = events[0].hash
    for event in AuditEvent.objects.filter(id__gte=events[1].id).order_by("id"):
        event.prev_hash = prev
        digest = event_hash(event)
        behind_the_apps_back("UPDATE portal_auditevent SET prev_hash = %s, hash = %s WHERE id = %s",
                             [prev, digest, event.id])
        prev = digest
    out = StringIO()
    call_command("audit_verify", "--no-heads", stdout=out)
    assert "chain intact" in out.getvalue()

    message = failure()
    assert f"record #{events[-1].id} has another hash than the one published" in message


def test_storage_that_does_not_answer_is_said_plainly(no_role, settings):
    record(no_role, 1)
    settings.AZURE_STORAGE_CONNECTION_STRING = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;")
    message = failure()
    assert "the published heads could not be read" in message and "--no-heads" in message
