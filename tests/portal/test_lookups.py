"""CompiledGet (portal/lookups.py) answers exactly as QuerySet.get: the same field values, the same rows selected
along (without another query), the same DoesNotExist; in any thread."""

import threading
from datetime import UTC, datetime

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from portal.lookups import CompiledGet
from portal.models import Job, Task
from tests.factories import JobFactory, TaskFactory, UserFactory

pytestmark = pytest.mark.django_db


def values(obj) -> dict:
    return {field.attname: getattr(obj, field.attname) for field in obj._meta.concrete_fields}


@pytest.fixture
def task():
    job = JobFactory(submitted_by=UserFactory(), state_transition_time=datetime(2026, 12, 7, 9, 30, tzinfo=UTC))
    return TaskFactory(job=job, exit_code=3, environment=[{"name": "A", "value": "1"}],
                       depends_on={"taskIds": ["t0"]}, end_time=datetime(2026, 12, 7, 10, 0, tzinfo=UTC))


def test_a_task_with_its_job_and_account_is_what_queryset_get_gives(task):
    queryset = Task.objects.select_related("job", "job__account")
    expected = queryset.get(pk=task.pk)
    with CaptureQueriesContext(connection) as queries:
        found = CompiledGet(queryset).get(pk=task.pk)
        assert values(found) == values(expected)
        assert values(found.job) == values(expected.job)
        assert values(found.job.account) == values(expected.job.account)
    assert len(queries) == 1      # the job and account came with the task
    assert found.environment == [{"name": "A", "value": "1"}] and found.depends_on == {"taskIds": ["t0"]}
    assert found._state.db == "default" and not found._state.adding


def test_a_job_with_its_submitter_is_what_queryset_get_gives(task):
    queryset = Job.objects.select_related("account", "submitted_by")
    expected = queryset.get(pk=task.job_id)
    lookup = CompiledGet(queryset)
    for _ in range(2):    # compiled once, run twice
        found = lookup.get(pk=task.job_id)
        assert values(found) == values(expected)
        assert values(found.submitted_by) == values(expected.submitted_by)
        assert found.account.name == expected.account.name


def test_a_missing_row_raises_the_models_does_not_exist(task):
    lookup = CompiledGet(Task.objects.select_related("job"))
    with pytest.raises(Task.DoesNotExist):
        lookup.get(pk=task.pk + 1000)


def test_a_queryset_with_parameters_of_its_own_is_refused(task):
    with pytest.raises(ImproperlyConfigured, match="without parameters of its own"):
        CompiledGet(Task.objects.filter(exit_code=3)).get(pk=task.pk)


@pytest.mark.django_db(transaction=True)
def test_each_thread_runs_on_its_own_connection(task):
    """A query compiled in one thread answers in another, through that thread's own connection."""
    lookup = CompiledGet(Task.objects.select_related("job"))
    assert lookup.get(pk=task.pk).job_id == task.job_id
    answers: list[object] = []

    def in_another_thread() -> None:
        try:
            answers.append(lookup.get(pk=task.pk))
        except Exception as exc:  # noqa: BLE001 - the test reports it
            answers.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=in_another_thread)
    thread.start()
    thread.join()
    assert isinstance(answers[0], Task) and answers[0].job_id == task.job_id, answers
