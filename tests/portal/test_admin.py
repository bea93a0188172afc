"""The admin of the Batch mirror: every model can be listed, searched and viewed, and none changed (Batch
accounts, which Admins do edit, are in test_accounts_admin.py)."""

import pytest
from django.urls import reverse

from portal.models import BatchAccount, Job, Node, Pool, Task

pytestmark = pytest.mark.django_db


@pytest.fixture
def mirror():
    account = BatchAccount.objects.create(name="default", account_url="http://127.0.0.1:8089",
                                          account_name="localbatch", is_default=True)
    pool = Pool.objects.create(account=account, pool_id="render-pool", state="active")
    node = Node.objects.create(pool=pool, node_id="tvmps_0001", state="idle")
    job = Job.objects.create(account=account, job_id="frames-2026", state="active", pool_id="render-pool")
    task = Task.objects.create(job=job, task_id="frame-00042", state="completed", exit_code=1, result="failure")
    return {"batchaccount": account, "pool": pool, "node": node, "job": job, "task": task}


@pytest.fixture
def staff(admin_client):
    return admin_client   # a superuser: every permission the admin could grant


MODELS = ["batchaccount", "pool", "node", "job", "task"]
BATCH_ID = {"batchaccount": "name", "pool": "pool_id", "node": "node_id", "job": "job_id", "task": "task_id"}


@pytest.mark.parametrize("model", MODELS)
def test_each_model_lists_and_shows_its_rows(staff, mirror, model):
    row = mirror[model]
    batch_id = getattr(row, BATCH_ID[model])

    listing = staff.get(reverse(f"admin:portal_{model}_changelist"))
    detail = staff.get(reverse(f"admin:portal_{model}_change", args=[row.pk]))

    assert listing.status_code == 200 and batch_id in listing.content.decode()
    assert detail.status_code == 200 and batch_id in detail.content.decode()
    if model != "batchaccount":
        assert b'type="submit"' not in detail.content.split(b'id="content-main"')[1], "no save button"


@pytest.mark.parametrize("model", [model for model in MODELS if model != "batchaccount"])
def test_nothing_can_be_added_changed_or_deleted(staff, mirror, model):
    row = mirror[model]

    assert staff.get(reverse(f"admin:portal_{model}_add")).status_code == 403
    assert staff.post(reverse(f"admin:portal_{model}_delete", args=[row.pk]), {"post": "yes"}).status_code == 403
    staff.post(reverse(f"admin:portal_{model}_change", args=[row.pk]), {"state": "unknown", "name": "changed"})
    row.refresh_from_db()
    assert str(row) == str(mirror[model])
    assert type(row).objects.filter(pk=row.pk).exists()


def test_tasks_are_found_by_id_and_filtered_by_state_and_gone(staff, mirror):
    Task.objects.create(job=mirror["job"], task_id="frame-00043", state="active")
    url = reverse("admin:portal_task_changelist")

    found = staff.get(url, {"q": "00042"}).content.decode()
    active = staff.get(url, {"state__exact": "active"}).content.decode()
    gone = staff.get(url, {"gone": "yes"}).content.decode()

    assert "frame-00042" in found and "frame-00043" not in found
    assert "frame-00043" in active and "frame-00042" not in active
    assert "frame-0004" not in gone


def test_anonymous_is_sent_to_log_in(client, mirror):
    response = client.get(reverse("admin:portal_task_changelist"))

    assert response.status_code == 302 and "/login/" in response["Location"]
