"""Each attempt of a task, as the sync sees it: Batch reports only the current attempt (executionInfo's startTime,
retryCount, and once completed endTime and exitCode; nodeInfo), so the task pass hands the rows it just stored to
`record_attempts`, which keeps one TaskAttempt per attempt.

The only writer of TaskAttempt's mirror fields; the archiver (batchsync/archive.py) writes its output fields.
Runs under the task pass's lock on the job, so one writer per job at a time.

What follows from Batch's answers, and nothing more:
- a new `startTime` is a new attempt; a `retryCount` higher than the last attempt's means that attempt failed
  (Batch retries only after a non-zero exit code) and it ended before the next one started;
- retries the sync never saw running (an attempt that started and failed between two passes) are recorded with
  their number only;
- an earlier attempt's exit code and end time are never reported, so they stay empty;
- a new start with the same `retryCount` is Batch running the task again after a requeue (node removed, job
  disabled) or a reactivation: the earlier run is recorded without a result."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from portal.models import Task, TaskAttempt, TaskResult, TaskState

LOOKUP_CHUNK = 500
# The fields a later pass may change on an attempt already stored.
_UPDATED = ["end_time", "exit_code", "result", "node_id", "pool_id", "retry_count", "last_synced_at"]


def record_attempts(job_pk: int, rows: list[Task]) -> int:
    """Record the attempts `rows` (task rows of one job just upserted by the task pass) show; returns how many
    attempt rows were written. Idempotent: a row seen again, or an older answer, changes nothing."""
    ran: dict[str, Task] = {}
    for row in rows:
        kept = ran.get(row.task_id)
        # A listing can repeat a task; the newest answer counts.
        if row.start_time is not None and (kept is None or (row.start_time, row.retry_count) >= (
                kept.start_time, kept.retry_count)):
            ran[row.task_id] = row
    if not ran:
        return 0
    pks: dict[str, int] = {}
    stored: dict[int, list[TaskAttempt]] = defaultdict(list)
    ids = list(ran)
    # Some SQLite builds allow only 999 parameters per statement; the task pass hands over up to 2,000 rows.
    for start in range(0, len(ids), LOOKUP_CHUNK):
        found = dict(Task.objects.filter(job_id=job_pk, task_id__in=ids[start:start + LOOKUP_CHUNK])
                     .values_list("task_id", "pk"))
        pks.update(found)
        for attempt in TaskAttempt.objects.filter(task_id__in=list(found.values())).order_by("task_id", "number"):
            stored[attempt.task_id].append(attempt)
    now = timezone.now()
    creates: list[TaskAttempt] = []
    updates: list[TaskAttempt] = []
    for task_id, row in ran.items():
        pk = pks.get(task_id)
        if pk is not None:
            _attempts_of(pk, row, stored[pk], now, creates, updates)
    with transaction.atomic():
        if updates:
            TaskAttempt.objects.bulk_update(updates, _UPDATED, batch_size=500)
        if creates:
            TaskAttempt.objects.bulk_create(creates, batch_size=500, ignore_conflicts=True)
    return len(creates) + len(updates)


def _attempts_of(task_pk: int, row: Task, attempts: list[TaskAttempt], now: datetime,
                 creates: list[TaskAttempt], updates: list[TaskAttempt]) -> None:
    """What one task row adds to its attempts (`attempts`, in order): updates to the last, or new ones."""
    last = attempts[-1] if attempts else None
    start, retries = row.start_time, row.retry_count
    assert start is not None
    if last is not None and last.start_time is not None and start < last.start_time:
        return                                   # an older answer than the one already recorded
    if last is not None and last.start_time == start:
        if retries < last.retry_count:
            return                               # older news, or a reactivation that has not started again
        if _update_current(last, row, now):
            updates.append(last)
        return
    # A start not seen before: a new attempt. The one before it has ended.
    number = last.number if last else 0
    if last is not None and not last.result and retries > last.retry_count:
        last.result, last.last_synced_at = TaskResult.FAILURE, now
        updates.append(last)
    first_unseen = 0 if last is None else (last.retry_count + 1 if retries > last.retry_count else retries)
    for retry in range(first_unseen, retries):
        # Retries that started and failed between two passes: only their number and outcome are known.
        number += 1
        creates.append(TaskAttempt(task_id=task_pk, number=number, retry_count=retry, result=TaskResult.FAILURE,
                                   last_synced_at=now))
    current = TaskAttempt(task_id=task_pk, number=number + 1, retry_count=retries, start_time=start,
                          last_synced_at=now)
    _update_current(current, row, now)
    creates.append(current)


def _update_current(attempt: TaskAttempt, row: Task, now: datetime) -> bool:
    """Bring the attempt Batch reports as current up to date with `row`; whether anything changed."""
    before = (attempt.end_time, attempt.exit_code, attempt.result, attempt.node_id, attempt.pool_id,
              attempt.retry_count)
    if row.retry_count > attempt.retry_count:
        # Retried since: this attempt failed; the next one has not started yet (its start would be new).
        attempt.result = TaskResult.FAILURE
    elif row.state == TaskState.COMPLETED:
        attempt.end_time, attempt.exit_code = row.end_time, row.exit_code
        attempt.result = row.result if row.result in TaskResult.values else ""
    if row.node_id and row.retry_count == attempt.retry_count:
        attempt.node_id, attempt.pool_id = row.node_id, row.pool_id
    changed = before != (attempt.end_time, attempt.exit_code, attempt.result, attempt.node_id, attempt.pool_id,
                         attempt.retry_count)
    if changed:
        attempt.last_synced_at = now
    return changed
