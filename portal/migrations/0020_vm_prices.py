"""The price table (portal.models.costs.VmPrice), edited by Admins: the Admin role gets its permissions here, as
migration 0007 gave the others (tests/personas.py reads ROLE_ADDITIONS too)."""

import django.db.models.functions.text
from django.db import migrations, models

# Added to a role's permissions by this migration, on top of migration 0007's.
ROLE_ADDITIONS = {"Admin": ["portal.add_vmprice", "portal.change_vmprice", "portal.delete_vmprice",
                            "portal.view_vmprice"]}


def grant(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after all migrations ran; the group needs them now.
    config = apps.get_app_config("portal")
    config.models_module = True
    create_permissions(config, apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in ROLE_ADDITIONS.items():
        group = Group.objects.filter(name=name).first()
        if group is None:   # a database whose roles were removed: nothing to add to
            continue
        for dotted in codenames:
            app_label, codename = dotted.split(".")
            group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in ROLE_ADDITIONS.items():
        for group in Group.objects.filter(name=name):
            group.permissions.remove(*Permission.objects.filter(
                content_type__app_label="portal", codename__in=[dotted.split(".")[1] for dotted in codenames]))


class Migration(migrations.Migration):

    dependencies = [
        ('portal', '0019_waiting_reasons_mirror'),
        ('auth', '0012_alter_user_first_name_max_length'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        migrations.CreateModel(
            name='VmPrice',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('vm_size', models.CharField(help_text='Azure VM size as Azure writes it, e.g. Standard_D2s_v3 (compared without regard to case).', max_length=100)),
                ('region', models.CharField(blank=True, help_text='Azure region name, e.g. westeurope; empty: the price for any region.', max_length=50)),
                ('dedicated_per_hour', models.DecimalField(decimal_places=6, help_text='Price of one dedicated node for one hour.', max_digits=12)),
                ('spot_per_hour', models.DecimalField(blank=True, decimal_places=6, help_text='Price of one Spot (low-priority) node for one hour, if known.', max_digits=12, null=True)),
                ('currency', models.CharField(default='USD', help_text='ISO 4217 code, e.g. USD or EUR.', max_length=3)),
                ('taken_on', models.DateField(help_text='The date the prices were taken (from the price list or by hand).')),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
            options={
                'verbose_name': 'VM price',
                'ordering': ['vm_size', 'region'],
                'constraints': [models.UniqueConstraint(django.db.models.functions.text.Lower('vm_size'), models.F('region'), name='vmprice_unique_size_region')],
            },
        ),
        migrations.RunPython(grant, revoke),
    ]
