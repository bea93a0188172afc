"""On PostgreSQL, trigram indexes (pg_trgm) that serve the substring searches of the job list and a job's tasks.

The searches are Django's `icontains`, which PostgreSQL runs as `UPPER(column::text) LIKE UPPER('%…%')`; without an
index that is a scan of every task of the job (70–86 ms at 100,000 tasks, growing with the job). A GIN index of
trigrams on exactly that expression lets the database find the matching rows for patterns of three characters or
more. Built CONCURRENTLY (so not in a transaction), so adding them to a big installation does not stop the sync.
SQLite keeps scanning, as before."""

from django.db import migrations

INDEXES = [
    ("portal_task_task_id_trgm", "portal_task", "task_id"),
    ("portal_task_display_name_trgm", "portal_task", "display_name"),
    ("portal_job_job_id_trgm", "portal_job", "job_id"),
    ("portal_job_display_name_trgm", "portal_job", "display_name"),
]


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, table, column in INDEXES:
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} "
                              f"USING gin ((UPPER({column}::text)) gin_trgm_ops)")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _, _ in INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("portal", "0013_audit_refuses_truncate")]

    operations = [migrations.RunPython(create, drop)]
