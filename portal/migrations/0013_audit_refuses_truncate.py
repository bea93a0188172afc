"""On PostgreSQL, TRUNCATE of the audit history is refused too (0007's row triggers cover UPDATE and DELETE only).

TRUNCATE fires no row triggers, and the table's owner may run it; this statement trigger refuses it to every role
but a superuser. A superuser could switch any trigger off anyway, and is what Django's test runner flushes the test
database as; the portal's own roles never are (README, "Run it in production")."""

from django.db import migrations

TRUNCATE_GUARD = """
CREATE OR REPLACE FUNCTION portal_audit_no_truncate() RETURNS trigger AS $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit history is append-only: TRUNCATE on portal_auditevent refused';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER portal_auditevent_no_truncate
    BEFORE TRUNCATE ON portal_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION portal_audit_no_truncate();
"""
TRUNCATE_GUARD_REMOVE = """
DROP TRIGGER IF EXISTS portal_auditevent_no_truncate ON portal_auditevent;
DROP FUNCTION IF EXISTS portal_audit_no_truncate();
"""


def guard(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TRUNCATE_GUARD)


def unguard(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TRUNCATE_GUARD_REMOVE)


class Migration(migrations.Migration):
    dependencies = [("portal", "0012_submission_retry_of")]

    operations = [migrations.RunPython(guard, unguard)]
