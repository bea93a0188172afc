"""The four roles as groups, and, on PostgreSQL, a trigger that refuses to change or remove audit rows.

Roles build on each other: a Submitter can do what a Viewer can, and so on. What each permission allows is
decided in portal/access.py; the groups only bundle them. Changing a role's permissions later is a new migration,
so every installation agrees on what a role means."""

from django.db import migrations

VIEWER = [
    "portal.view_pool", "portal.view_node", "portal.view_job", "portal.view_task", "portal.view_submission",
    "portal.view_jobtemplate",
]
SUBMITTER = VIEWER + ["portal.submit"]
OPERATOR = SUBMITTER + ["portal.operate_team_work", "portal.manage_pools", "portal.view_auditevent"]
ADMIN = OPERATOR + [
    "portal.write_command_lines",
    "portal.add_jobtemplate", "portal.change_jobtemplate",
    "portal.add_jobtemplateversion", "portal.change_jobtemplateversion", "portal.view_jobtemplateversion",
    "portal.add_pooltemplate", "portal.change_pooltemplate", "portal.view_pooltemplate",
    "portal.add_batchaccount", "portal.change_batchaccount", "portal.view_batchaccount",
    "portal.add_team", "portal.change_team", "portal.view_team",
    "auth.add_user", "auth.change_user", "auth.view_user", "auth.view_group",
]
ROLES = {"Viewer": VIEWER, "Submitter": SUBMITTER, "Operator": OPERATOR, "Admin": ADMIN}

# Row triggers only: Django's test database flush uses TRUNCATE, which needs the table's owner anyway; the app's
# database user should not own the tables in production (see README, "Audit history").
AUDIT_GUARD = """
CREATE OR REPLACE FUNCTION portal_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit history is append-only: %% on portal_auditevent refused', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER portal_auditevent_append_only
    BEFORE UPDATE OR DELETE ON portal_auditevent
    FOR EACH ROW EXECUTE FUNCTION portal_audit_append_only();
"""
AUDIT_GUARD_REMOVE = """
DROP TRIGGER IF EXISTS portal_auditevent_append_only ON portal_auditevent;
DROP FUNCTION IF EXISTS portal_audit_append_only();
"""


def create_roles(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after all migrations ran; the groups need them now.
    for label in ("auth", "portal"):
        config = apps.get_app_config(label)
        config.models_module = True
        create_permissions(config, apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = []
        for dotted in codenames:
            app_label, codename = dotted.split(".")
            wanted.append(Permission.objects.get(content_type__app_label=app_label, codename=codename))
        group.permissions.set(wanted)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


def guard_audit(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(AUDIT_GUARD)


def unguard_audit(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(AUDIT_GUARD_REMOVE)


class Migration(migrations.Migration):

    dependencies = [
        ("portal", "0006_teams_audit"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(create_roles, remove_roles),
        migrations.RunPython(guard_audit, unguard_audit),
    ]
