"""portal.audit: the hash chain, what it keeps out (secrets), where an address comes from, and the actions that are
recorded — pool actions through localbatch, sign-in through the real login view, membership changes, submissions
and template changes in the admin."""

import json
import threading
from datetime import datetime

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import DatabaseError, connection, connections, transaction
from django.test import RequestFactory
from django.urls import reverse

from batchsync.accounts import default_account
from portal.actions import ActionError
from portal.audit.chain import GENESIS_HASH, event_hash
from portal.audit.middleware import client_ip
from portal.audit.services import record_event
from portal.models import AuditEvent, JobTemplate, Pool, PoolTemplate, Team
from portal.pools import services as pool_services
from portal.redact import sanitised
from portal.submit import services as submit_services
from tests.factories import PASSWORD, JobFactory
from tests.localbatch.helpers import make_pool
from tests.personas import client_for
from tests.portal.pages import text

pytestmark = pytest.mark.django_db

SAS_URL = ("https://acct.blob.core.windows.net/inputs/frames.zip?sv=2025-01-05&se=2026-11-25T00%3A00%3A00Z"
           "&sr=b&sp=r&sig=c2VjcmV0LXNpZ25hdHVyZQ%3D%3D")


def events(**filters):
    return list(AuditEvent.objects.filter(**filters).order_by("id"))


# --- the chain ---------------------------------------------------------------------------------------------


def test_the_first_event_follows_the_genesis_and_each_next_one_the_event_before(no_role):
    record_event(actor=no_role, action="pool.create", object_type="pool", object_id="a")
    record_event(actor=no_role, action="pool.resize", object_type="pool", object_id="a")
    record_event(actor=None, action="pool.delete", object_type="pool", object_id="a")

    first, second, third = events()
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash and third.prev_hash == second.hash
    assert len({first.hash, second.hash, third.hash}) == 3
    # What was hashed is what the database gives back.
    assert all(event_hash(event) == event.hash for event in (first, second, third))
    assert (first.actor_id, first.actor_name, third.actor_id, third.actor_name) == (
        no_role.pk, no_role.username, None, "")


@pytest.mark.parametrize("field, value", [
    ("at", "2020-01-01T00:00:00+00:00"), ("actor_id", 999), ("actor_name", "mallory"), ("action", "pool.create"),
    ("object_type", "job"), ("object_id", "other"), ("object_label", "other"), ("team_id", 7),
    ("ip_address", "198.51.100.7"), ("reason", "no reason"), ("changes", {"target_dedicated_nodes": [0, 99]}),
    ("details", {"account": "elsewhere"}), ("prev_hash", "1" * 64),
])
def test_the_hash_covers_every_field(no_role, field, value):
    record_event(actor=no_role, action="pool.resize", object_type="pool", object_id="a", object_label="a",
                 reason="more frames", changes={"target_dedicated_nodes": [1, 3]}, details={"account": "default"})
    row = AuditEvent.objects.values().get()
    if field == "at":
        value = datetime.fromisoformat(value)

    assert event_hash(row) == row["hash"]
    assert event_hash({**row, field: value}) != row["hash"]


def test_an_event_rolls_back_with_the_transaction_that_made_it(no_role):
    record_event(actor=no_role, action="pool.create", object_type="pool", object_id="kept")
    with pytest.raises(RuntimeError), transaction.atomic():
        record_event(actor=no_role, action="pool.delete", object_type="pool", object_id="kept")
        raise RuntimeError("the action failed")
    record_event(actor=no_role, action="pool.resize", object_type="pool", object_id="kept")

    kept = events()
    assert [event.action for event in kept] == ["pool.create", "pool.resize"]
    assert kept[1].prev_hash == kept[0].hash


def test_an_object_fills_type_id_label_and_team():
    team = Team.objects.create(name="render")
    job = JobFactory(team=team)

    record_event(actor=None, action="job.terminate", obj=job, reason="stuck")

    event = AuditEvent.objects.get()
    assert (event.object_type, event.object_id, event.object_label, event.team_id) == (
        "job", str(job.pk), job.job_id, team.pk)


def test_numbers_and_text_the_database_rewrites_still_verify(no_role):
    record_event(actor=no_role, action="submission.create", object_type="submission",
                 details={"big": 1e20, "small": 1e-7, "one": 1.0, "third": 1 / 3, "huge": 2 ** 70, "nan": float("nan"),
                          "text": "naïve “quotes” \u2028 and a NUL\x00 byte", "nested": {"b": [1.5, None, True]}},
                 changes={"frames": [240, 240.0]})

    event = AuditEvent.objects.get()
    assert event_hash(event) == event.hash
    assert event.details["nan"] == "nan" and "\x00" not in event.details["text"]


def test_long_values_are_cut_to_fit_and_still_verify(no_role):
    record_event(actor=no_role, action="job.terminate", object_type="job", object_label="x" * 1000,
                 object_id="9" * 500)

    event = AuditEvent.objects.get()
    assert len(event.object_label) == 300 and len(event.object_id) == 200
    assert event_hash(event) == event.hash


@pytest.mark.django_db(transaction=True)
def test_appends_from_many_connections_at_once_keep_one_chain():
    """Threads, each with its own database connection, append at the same moment. Without the lock (on
    PostgreSQL) or the write lock taken at BEGIN (SQLite), two of them read the same last hash and the chain
    forks: two rows with one prev_hash."""
    if connection.vendor == "sqlite" and connection.settings_dict["NAME"].startswith(("file:memorydb", ":memory:")):
        pytest.skip("the in-memory test database is one connection's; the fork needs separate connections")
    threads, per_thread = 6, 8
    start = threading.Barrier(threads)
    failures = []

    def append(n):
        try:
            start.wait()
            for i in range(per_thread):
                with transaction.atomic():
                    record_event(actor=None, action="task.retry", object_type="task", object_id=f"{n}-{i}")
        except DatabaseError as exc:  # reported below, in the test's thread
            failures.append(exc)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=append, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert failures == []
    rows = list(AuditEvent.objects.order_by("id").values_list("prev_hash", "hash"))
    assert len(rows) == threads * per_thread
    assert len({prev for prev, _ in rows}) == len(rows)
    assert [prev for prev, _ in rows] == [GENESIS_HASH] + [digest for _, digest in rows[:-1]]


# --- secrets stay out -----------------------------------------------------------------------------------------


def test_a_sas_url_keeps_its_path_and_loses_its_query():
    assert sanitised({"input": SAS_URL}) == {
        "input": "https://acct.blob.core.windows.net/inputs/frames.zip?[redacted]"}


def test_secrets_are_replaced_wherever_they_are():
    cleaned = sanitised({
        "password": "hunter2", "account_key": "abc", "AccountKey": "abc", "token": "t", "sas": "sv=1&sig=x",
        "connection_string": "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=Zm9v;",
        "nested": [{"url": SAS_URL, "note": "see AccountKey=Zm9vYmFy; in the vault"}],
        "files": ("a.txt", "b.txt"), "key_env_var": "BATCH_KEY", "nodes": 3, "empty_password": "",
        "header": "SharedKey acct:c2lnbmF0dXJl",
    })

    assert cleaned["password"] == cleaned["account_key"] == cleaned["AccountKey"] == "[redacted]"
    assert cleaned["token"] == cleaned["sas"] == cleaned["connection_string"] == cleaned["header"] == "[redacted]"
    assert cleaned["nested"] == [{"url": "https://acct.blob.core.windows.net/inputs/frames.zip?[redacted]",
                                  "note": "[redacted]"}]
    # Not secrets: names of things, counts, empty values.
    assert cleaned["files"] == ["a.txt", "b.txt"] and cleaned["key_env_var"] == "BATCH_KEY"
    assert cleaned["nodes"] == 3 and cleaned["empty_password"] == ""


def test_nothing_secret_is_stored_or_hashed(no_role):
    record_event(actor=no_role, action="submission.create", object_type="submission", object_id="1",
                 reason=f"inputs were at {SAS_URL}",
                 changes={"start_task_resource_files": [[], [{"http_url": SAS_URL, "file_path": "x"}]]},
                 details={"inputs": [SAS_URL], "password": "hunter2"})

    stored = AuditEvent.objects.values().get()
    text = json.dumps({key: str(value) for key, value in stored.items()})
    assert "sig=" not in text and "c2VjcmV0" not in text and "hunter2" not in text
    assert "https://acct.blob.core.windows.net/inputs/frames.zip?[redacted]" in stored["reason"]
    assert event_hash(stored) == stored["hash"]


# --- where from ----------------------------------------------------------------------------------------------


def request_from(remote_addr, forwarded=None):
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    return RequestFactory().get("/", REMOTE_ADDR=remote_addr, **extra)


def test_the_address_is_the_connections_unless_a_proxy_of_ours_is_trusted(settings):
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_ip(request_from("10.0.0.5", "203.0.113.9")) == "10.0.0.5"

    settings.TRUSTED_PROXY_COUNT = 1
    # The client wrote the first entry itself; our proxy appended the address it saw.
    assert client_ip(request_from("10.0.0.5", "1.2.3.4, 203.0.113.9")) == "203.0.113.9"
    settings.TRUSTED_PROXY_COUNT = 2
    assert client_ip(request_from("10.0.0.5", "1.2.3.4, 203.0.113.9, 10.0.0.4")) == "203.0.113.9"
    # Fewer hops than proxies: the request did not come through them; keep the connection's address.
    assert client_ip(request_from("10.0.0.5", "203.0.113.9")) == "10.0.0.5"
    assert client_ip(request_from("10.0.0.5", "not-an-address, junk")) is None
    # One spelling per address, as the database would store it.
    assert client_ip(request_from("2001:DB8:0:0::1")) == "2001:db8::1"


# --- sign-in ---------------------------------------------------------------------------------------------------


def test_a_failed_sign_in_records_the_name_tried_and_the_address_never_the_password(client, no_role):
    client.post(reverse("login"), {"username": no_role.username, "password": "Wrong-Password-42"},
                REMOTE_ADDR="203.0.113.9")
    client.post(reverse("login"), {"username": "nobody-here", "password": "Wrong-Password-42"},
                REMOTE_ADDR="203.0.113.10")

    known, unknown = events(action="auth.login_failed")
    assert (known.actor_id, known.ip_address, known.details["username"], known.object_id) == (
        None, "203.0.113.9", no_role.username, str(no_role.pk))
    assert (unknown.ip_address, unknown.details["username"], unknown.object_id) == ("203.0.113.10", "nobody-here", "")
    stored = json.dumps(list(AuditEvent.objects.values("details", "changes", "reason", "object_label")))
    assert "Wrong-Password-42" not in stored and "*****" not in stored


def test_sign_in_and_sign_out_are_recorded_with_the_address(client, no_role, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    client.post(reverse("login"), {"username": no_role.username, "password": PASSWORD},
                REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.20")
    client.post(reverse("logout"), REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.21")

    login, logout = events(action__in=["auth.login", "auth.logout"])
    assert (login.action, login.actor_name, login.ip_address) == ("auth.login", no_role.username, "198.51.100.20")
    assert (logout.action, logout.actor_name, logout.ip_address) == ("auth.logout", no_role.username, "198.51.100.21")


def test_a_lockout_is_recorded_when_the_failures_reach_the_limit(client, settings, viewer):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(reverse("login"), {"username": viewer.username, "password": "not-it"}, REMOTE_ADDR="198.51.100.5")

    lockout = AuditEvent.objects.get(action="auth.lockout")
    assert (lockout.details, lockout.ip_address, lockout.actor_id) == (
        {"username": viewer.username}, "198.51.100.5", None)
    assert AuditEvent.objects.filter(action="auth.login_failed").count() == settings.AXES_FAILURE_LIMIT


# --- memberships: role and team changes -----------------------------------------------------------------------


def test_adding_and_removing_a_role_records_the_groups_before_and_after(no_role):
    operator, viewer = Group.objects.get(name="Operator"), Group.objects.get(name="Viewer")
    no_role.groups.add(viewer)
    no_role.groups.add(operator)
    no_role.groups.remove(viewer)
    viewer.user_set.add(no_role)      # from the group's side
    no_role.groups.clear()

    changes = [event.changes["groups"] for event in events(action="user.role_change", object_id=str(no_role.pk))]
    assert changes == [
        [[], ["Viewer"]],
        [["Viewer"], ["Operator", "Viewer"]],
        [["Operator", "Viewer"], ["Operator"]],
        [["Operator"], ["Operator", "Viewer"]],
        [["Operator", "Viewer"], []],
    ]


def test_clearing_a_group_records_each_member(no_role, other_submitter):
    group = Group.objects.get(name="Submitter")
    group.user_set.add(no_role, other_submitter)

    group.user_set.clear()

    cleared = {event.object_label: event.changes["groups"] for event in events(action="user.role_change")
               if event.changes["groups"][1] == []}
    assert cleared == {no_role.username: [["Submitter"], []], other_submitter.username: [["Submitter"], []]}


def test_a_role_change_in_the_admin_names_who_made_it_and_from_where(admin_client, admin_user, no_role):
    operator = Group.objects.get(name="Operator")
    data = {"username": no_role.username, "is_active": "on", "groups": [operator.pk],
            "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00", "initial-date_joined_0": "2026-01-01",
            "initial-date_joined_1": "00:00:00"}

    response = admin_client.post(reverse("admin:auth_user_change", args=[no_role.pk]), data, REMOTE_ADDR="192.0.2.44")

    assert response.status_code == 302, response.content.decode()[:2000]
    event = AuditEvent.objects.get(action="user.role_change")
    assert (event.actor_name, event.ip_address, event.object_label) == (
        admin_user.username, "192.0.2.44", no_role.username)
    assert event.changes == {"groups": [[], ["Operator"]]}


def test_making_someone_an_administrator_or_switching_them_off_is_a_role_change(no_role):
    no_role.is_superuser = True
    no_role.save()
    no_role.last_login = None
    no_role.save(update_fields=["last_login"])     # not a role change, and not even looked at
    no_role.is_active = False
    no_role.save()

    changes = [event.changes for event in events(action="user.role_change", object_id=str(no_role.pk))]
    assert changes == [{"is_superuser": [False, True]}, {"is_active": [True, False]}]


def test_a_change_of_what_a_role_may_do_is_recorded():
    viewer = Group.objects.get(name="Viewer")
    before = sorted(f"portal.{code}" for code in viewer.permissions.values_list("codename", flat=True))
    viewer.permissions.add(Permission.objects.get(codename="view_auditevent"))

    event = AuditEvent.objects.get(action="group.permission_change")
    assert (event.object_type, event.object_label) == ("group", "Viewer")
    assert event.changes == {"permissions": [before, sorted([*before, "portal.view_auditevent"])]}


def test_deleting_an_account_is_recorded(no_role):
    pk, username = no_role.pk, no_role.username
    no_role.delete()

    event = AuditEvent.objects.get(action="user.delete")
    assert (event.object_id, event.object_label) == (str(pk), username)


def test_team_membership_changes_are_recorded_from_either_side(no_role):
    render, audio = Team.objects.create(name="render"), Team.objects.create(name="audio")
    render.members.add(no_role)
    no_role.teams.add(audio)
    render.members.remove(no_role)

    changes = [event.changes["teams"] for event in events(action="user.team_change", object_id=str(no_role.pk))]
    assert changes == [[[], ["render"]], [["render"], ["audio", "render"]], [["audio", "render"], ["audio"]]]


# --- pool actions (through localbatch) -------------------------------------------------------------------------


@pytest.fixture
def manager(operator_a):
    """Someone who manages pools: an Operator."""
    return operator_a


def test_a_pool_resize_records_the_targets_before_and_after(batch, batch_client, manager):
    make_pool(batch_client, "pool-a", nodes=1)
    pool = Pool.objects.create(account=default_account(), pool_id="pool-a", state="active", allocation_state="steady",
                               vm_size="standard_d2s_v3", target_dedicated_nodes=1, target_low_priority_nodes=0)

    pool_services.pool_resize(user=manager, pool=pool, dedicated_nodes=3, low_priority_nodes=2)

    event = AuditEvent.objects.get(action="pool.resize")
    assert (event.actor_name, event.object_type, event.object_id, event.object_label) == (
        manager.username, "pool", "pool-a", "pool-a")
    assert event.changes == {"target_dedicated_nodes": [1, 3], "target_low_priority_nodes": [0, 2]}
    assert event.details == {"account": default_account().name}


def test_pool_create_and_delete_are_recorded_and_a_refused_action_is_not(batch, batch_client, manager):
    template = PoolTemplate.objects.get(name="Small Linux pool")
    pool_services.pool_create(user=manager, template=template, pool_id="made", dedicated_nodes=0, low_priority_nodes=0)
    with pytest.raises(ActionError):
        pool_services.pool_create(user=manager, template=template, pool_id="made", dedicated_nodes=0,
                             low_priority_nodes=0)
    pool = Pool.objects.create(account=default_account(), pool_id="made", state="active", allocation_state="steady",
                               vm_size="standard_d2s_v3")
    pool_services.pool_delete(user=manager, pool=pool)

    recorded = events(object_type="pool")
    assert [(e.action, e.object_id) for e in recorded] == [("pool.create", "made"), ("pool.delete", "made")]
    assert recorded[0].details["template"] == "Small Linux pool"


def test_a_pool_create_row_says_the_node_counts_and_vm_size(batch, batch_client, manager):
    template = PoolTemplate.objects.get(name="Small Linux pool")
    pool_services.pool_create(user=manager, template=template, pool_id="made", dedicated_nodes=2, low_priority_nodes=1)

    event = AuditEvent.objects.get(action="pool.create")
    assert event.changes == {"target_dedicated_nodes": [None, 2], "target_low_priority_nodes": [None, 1],
                             "vm_size": [None, template.vm_size]}
    page = text(client_for(manager).get(reverse("audit_list")))
    row = page[page.index(f'id="audit-{event.pk}"'):]
    row = row[:row.index("</tr>")]
    assert "target_dedicated_nodes</span>: – → 2" in row and "target_low_priority_nodes</span>: – → 1" in row
    assert f"vm_size</span>: – → {template.vm_size}" in row


# --- submissions and templates -----------------------------------------------------------------------------------


def test_a_submission_records_its_object_and_rendered_parameters(django_capture_on_commit_callbacks, submitter):
    version = JobTemplate.objects.get(slug="render-frames").current_version()

    with django_capture_on_commit_callbacks():
        submission = submit_services.submission_create(user=submitter, template_version=version.pk,
                                                       parameters={"frames": "24", "seconds_per_frame": "0.5"})

    event = AuditEvent.objects.get(action="submission.create")
    assert (event.actor_name, event.object_type, event.object_id, event.object_label) == (
        submitter.username, "submission", str(submission.pk), f"{submission.name} ({submission.job_id})")
    assert event.details["name"] == submission.name
    assert event.details["parameters"] == {"frames": 24, "seconds_per_frame": 0.5}
    assert event.details["tasks"] == 24 and event.details["job_id"] == submission.job_id


def test_a_new_template_version_records_what_changed_in_the_spec(engineer):
    template = JobTemplate.objects.get(slug="render-frames")
    spec = {**template.current_version().spec, "priority": 10}

    submit_services.job_template_version_create(user=engineer, template=template, spec=spec)

    event = AuditEvent.objects.get(action="job_template.version_create")
    assert (event.object_type, event.object_id) == ("job_template", str(template.pk))
    assert event.changes["version"] == [1, 2]
    assert event.changes["spec.priority"] == [template.versions.get(number=1).spec.get("priority"), 10]


def test_template_changes_in_the_admin_are_recorded_with_before_and_after(admin_client):
    template = JobTemplate.objects.get(slug="render-frames")
    current = template.current_version().spec
    data = {"name": template.name, "slug": template.slug, "description": "New words", "is_active": "on",
            "spec": json.dumps({**current, "priority": 5}), "versions-TOTAL_FORMS": "0",
            "versions-INITIAL_FORMS": "0"}
    old_description = template.description

    admin_client.post(reverse("admin:portal_jobtemplate_change", args=[template.pk]), data, REMOTE_ADDR="192.0.2.8")

    change, version = events(object_type="job_template")
    assert (change.action, change.object_id, change.ip_address) == ("job_template.change", str(template.pk),
                                                                     "192.0.2.8")
    assert change.changes == {"description": [old_description, "New words"]}
    assert version.action == "job_template.version_create" and version.changes["spec.priority"][1] == 5


def test_pool_template_edits_in_the_admin_keep_sas_out_of_the_record(admin_client):
    template = PoolTemplate.objects.get(name="Small Linux pool")
    page = admin_client.get(reverse("admin:portal_pooltemplate_change", args=[template.pk]))
    data = {key: value for key, value in page.context["adminform"].form.initial.items() if value is not None}
    data.update(start_task_resource_files=json.dumps([{"http_url": SAS_URL, "file_path": "setup.sh"}]),
                start_task_wait_for_success="on" if template.start_task_wait_for_success else "")

    response = admin_client.post(reverse("admin:portal_pooltemplate_change", args=[template.pk]), data)

    assert response.status_code == 302, response.content.decode()[:3000]
    event = AuditEvent.objects.get(action="pool_template.change")
    assert event.changes["start_task_resource_files"][1] == [
        {"http_url": "https://acct.blob.core.windows.net/inputs/frames.zip?[redacted]", "file_path": "setup.sh"}]
    assert "sig=" not in json.dumps(event.changes)
    assert event_hash(event) == event.hash
