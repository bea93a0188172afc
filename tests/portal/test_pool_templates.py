"""Pool templates: the shipped template, validation of start-task files, the permission and the admin."""

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.urls import reverse

from portal.models import PoolTemplate

pytestmark = pytest.mark.django_db


def template(**overrides) -> PoolTemplate:
    fields = dict(name="t", vm_size="standard_d2s_v3", image_publisher="canonical",
                  image_offer="0001-com-ubuntu-server-jammy", image_sku="22_04-lts",
                  node_agent_sku_id="batch.node.ubuntu 22.04", start_task_command_line="/bin/true")
    return PoolTemplate(**(fields | overrides))


def test_the_migration_ships_a_small_linux_template():
    shipped = PoolTemplate.objects.get(name="Small Linux pool")

    assert (shipped.vm_size, shipped.default_dedicated_nodes, shipped.default_low_priority_nodes,
            shipped.task_slots_per_node, shipped.node_fill_type) == ("standard_d2s_v3", 2, 0, 2, "spread")
    assert (shipped.image_publisher, shipped.image_offer, shipped.image_sku, shipped.node_agent_sku_id) == (
        "canonical", "0001-com-ubuntu-server-jammy", "22_04-lts", "batch.node.ubuntu 22.04")
    assert "$AZ_BATCH_NODE_ID" in shipped.start_task_command_line
    assert shipped.start_task_wait_for_success
    assert shipped.created_at and shipped.updated_at
    shipped.full_clean()  # what the migration wrote passes the same checks as the admin's form


def test_the_manage_pools_permission_exists():
    permission = Permission.objects.get(codename="manage_pools", content_type__app_label="portal")

    assert permission.name == "Can create, resize and delete Batch pools"


def test_valid_resource_files_pass():
    template(start_task_resource_files=[
        {"http_url": "https://example.blob.core.windows.net/c/setup.sh?sv=1&sig=abc", "file_path": "setup.sh"},
        {"http_url": "http://127.0.0.1:10000/devstoreaccount1/c/data.txt", "file_path": "inputs/data.txt"},
    ]).full_clean()


@pytest.mark.parametrize("files, words", [
    ({"http_url": "https://x/a", "file_path": "a"}, "Give a list"),
    (["https://x/a"], "exactly"),
    ([{"http_url": "https://x/a"}], "exactly"),
    ([{"http_url": "https://x/a", "file_path": "a", "mode": "0755"}], "exactly"),
    ([{"http_url": "ftp://x/a", "file_path": "a"}], "https://"),
    ([{"http_url": "https://x/a", "file_path": "/etc/passwd"}], "relative path"),
    ([{"http_url": "https://x/a", "file_path": "../outside"}], "relative path"),
    ([{"http_url": "https://x/a", "file_path": "  "}], "relative path"),
])
def test_bad_resource_files_are_refused_with_what_to_fix(files, words):
    with pytest.raises(ValidationError) as caught:
        template(start_task_resource_files=files).full_clean()

    assert words in " ".join(caught.value.message_dict["start_task_resource_files"])


def test_resource_files_need_a_start_task_command_line():
    with pytest.raises(ValidationError) as caught:
        template(start_task_command_line="",
                 start_task_resource_files=[{"http_url": "https://x/a", "file_path": "a"}]).full_clean()

    assert "start_task_command_line" in caught.value.message_dict


@pytest.mark.parametrize("field, value", [("task_slots_per_node", 0), ("task_slots_per_node", 257),
                                          ("default_dedicated_nodes", 101), ("default_low_priority_nodes", 101)])
def test_sizes_out_of_range_are_refused(field, value):
    with pytest.raises(ValidationError) as caught:
        template(**{field: value}).full_clean()

    assert field in caught.value.message_dict


def test_display_of_resource_files_leaves_out_sas_tokens():
    shown = template(start_task_resource_files=[
        {"http_url": "https://acct.blob.core.windows.net/c/setup.sh?sv=2024&sig=SECRET", "file_path": "setup.sh"},
        {"http_url": "https://acct.blob.core.windows.net/c/plain.txt", "file_path": "plain.txt"},
    ]).resource_files_for_display()

    assert shown == [
        {"url": "https://acct.blob.core.windows.net/c/setup.sh", "has_query": True, "file_path": "setup.sh"},
        {"url": "https://acct.blob.core.windows.net/c/plain.txt", "has_query": False, "file_path": "plain.txt"},
    ]


def test_superuser_edits_templates_in_the_admin(admin_client):
    shipped = PoolTemplate.objects.get(name="Small Linux pool")

    listing = admin_client.get(reverse("admin:portal_pooltemplate_changelist"))
    change = admin_client.get(reverse("admin:portal_pooltemplate_change", args=[shipped.pk]))

    assert listing.status_code == 200 and b"Small Linux pool" in listing.content
    assert change.status_code == 200 and b"start_task_resource_files" in change.content
