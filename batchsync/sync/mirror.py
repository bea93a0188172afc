"""Batch → database: the only writer of the mirror's Batch fields (pools, nodes, jobs, tasks): records turned into
rows and upserted (through batchsync.sync.upsert), and the task pass of one job.

Every write is an upsert keyed on Batch ids that never replaces a newer state with an older one, so
any pass may run twice, overlap another, or stop half-way and be run again."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from portal.models import BatchAccount, Job, Node, Pool, Task, TaskDependency

from .. import locks
from ..attempts import record_attempts
from ..gateway import BatchGateway, JobRecord, NodeRecord, NotFound, PoolRecord, TaskCountsRecord, TaskRecord
from . import memory
from .common import DEFAULT_RETRY, RetryPolicy, SyncStats, chunks, gateway_or_own, read_ahead, retrying
from .rows import (
    JOB_COMPARE,
    JOB_FIELDS,
    NODE_FIELDS,
    POOL_FIELDS,
    TASK_COMPARE,
    TASK_FIELDS,
    job_row,
    node_row,
    pool_row,
    task_row,
    task_version,
)
from .upsert import Row, upsert_newer

log = logging.getLogger("batchsync.sync")

# A difference between this machine's clock and Batch's: the jobs listing's watermark allows for it, and so does a
# task watermark when Batch sent no Date to anchor it on.
SKEW = timedelta(minutes=5)
# Incremental task passes ask for tasks changed since the watermark (Batch's clock at the previous listing) minus
# OVERLAP: a change Batch shows in its lists later than its stateTransitionTime says. Short, so a busy job's recent
# history is not listed again on every pass; what slips through anyway is caught by the periodic full reconcile.
OVERLAP = timedelta(seconds=15)
TASK_LOCK_TTL = 900
# Rows per upsert transaction: large enough to amortise round trips, small enough to keep each
# transaction short for the readers of the same table.
UPSERT_BATCH = 2000
# The job's tasks keep being synced this long after the job completed, for late-visible final states.
AFTER_COMPLETION = SKEW
# A full pass waits this long for an incremental pass holding the same lock, rather than skipping: both
# are scheduled on round seconds, so a skipping reconcile could lose to the incremental every time.
FULL_PASS_WAITS = 120.0

T = TypeVar("T")


# --- tasks ---------------------------------------------------------------------------------------

def sync_job_tasks(job: Job, *, gateway: BatchGateway | None = None, retry: RetryPolicy = DEFAULT_RETRY,
                   page_size: int = 1000) -> SyncStats:
    """The job's tasks changed since its watermark (minus OVERLAP), upserted; then the watermark moves on.

    The watermark moves only after the whole listing was stored, so a pass that stops half-way leaves
    it where it was and the next pass fetches the same changes again."""
    return _sync_tasks(job, full=False, gateway=gateway, retry=retry, page_size=page_size)


def reconcile_job_tasks(job: Job, *, gateway: BatchGateway | None = None, retry: RetryPolicy = DEFAULT_RETRY,
                        page_size: int = 1000) -> SyncStats:
    """Every task of the job, upserted; tasks Batch no longer lists are marked gone."""
    return _sync_tasks(job, full=True, gateway=gateway, retry=retry, page_size=page_size)


def _sync_tasks(job: Job, *, full: bool, gateway: BatchGateway | None, retry: RetryPolicy,
                page_size: int) -> SyncStats:
    stats = SyncStats()
    with locks.hold(task_lock_name(job), ttl=TASK_LOCK_TTL, wait=FULL_PASS_WAITS if full else 0) as acquired:
        if not acquired:
            stats.busy.append(f"tasks of job {job.job_id}")
            return stats
        write = TaskWrite.begin(job, full=full)
        if write is None:
            return stats
        with gateway_or_own(job.account, gateway) as gw:
            try:
                retrying(lambda: _task_pass(write, gw, page_size),
                         f"{'reconcile' if full else 'sync'} tasks of job {job.job_id}", retry)
            except NotFound:
                stats.gone += mark_job_gone(job)
                return stats
        stats += write.finish()
    return stats


def task_lock_name(job: Job) -> str:
    """The lock a job's task pass holds: one pass per job at a time, whoever runs it."""
    return f"job:{job.pk}:tasks"


def _task_pass(write: TaskWrite, gw: BatchGateway, page_size: int) -> None:
    """List and store, from the start (a retry lists again; the upserts skip what was stored)."""
    write.restart()
    job_id = write.job.job_id
    if write.full:
        # A reconcile reads what tells whether each task changed, and then only the changed tasks in full.
        versions = gw.list_tasks(job_id, page_size=page_size, versions_only=True)
        for batch in read_ahead(chunks(versions, UPSERT_BATCH)):
            write.compare(batch)
        write.server_time = getattr(versions, "server_time", None)
        if not write.stale:
            return
    listing = gw.list_tasks(job_id, changed_since=write.listing_since(), page_size=page_size)
    # Batch's next pages are fetched and parsed while the database stores the previous ones.
    for batch in read_ahead(chunks(listing, UPSERT_BATCH)):
        write.write(batch)
    if not write.full:
        write.server_time = getattr(listing, "server_time", None)


class TaskWrite:
    """One task pass of one job on the writing side: what is listed is handed to `write` in batches, on the thread
    that owns the database connection, and `finish` moves the job's watermark once everything was stored. The
    caller holds the job's task lock from `begin` to `finish`.

    A pass over many jobs hands them over together instead (`begin_many`, `write_many`, `finish_many`): a few
    statements for all of them rather than a few for each, the per-job cost that bounded a pass over hundreds.

    What a pass listed within OVERLAP of its watermark, it remembers (in the cache, for the pass that starts from
    that watermark): the next incremental listing returns those tasks again, and the ones at the same version are
    skipped without a write. The mirror never goes back in time, so "stored at this version or newer" stays true; a
    pass that finds the watermark moved by someone else finds nothing remembered and writes what it lists (the upsert
    keeps what is as new)."""

    def __init__(self, job: Job, *, full: bool, since: datetime | None, check_existing: bool = True,
                 known: dict[str, tuple] | None = None):
        self.job, self.full, self.since = job, full, since
        # A job without rows yet (its first pass) has nothing for a reconcile to compare with.
        self.check_existing = check_existing
        # Tasks the mirror holds at this version or newer (task id → TASK_VERSION of the record): remembered from
        # the pass that set the watermark this one starts from.
        self.known = known or {}
        self.server_time: datetime | None = None
        self.restart()

    @classmethod
    def begin(cls, job: Job, *, full: bool) -> TaskWrite | None:
        """The pass of `job` (None if the job is gone): every task with `full`, else those changed since its
        watermark minus OVERLAP."""
        return cls.begin_many([job], full=full)[job.pk]

    @classmethod
    def begin_many(cls, jobs: list[Job], *, full: bool) -> dict[int, TaskWrite | None]:
        """`begin` for each job (keyed by pk), in one query and one cache read."""
        # The caller's copies may be stale (queued tasks load them early); the lock holder's view counts.
        states = {pk: (watermark, gone, has_tasks) for pk, watermark, gone, has_tasks in (
            Job.objects.filter(pk__in=[job.pk for job in jobs])
            .annotate(has_tasks=Exists(Task.objects.filter(job_id=OuterRef("pk"))))
            .values_list("pk", "task_watermark_at", "gone_at", "has_tasks"))}
        live = {job.pk: job for job in jobs if job.pk in states and states[job.pk][1] is None}
        for job in live.values():
            job.task_watermark_at = states[job.pk][0]
        memories = {} if full else memory.recall(list(live.values()))
        writes: dict[int, TaskWrite | None] = {job.pk: None for job in jobs}
        for pk, job in live.items():
            watermark, _, has_tasks = states[pk]
            since = None if full or watermark is None else watermark - OVERLAP
            writes[pk] = cls(job, full=full, since=since, check_existing=has_tasks,
                             known=memories[pk].versions if pk in memories else None)
        return writes

    def restart(self) -> None:
        """Forget what was listed: the listing starts again from its beginning."""
        self.started_at = timezone.now()
        self.listed = self.written = 0
        self.seen: set[str] = set()
        # What this pass listed recently enough to be listed again by the next one, at which version.
        self.versions: dict[str, tuple] = {}
        # A reconcile's tasks that the mirror lacks or holds an older version of, and the oldest of their changes.
        self.stale: set[str] = set()
        self.stale_since: datetime | None = None
        self.stale_undated = False

    def compare(self, records: list[TaskRecord]) -> None:
        """A reconcile's first phase: note which of these tasks (versions only) the mirror lacks, holds as gone, or
        holds an older state or other constraints of."""
        self.listed += len(records)
        self.seen.update(record.id for record in records)
        if not self.check_existing:
            stored: dict[str, tuple] = {}
        else:
            stored = _stored(Task, "job", self.job.pk, "task_id", [record.id for record in records], TASK_COMPARE)
        now = timezone.now()
        for record in records:
            if _should_write(task_row(self.job, record, now), stored.get(record.id), TASK_COMPARE):
                self.stale.add(record.id)
                changed = record.state_transition_time
                if changed is None:
                    self.stale_undated = True
                elif self.stale_since is None or changed < self.stale_since:
                    self.stale_since = changed

    def listing_since(self) -> datetime | None:
        """Where the listing of whole tasks starts: after a reconcile's comparison, at the oldest stale change."""
        if not self.full:
            return self.since
        return None if self.stale_undated else self.stale_since

    def write(self, records: list[TaskRecord]) -> None:
        TaskWrite.write_many([(self, records)])

    def _rows(self, records: list[TaskRecord], now: datetime) -> list[Task]:
        """The rows to store of `records`: all but those remembered at the same version."""
        self.listed += len(records)
        self.seen.update(record.id for record in records)
        # Only what the next listing (since this one's watermark minus OVERLAP) can return again is remembered;
        # our clock minus SKEW stands in for Batch's here, and the exact cut is made in `finish`.
        recent = self.started_at - SKEW - OVERLAP
        rows = []
        for record in records:
            version = task_version(record)
            if record.state_transition_time is not None and record.state_transition_time >= recent:
                self.versions[record.id] = version
            if self.known.get(record.id) != version:
                rows.append(task_row(self.job, record, now))
        return rows

    @staticmethod
    def write_many(parts: list[tuple[TaskWrite, list[TaskRecord]]]) -> None:
        """Store what several passes listed (a pass may appear more than once), in one transaction per
        UPSERT_BATCH rows."""
        now = timezone.now()
        rows: list[tuple[TaskWrite, Task]] = [(write, row) for write, records in parts
                                              for row in write._rows(records, now)]
        # One statement may not touch a row twice (PostgreSQL refuses), and a listing can repeat a task.
        newest: dict[tuple[int, str], tuple[TaskWrite, Task]] = {}
        for write, row in rows:
            kept = newest.get((row.job_id, row.task_id))
            if kept is None or _newer_or_same(row.state_transition_time, kept[1].state_transition_time):
                newest[(row.job_id, row.task_id)] = (write, row)
        for batch in chunks(list(newest.values()), UPSERT_BATCH):
            _store_task_rows(batch)

    def finish(self) -> SyncStats:
        """After the whole listing was stored: mark what Batch no longer lists gone (`full`), move the watermark."""
        return TaskWrite.finish_many([self])

    @staticmethod
    def finish_many(writes: list[TaskWrite]) -> SyncStats:
        """`finish` for each of `writes` (jobs of the same pass), in a few statements for all of them."""
        stats = SyncStats()
        if not writes:
            return stats
        now = timezone.now()
        marks: dict[int, datetime] = {}
        for write in writes:
            done = SyncStats(tasks_listed=write.listed, tasks=write.written)
            if write.full:
                done.gone += _mark_tasks_gone(write.job, write.seen, now)
            # Batch's own clock when it answered the first page: every change it had not shown by then carries a
            # later stateTransitionTime (or one within OVERLAP, for a change Batch lists late), so the next pass
            # starts there. Our clock is a fallback only, minus SKEW for the difference between the two clocks.
            marks[write.job.pk] = write.server_time or write.started_at - SKEW + OVERLAP
            log.log(logging.INFO if done.tasks or done.gone else logging.DEBUG,
                    "job %s tasks %s: listed %d, wrote %d, gone %d", write.job.job_id,
                    "reconciled" if write.full else "synced", done.tasks_listed, done.tasks, done.gone)
            stats += done
        for batch in chunks(list(marks), 500):
            Job.objects.filter(pk__in=batch).update(tasks_synced_at=now)
        # It only moves forward, whoever else moved it meanwhile. Batch's clock has whole seconds: the jobs of one
        # pass share a few watermarks, one statement each.
        by_mark: dict[datetime, list[int]] = {}
        for pk, mark in marks.items():
            by_mark.setdefault(mark, []).append(pk)
        for mark, pks in by_mark.items():
            for batch in chunks(pks, 500):
                Job.objects.filter(Q(task_watermark_at__isnull=True) | Q(task_watermark_at__lt=mark),
                                   pk__in=batch).update(task_watermark_at=mark)
        _remember(writes, marks)
        return stats


def _remember(writes: list[TaskWrite], marks: dict[int, datetime]) -> None:
    """What each (incremental) pass listed within OVERLAP of the watermark it set, for the pass starting there."""
    kept = {}
    for write in writes:
        if write.full:
            continue   # a reconcile's versions are compared, not all stored: the next pass writes them
        cut = marks[write.job.pk] - OVERLAP
        recent = {task_id: version for task_id, version in write.versions.items() if version[0] >= cut}
        kept[memory.key(write.job, marks[write.job.pk])] = memory.Memory(wrote=write.written > 0, versions=recent)
    memory.keep(kept)


def _store_task_rows(batch: list[tuple[TaskWrite, Task]]) -> None:
    """The one place task rows are written (every pass, incremental or full, of one job or many): upserted unless
    the mirror holds the same or a newer state, in one transaction; counted on each pass's `written`."""
    if not batch:
        return
    with transaction.atomic():
        written = upsert_newer(Task, ("job", "task_id"), [row for _, row in batch], TASK_FIELDS, TASK_COMPARE)
    for write, row in batch:
        if (row.job_id, row.task_id) in written:
            write.written += 1
    rows = [row for _, row in batch]
    _store_dependency_edges(rows)
    by_job: dict[int, list[Task]] = {}
    for row in rows:
        by_job.setdefault(row.job_id, []).append(row)
    for job_pk, job_rows in by_job.items():
        record_attempts(job_pk, job_rows)       # each attempt, before a retry replaces what Batch reports


def _store_dependency_edges(rows: list[Task]) -> None:
    """Each task's dependsOn the other way round (TaskDependency), for "needed by": Batch never changes a task's
    dependencies, so an edge already stored is left as it is."""
    edges = [TaskDependency(job_id=row.job_id, task_id=row.task_id, parent_task_id=parent[:64])
             for row in rows if row.depends_on for parent in row.depends_on.get("taskIds", ())]
    edges += [TaskDependency(job_id=row.job_id, task_id=row.task_id, range_start=start, range_end=end)
              for row in rows if row.depends_on for start, end in row.depends_on.get("taskIdRanges", ())]
    for batch in chunks(edges, UPSERT_BATCH):
        TaskDependency.objects.bulk_create(batch, ignore_conflicts=True)


# --- pools, nodes, jobs --------------------------------------------------------------------------

def write_pools(account: BatchAccount, records: list[PoolRecord]) -> tuple[SyncStats, dict[str, Pool]]:
    """Upsert the account's pools as listed; mark those Batch no longer lists gone (and their nodes). Returns what
    was done and the live pools by id."""
    stats = SyncStats()
    now = timezone.now()
    stats.pools = upsert(Pool, "account", "pool_id", [pool_row(account, r, now) for r in records], POOL_FIELDS)
    stats.gone += mark_gone(Pool.objects.filter(account=account), "pool_id", {r.id for r in records}, now)
    stats.gone += Node.objects.filter(pool__account=account, pool__gone_at__isnull=False,
                                      gone_at__isnull=True).update(gone_at=now)
    return stats, {pool.pool_id: pool for pool in Pool.objects.filter(account=account, gone_at__isnull=True)}


def write_nodes(pool: Pool, records: list[NodeRecord]) -> SyncStats:
    """Upsert a pool's nodes as listed; mark those Batch no longer lists gone."""
    now = timezone.now()
    stats = SyncStats(nodes=upsert(Node, "pool", "node_id", [node_row(pool, n, now) for n in records], NODE_FIELDS))
    stats.gone += mark_gone(Node.objects.filter(pool=pool), "node_id", {n.id for n in records}, now)
    return stats


def write_jobs(account: BatchAccount, records: list[JobRecord], *, full: bool) -> SyncStats:
    """Upsert the jobs listed; with `full` (every job was listed), mark those Batch no longer lists gone."""
    now = timezone.now()
    stats = SyncStats(jobs=upsert(Job, "account", "job_id", [job_row(account, r, now) for r in records], JOB_FIELDS,
                                  compare=JOB_COMPARE))
    if full:
        gone = mark_gone(Job.objects.filter(account=account), "job_id", {r.id for r in records}, now)
        if gone:
            stats.gone += gone + mark_tasks_of_gone_jobs_gone(account, now)
    return stats


TASK_COUNT_FIELDS = ["task_active", "task_running", "task_completed", "task_succeeded", "task_failed"]


def apply_task_counts(job: Job, counts: TaskCountsRecord) -> bool:
    """Batch's task counts onto the job (in memory; `write_jobs_checked` stores them); returns whether they
    changed."""
    values = (counts.active, counts.running, counts.completed, counts.succeeded, counts.failed)
    if all(getattr(job, name) == value for name, value in zip(TASK_COUNT_FIELDS, values, strict=True)):
        return False
    for name, value in zip(TASK_COUNT_FIELDS, values, strict=True):
        setattr(job, name, value)
    return True


def write_jobs_checked(checked: list[Job], recounted: list[Job]) -> None:
    """The jobs a pass asked Batch about: their 'synced' time moves on (an unchanged job is not listed by an
    incremental pass, yet was checked), and the task counts that changed are stored, in a few statements for
    the whole pass."""
    now = timezone.now()
    for batch in chunks([job.pk for job in checked], 500):
        Job.objects.filter(pk__in=batch).update(last_synced_at=now)
    # Each job's own counts: one statement of CASEs, written out here because Django's bulk_update spent more time
    # building its expressions for a few hundred jobs than the database spent running them.
    per_job = 2 * len(TASK_COUNT_FIELDS) + 1
    for group in chunks(recounted, min(500, (connection.features.max_query_params or 10_000) // per_job)):
        quote = connection.ops.quote_name
        pk = quote(Job._meta.pk.column)
        assignments, params = [], []
        for name in TASK_COUNT_FIELDS:
            column = quote(next(field.column for field in Job._meta.concrete_fields if field.name == name))
            assignments.append(f"{column} = CASE {pk} {' '.join(['WHEN %s THEN %s'] * len(group))} ELSE {column} END")
            params += [value for job in group for value in (job.pk, getattr(job, name))]
        params += [job.pk for job in group]
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {quote(Job._meta.db_table)} SET {', '.join(assignments)} "
                           f"WHERE {pk} IN ({', '.join(['%s'] * len(group))})", params)


@contextmanager
def relaxed_commits() -> Iterator[None]:
    """On PostgreSQL, commits that do not wait for the disk (synchronous_commit off) for the rest of the block.

    The mirror is Batch's and can be read again at any time. A crash loses at most the last moment's commits, and
    in order (the log is sequential); a job's watermark is committed after the rows it covers, so what survives
    never claims more than it holds. A pass writes a few hundred small transactions: waiting for the disk on each
    was most of its time."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO OFF")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET synchronous_commit")


def mark_account_synced(account: BatchAccount) -> None:
    """A pass over the account completed: the dashboard says how fresh the mirror is from this."""
    BatchAccount.objects.filter(pk=account.pk).update(last_synced_at=timezone.now())


# --- writing -------------------------------------------------------------------------------------

def upsert(model: type[Row], parent_field: str, key_field: str, rows: list[Row], update_fields: list[str],
           compare: tuple[str, ...] = ()) -> int:
    """Insert or update `rows` (of any parents) in batches, each in one transaction; returns how many were written.
    A stored row the mirror's rule keeps (see `upsert_newer`) is left alone."""
    written = 0
    for batch in chunks(_newest_per_key(rows, key_field), UPSERT_BATCH):
        with transaction.atomic():
            written += len(upsert_newer(model, (parent_field, key_field), batch, update_fields, compare))
    return written


def _newest_per_key(rows: list[Row], key_field: str) -> list[Row]:
    # One statement may not touch a row twice (PostgreSQL refuses), and a listing can repeat an entity.
    by_key: dict[str, Row] = {}
    for row in rows:
        key = getattr(row, key_field)
        kept = by_key.get(key)
        if kept is None or _newer_or_same(row.state_transition_time, kept.state_transition_time):
            by_key[key] = row
    return list(by_key.values()) if len(by_key) != len(rows) else rows


def _stored(model: type[Row], parent_field: str, parent_pk: int, key_field: str, keys: list[str],
            compare: tuple[str, ...]) -> dict[str, tuple]:
    # Some SQLite builds allow only 999 parameters per statement.
    step = max(1, (connection.features.max_query_params or 10_000) - 1)
    stored: dict[str, tuple] = {}
    for start in range(0, len(keys), step):
        found = model.objects.filter(**{f"{parent_field}_id": parent_pk, f"{key_field}__in": keys[start:start + step]})
        for key, *values in found.values_list(key_field, "state_transition_time", "gone_at", *compare):
            stored[key] = tuple(values)
    return stored


def _should_write(row: Pool | Node | Job | Task, stored: tuple | None, compare: tuple[str, ...]) -> bool:
    """The mirror's rule (`upsert_newer` has it in SQL) for a reconcile, which compares before it lists."""
    if stored is None:
        return True
    stored_time, stored_gone, *stored_values = stored
    if not _newer_or_same(row.state_transition_time, stored_time):
        return False
    if compare and row.state_transition_time == stored_time and stored_gone is None:
        return any(getattr(row, name) != value for name, value in zip(compare, stored_values, strict=True))
    return True


def _newer_or_same(incoming: datetime | None, stored: datetime | None) -> bool:
    if stored is None:
        return True
    return incoming is not None and incoming >= stored


def mark_gone(queryset: QuerySet[Any], key_field: str, present: set[str], now: datetime) -> int:
    """Mark rows of `queryset` whose key is not in `present` gone; revived rows were cleared by the upsert."""
    missing = [pk for pk, key in queryset.filter(gone_at__isnull=True).values_list("pk", key_field)
               if key not in present]
    for batch in chunks(missing, 500):
        queryset.filter(pk__in=batch).update(gone_at=now)
    return len(missing)


def _mark_tasks_gone(job: Job, seen: set[str], now: datetime) -> int:
    gone = mark_gone(Task.objects.filter(job_id=job.pk), "task_id", seen, now)
    if gone:
        log.info("job %s: %d tasks deleted in Batch marked gone", job.job_id, gone)
    return gone


def mark_job_gone(job: Job) -> int:
    """The job was deleted in Batch: it and its tasks stay, marked gone."""
    now = timezone.now()
    jobs = Job.objects.filter(pk=job.pk, gone_at__isnull=True).update(gone_at=now)
    tasks = Task.objects.filter(job_id=job.pk, gone_at__isnull=True).update(gone_at=now)
    if jobs:
        log.info("job %s deleted in Batch: marked gone with %d tasks", job.job_id, tasks)
    return jobs + tasks


def mark_tasks_of_gone_jobs_gone(account: BatchAccount, now: datetime) -> int:
    return Task.objects.filter(job__account=account, job__gone_at__isnull=False, gone_at__isnull=True) \
        .update(gone_at=now)
