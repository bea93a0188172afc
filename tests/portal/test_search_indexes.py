"""On PostgreSQL the substring searches of the job list and of a job's tasks can be served by the trigram indexes
of migration 0014: the index expressions are exactly what Django's `icontains` queries compare, which a planner
told not to scan the table proves by choosing them. (Whether it chooses them on its own is a question of size:
bench/pages_job_detail.py measures that at 1,000,000 tasks.)"""

import pytest
from django.db import connection
from django.db.models import Q

from portal.models import Job, Task
from tests.factories import JobFactory, TaskFactory

pytestmark = [pytest.mark.django_db,
              pytest.mark.skipif(connection.vendor != "postgresql", reason="pg_trgm indexes exist on PostgreSQL only")]


def plan_of(queryset) -> str:
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        # Neither a scan of the table nor a walk of another index in order: what is left is a bitmap of the
        # indexes that can answer the condition, if any can.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.parametrize("field, index", [("task_id", "portal_task_task_id_trgm"),
                                          ("display_name", "portal_task_display_name_trgm")])
def test_a_task_search_can_use_its_trigram_index(field, index):
    job = JobFactory()
    TaskFactory(job=job, task_id="render-0042", display_name="Frame 42")
    query = Task.objects.filter(**{f"{field}__icontains": "0042" if field == "task_id" else "rame 4"})
    assert index in plan_of(query)
    assert query.exists()


def test_the_search_of_both_fields_uses_both_indexes():
    # The job page adds its job to this; with a few rows the planner then rightly reads the job's index instead.
    TaskFactory(task_id="render-0042", display_name="Frame 42")
    plan = plan_of(Task.objects.filter(Q(task_id__icontains="0042") | Q(display_name__icontains="0042")).order_by())
    assert "portal_task_task_id_trgm" in plan and "portal_task_display_name_trgm" in plan


def test_the_job_list_search_can_use_its_trigram_indexes():
    JobFactory(job_id="nightly-render-7")
    plan = plan_of(Job.objects.filter(Q(job_id__icontains="render") | Q(display_name__icontains="render")).order_by())
    assert "portal_job_job_id_trgm" in plan and "portal_job_display_name_trgm" in plan
