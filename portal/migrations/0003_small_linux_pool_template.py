"""Ships one pool template that works out of the box, on localbatch and on a real Batch account."""

from django.db import migrations

NAME = "Small Linux pool"


def add_template(apps, schema_editor):
    PoolTemplate = apps.get_model("portal", "PoolTemplate")
    # get_or_create: an admin may have made a template of this name before migrating; leave theirs alone.
    PoolTemplate.objects.get_or_create(name=NAME, defaults=dict(
        description="Two Ubuntu 22.04 nodes with two task slots each; the start task prints the node's id.",
        vm_size="standard_d2s_v3",
        # Ubuntu 22.04 as Batch lists it in its supported images (verified, with this node agent).
        image_publisher="canonical",
        image_offer="0001-com-ubuntu-server-jammy",
        image_sku="22_04-lts",
        image_version="latest",
        node_agent_sku_id="batch.node.ubuntu 22.04",
        default_dedicated_nodes=2,
        default_low_priority_nodes=0,
        task_slots_per_node=2,
        node_fill_type="spread",
        # Batch runs a command line without a shell, so the shell is explicit for the variable to expand.
        start_task_command_line='/bin/bash -c "echo Start task ran on node $AZ_BATCH_NODE_ID"',
        start_task_resource_files=[],
        start_task_wait_for_success=True,
    ))


def remove_template(apps, schema_editor):
    apps.get_model("portal", "PoolTemplate").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("portal", "0002_pooltemplate"),
    ]

    operations = [
        migrations.RunPython(add_template, remove_template),
    ]
