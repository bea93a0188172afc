"""The mirror's rule, "never back in time; at the same time only a change counts", is written twice: in SQL where the
sync writes (upsert_newer, checked by the database as it writes) and in Python where a reconcile compares before it
lists (_should_write). These tests hold the two to the same answer for every case, on the database the suite runs
on (SQLite locally, PostgreSQL in CI)."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from batchsync.sync.mirror import _should_write
from batchsync.sync.rows import POOL_FIELDS, TASK_COMPARE, TASK_FIELDS
from batchsync.sync.upsert import upsert_newer
from portal.models import BatchAccount, Job, Pool, Task

pytestmark = pytest.mark.django_db

T = datetime(2026, 3, 1, 12, 0, 0, 500_000, tzinfo=UTC)
TIMES = [None, T - timedelta(seconds=1), T, T + timedelta(microseconds=1)]
GONE = [None, T - timedelta(minutes=1)]
CONSTRAINTS = [(None, None), (3600.0, 2), (3600.0, 3)]


@pytest.fixture
def job():
    account = BatchAccount.objects.create(name="rule", account_url="http://127.0.0.1:1", account_name="rule",
                                          key_env_var="RULE_KEY")
    return Job.objects.create(account=account, job_id="job-1", state="active")


def task(job, number, time, constraints, state, gone=None):
    wall_clock, retries = constraints
    return Task(job_id=job.pk, task_id=f"task-{number:04d}", state=state, state_transition_time=time,
                max_wall_clock_seconds=wall_clock, max_task_retry_count=retries, gone_at=gone, depends_on={},
                dependency_action="", environment=[])


def test_a_task_is_written_exactly_when_the_python_rule_says_so(job):
    cases = list(itertools.product(TIMES, GONE, CONSTRAINTS, TIMES, CONSTRAINTS))
    stored_rows = [task(job, n, time, constraints, "active", gone)
                   for n, (time, gone, constraints, _, _) in enumerate(cases)]
    Task.objects.bulk_create(stored_rows)
    incoming = [task(job, n, time, constraints, "completed") for n, (*_, time, constraints) in enumerate(cases)]

    written = upsert_newer(Task, ("job", "task_id"), incoming, TASK_FIELDS, TASK_COMPARE)

    expected = {(job.pk, row.task_id)
                for row, (stored_time, gone, constraints, _, _) in zip(incoming, cases, strict=True)
                if _should_write(row, (stored_time, gone, *constraints), TASK_COMPARE)}
    assert written == expected
    assert 0 < len(expected) < len(cases), "the grid holds cases of both kinds"
    states = dict(Task.objects.filter(job=job).values_list("task_id", "state"))
    assert {task_id for task_id, state in states.items() if state == "completed"} == {key for _, key in expected}
    revived = Task.objects.filter(job=job, state="completed", gone_at__isnull=False)
    assert not revived.exists(), "a row written is live again"


def test_new_rows_are_inserted_and_reported(job):
    rows = [task(job, n, T, (None, None), "active") for n in range(3)]

    written = upsert_newer(Task, ("job", "task_id"), rows, TASK_FIELDS, TASK_COMPARE)

    assert written == {(job.pk, f"task-{n:04d}") for n in range(3)}
    assert Task.objects.filter(job=job).count() == 3


@pytest.mark.parametrize(("stored_time", "incoming_time", "written"), [
    (T, T - timedelta(seconds=1), False), (T, T, True), (T, T + timedelta(seconds=1), True), (None, None, True),
    (T, None, False)])
def test_without_compared_fields_the_same_time_is_written_again(job, stored_time, incoming_time, written):
    Pool.objects.create(account=job.account, pool_id="pool-1", state="active", state_transition_time=stored_time,
                        vm_size="old")
    incoming = Pool(account_id=job.account.pk, pool_id="pool-1", state="active", allocation_state="steady",
                    state_transition_time=incoming_time, vm_size="new", enable_auto_scale=False, auto_scale_error="",
                    resize_error_code="", resize_error_message="")

    keys = upsert_newer(Pool, ("account", "pool_id"), [incoming], POOL_FIELDS, ())

    assert keys == ({(job.account.pk, "pool-1")} if written else set())
    assert Pool.objects.get(pool_id="pool-1").vm_size == ("new" if written else "old")
    assert _should_write(incoming, (stored_time, None), ()) is written
