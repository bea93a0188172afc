"""One sync pass over an account: pools and nodes, jobs and their task counts, and the tasks of the jobs that
can still change, with the requests of the pass side by side.

A real region answers each request in 50–150 ms, so one request after another cannot keep up with hundreds of
jobs. The pass sends its requests on a bounded pool of threads (settings.SYNC_CONCURRENCY; the account's request
budget paces them) and writes each answer on the caller's thread as it arrives: the pools, each pool's nodes, the
job list, each job's task counts and each job's task pages all overlap, and a big job's listing never holds up the
others. A job's tasks are listed only when something about it can have changed: its task counts, its state or
settings, a task running (a retry moves no count), or a long quiet spell (QUIET_RELIST)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import ExitStack
from datetime import datetime, timedelta
from functools import partial

from django.db.models import DateTimeField, ExpressionWrapper, F, Q, QuerySet
from django.utils import timezone

from portal.models import BatchAccount, Job, JobState, Pool

from .. import locks
from ..gateway import (
    BatchGateway,
    GatewayError,
    JobRecord,
    NodeRecord,
    NotFound,
    PoolRecord,
    TaskCountsRecord,
    Transient,
)
from . import memory, mirror
from .common import (
    DEFAULT_RETRY,
    Backoff,
    Fetcher,
    RetryPolicy,
    SyncStats,
    chunks,
    concurrency,
    fewer_collections,
    gateway_or_own,
    retrying,
)
from .memory import Memory
from .mirror import AFTER_COMPLETION, FULL_PASS_WAITS, TASK_LOCK_TTL, TaskWrite, task_lock_name

log = logging.getLogger("batchsync.sync")

# A job with no task running whose counts, state and settings stayed the same is still listed this often, as a
# safety net for what its counts cannot show.
QUIET_RELIST = timedelta(seconds=60)
# A listing expected to return more tasks than this is handed to `defer` (its own Celery task) when the caller
# gives one, so one job's big listing does not keep the account's pass, and the worker running it, busy.
BIG_LISTING = 10_000
# While answers keep arriving, what they leave to store is stored at most this often: against a slow Batch they
# trickle in, and storing each on its own cost what storing them together saves. Short beside a round trip.
LINGER = 0.02


# --- the account ---------------------------------------------------------------------------------

def sync_account(account: BatchAccount, *, full: bool = False, tasks: bool = True,
                 gateway: BatchGateway | None = None, retry: RetryPolicy = DEFAULT_RETRY,
                 workers: int | None = None, defer: Callable[[Job], None] | None = None) -> SyncStats:
    """One pass over the account: pools and nodes, jobs and their task counts, and (with `tasks`) the
    tasks of every job that can still change. `full` lists every job and task instead of the changes,
    and marks what Batch deleted as gone. Each part takes its own lock and is skipped if it is busy.

    `workers`: requests in flight at once (default settings.SYNC_CONCURRENCY); `defer(job)`: called instead of
    listing a job's tasks here when the listing would be big (BIG_LISTING)."""
    started = time.monotonic()
    with gateway_or_own(account, gateway) as gw:
        budget_before = _budget_requests(gw)
        with fewer_collections(), mirror.relaxed_commits(), \
                _AccountPass(account, gw, full=full, tasks=tasks, retry=retry, workers=workers, defer=defer) as run:
            run.jobs()    # first: the jobs' counts and busy jobs' listings are most of the pass
            run.pools()
            run.run()
            mirror.mark_account_synced(account)
        stats = run.stats
        stats.requests = _budget_requests(gw) - budget_before
    stats.seconds = time.monotonic() - started
    # Every few seconds from beat: say it at INFO only when something changed.
    changed = stats.pools or stats.nodes or stats.jobs or stats.tasks or stats.gone or stats.failed
    log.log(logging.INFO if changed else logging.DEBUG, "account %s synced%s: %s", account.name,
            " (full)" if full else "", stats)
    return stats


def sync_pools(account: BatchAccount, *, gateway: BatchGateway | None = None,
               retry: RetryPolicy = DEFAULT_RETRY) -> SyncStats:
    """Every pool and its nodes; pools and nodes Batch no longer lists are marked gone, returning ones revived."""
    with gateway_or_own(account, gateway) as gw, _AccountPass(account, gw, retry=retry) as run:
        run.pools()
        run.run()
    return run.stats


def sync_jobs(account: BatchAccount, *, full: bool = False, gateway: BatchGateway | None = None,
              retry: RetryPolicy = DEFAULT_RETRY) -> SyncStats:
    """Jobs changed since the newest change the mirror has (or all, with `full`, which also marks deleted
    jobs gone), then Batch's task counts for every job that is not finished."""
    with gateway_or_own(account, gateway) as gw, \
            _AccountPass(account, gw, full=full, tasks=False, retry=retry) as run:
        run.jobs()
        run.run()
    return run.stats


def jobs_needing_task_sync(account: BatchAccount) -> QuerySet[Job]:
    """Jobs whose tasks can still change: not gone, and unfinished or completed less than
    AFTER_COMPLETION before their tasks were last synced."""
    settled = ExpressionWrapper(F("state_transition_time") + AFTER_COMPLETION, output_field=DateTimeField())
    return (Job.objects.filter(account=account, gone_at__isnull=True)
            .filter(~Q(state=JobState.COMPLETED) | Q(tasks_synced_at__isnull=True)
                    | Q(state_transition_time__isnull=True) | Q(tasks_synced_at__lt=settled))
            .order_by("pk"))


def _budget_requests(gw: BatchGateway) -> int:
    budget = getattr(gw, "budget", None)
    return budget.requests if budget is not None else 0


class _AccountPass:
    """The state of one pass: what was asked, what came back, which locks are held. Handlers run on the caller's
    thread (Fetcher.run), so every database read and write happens there."""

    def __init__(self, account: BatchAccount, gw: BatchGateway, *, full: bool = False, tasks: bool = True,
                 retry: RetryPolicy = DEFAULT_RETRY, workers: int | None = None,
                 defer: Callable[[Job], None] | None = None):
        self.account, self.gw, self.full, self.tasks, self.retry, self.defer = account, gw, full, tasks, retry, defer
        self.stats = SyncStats()
        self.held = ExitStack()      # every lock taken in the pass, released when it ends, whatever happens
        self.workers = workers or concurrency()
        self.fetcher = Fetcher(self.workers)
        self.known: dict[str, tuple[datetime | None, datetime | None]] = {}
        self.changed_jobs: set[str] = set()
        self.asked: set[int] = set()
        self.jobs_listed = False
        self.parked: list[tuple[Job, bool, int]] = []
        self.checked: list[Job] = []
        self.recounted: list[Job] = []
        self.lock_waits: list[Job] = []
        self.now = timezone.now()
        # Left by the handlers for `_flush`, which does each for all the jobs at once: listings to begin, listed
        # tasks to store, listings complete to finish.
        self.to_begin: list[Job] = []
        self.to_store: list[tuple[TaskWrite, list]] = []
        self.to_finish: list[_Listing] = []
        self.listing: set[int] = set()     # jobs whose tasks this pass lists (or listed)
        self.live_pools: dict[str, Pool] | None = None
        self.nodes_asked: set[int] = set()
        self.nodes_parked: list[tuple[Pool, list[NodeRecord]]] = []

    def __enter__(self) -> _AccountPass:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.fetcher.close()
        finally:
            self.held.close()

    def run(self) -> None:
        self.fetcher.run(idle=self._flush, linger=LINGER)
        # A full pass waits for a job's lock rather than skipping it (the incremental pass runs on the same round
        # seconds and could win every time); it waits here, once the rest of the pass is done.
        for job in self.lock_waits:
            self.stats += mirror.reconcile_job_tasks(job, gateway=self.gw, retry=self.retry)
        mirror.write_jobs_checked(self.checked, self.recounted)

    def _lock(self, name: str, *, ttl: float, wait: float = 0.0) -> ExitStack | None:
        """Take the lock `name` for the rest of the pass, or until the returned stack is closed; None if busy."""
        stack = ExitStack()
        if not stack.enter_context(locks.hold(name, ttl=ttl, wait=wait)):
            stack.close()
            return None
        self.held.callback(stack.close)
        return stack

    def _fetch(self, action: Callable[[], object], what: str, then: Callable[[Future], None]) -> None:
        self.fetcher.fetch(lambda: retrying(action, what, self.retry), then)

    # --- pools and nodes ---------------------------------------------------------------------------

    def pools(self) -> None:
        if self._lock(f"account:{self.account.pk}:pools", ttl=300) is None:
            self.stats.busy.append(f"pools of account {self.account.name}")
            return
        self._fetch(self.gw.list_pools, f"list pools of account {self.account.name}", self._pools_listed)
        # The nodes of the pools already known go out with the pool list, not after it.
        for pool in Pool.objects.filter(account=self.account, gone_at__isnull=True):
            self._ask_nodes(pool)

    def _ask_nodes(self, pool: Pool) -> None:
        self.nodes_asked.add(pool.pk)
        self._fetch(partial(self.gw.list_nodes, pool.pool_id), f"list nodes of pool {pool.pool_id}",
                    partial(self._nodes_listed, pool))

    def _pools_listed(self, answer: Future[list[PoolRecord]]) -> None:
        records = answer.result()
        stats, self.live_pools = mirror.write_pools(self.account, records)
        self.stats += stats
        for pool in self.live_pools.values():
            if pool.pk not in self.nodes_asked:   # new, or back
                self._ask_nodes(pool)
        parked, self.nodes_parked = self.nodes_parked, []
        for pool, nodes in parked:
            self._write_nodes(pool, nodes)

    def _nodes_listed(self, pool: Pool, answer: Future[list[NodeRecord]]) -> None:
        try:
            records = answer.result()
        except NotFound:
            return   # deleted since it was listed; the next pass marks it gone
        if self.live_pools is None:   # whether the pool is still there is known once the pool list is in
            self.nodes_parked.append((pool, records))
        else:
            self._write_nodes(pool, records)

    def _write_nodes(self, pool: Pool, records: list[NodeRecord]) -> None:
        assert self.live_pools is not None
        if pool.pool_id in self.live_pools:   # a pool Batch no longer lists keeps its nodes marked gone
            self.stats += mirror.write_nodes(self.live_pools[pool.pool_id], records)

    # --- jobs and their task counts ----------------------------------------------------------------

    def jobs(self) -> None:
        if self._lock(f"account:{self.account.pk}:jobs", ttl=300, wait=FULL_PASS_WAITS if self.full else 0) is None:
            self.stats.busy.append(f"jobs of account {self.account.name}")
            return
        known = list(jobs_needing_task_sync(self.account))
        # When the whole pass fits in the requests in flight (it is bound by the round trip, not by throughput), a
        # job with tasks to run has its changes listed with its counts rather than after them: a round trip saved
        # for a request that may list nothing. A pass over more jobs would only send more requests.
        spare = not self.full and self.tasks and 2 * len(known) + 2 <= self.workers
        if spare:
            memories = memory.recall(known)
            for job in known:
                if _busy(job, memories.get(job.pk)):
                    self._list_tasks(job)
            if self.to_begin:
                self._begin()   # first: a busy job's listing is the longest part of such a pass, and ends it
        self.known = {job_id: (changed, modified) for job_id, changed, modified in Job.objects.filter(
            account=self.account).values_list("job_id", "state_transition_time", "last_modified")}
        since = None if self.full else _jobs_watermark(self.account)
        full = self.full or since is None
        self._fetch(lambda: self.gw.list_jobs(changed_since=since), f"list jobs of account {self.account.name}",
                    partial(self._jobs_listed, full))
        # The counts of the jobs already known go out with the job list, not after it.
        for job in known:
            self._ask_counts(job)

    def _jobs_listed(self, full: bool, answer: Future[list[JobRecord]]) -> None:
        records = answer.result()
        self.changed_jobs = {r.id for r in records if self.known.get(r.id) != (r.state_transition_time,
                                                                               r.last_modified)}
        self.stats += mirror.write_jobs(self.account, records, full=full)
        self.jobs_listed = True
        for job in jobs_needing_task_sync(self.account):   # new jobs, and jobs that started changing again
            if job.pk not in self.asked:
                self._ask_counts(job)
        parked, self.parked = self.parked, []
        for job, changed, expected in parked:
            self._decide(job, changed, expected)

    def _ask_counts(self, job: Job) -> None:
        self.asked.add(job.pk)
        self._fetch(partial(self.gw.get_task_counts, job.job_id), f"task counts of job {job.job_id}",
                    partial(self._counted, job))

    def _counted(self, job: Job, answer: Future[TaskCountsRecord]) -> None:
        try:
            counts = answer.result()
        except NotFound:
            self.stats.gone += mirror.mark_job_gone(job)
            return
        except GatewayError as error:
            self._failed(job, error)
            return
        before = _counts_of(job)
        changed = mirror.apply_task_counts(job, counts)
        self.checked.append(job)
        if changed:
            self.recounted.append(job)
        if not self.tasks:
            return
        expected = counts.active + counts.running + counts.completed
        if not changed:
            expected = 0
        elif job.task_watermark_at is not None and not self.full:
            expected = sum(abs(a - b) for a, b in zip(before, _counts_of(job), strict=True))
        if self.jobs_listed:
            self._decide(job, changed, expected)
        else:   # whether the job itself changed is known once the job list is in
            self.parked.append((job, changed, expected))

    def _decide(self, job: Job, counts_changed: bool, expected: int) -> None:
        """List the job's tasks now, hand them to `defer` (`expected` tasks), or skip them: nothing about the job
        changed."""
        if job.pk in self.listing:
            return   # listed already, with its counts
        # A running task can fail and be retried, or be requeued, between two passes without moving any count:
        # only a job with none running can be known unchanged from its counts.
        quiet = (not counts_changed and job.task_running == 0 and job.job_id not in self.changed_jobs
                 and job.task_watermark_at is not None
                 and job.tasks_synced_at is not None and self.now - job.tasks_synced_at < QUIET_RELIST)
        if quiet and not self.full:
            self.stats.quiet += 1
            return
        if self.defer is not None and expected > BIG_LISTING:
            self.defer(job)
            return
        self._list_tasks(job)

    def _failed(self, job: Job, error: Exception) -> None:
        # One job Batch does not answer for must not cost the other jobs their pass: its watermark stays where it
        # was, and the next pass tries again.
        log.warning("job %s: skipped in this pass: %s", job.job_id, error)
        self.stats.failed.append(job.job_id)

    # --- a job's tasks -----------------------------------------------------------------------------

    def _list_tasks(self, job: Job) -> None:
        """List the job's tasks, once `_flush` has taken its lock and read where its listing starts."""
        self.listing.add(job.pk)
        self.to_begin.append(job)

    def _flush(self) -> None:
        """What the handlers left, for all the jobs at once: begin the listings asked for (their requests go out
        first), store what was listed, finish the listings that are complete."""
        if self.to_begin:
            self._begin()
        self._store()
        if self.to_finish:
            finishing, self.to_finish = self.to_finish, []
            self.stats += TaskWrite.finish_many([listing.write for listing in finishing])
            # The jobs' next passes may start: these are stored. One round trip for each set the locks came in.
            by_set: dict[int, tuple[locks.LockSet, list[str]]] = {}
            for listing in finishing:
                by_set.setdefault(id(listing.locks), (listing.locks, []))[1].append(task_lock_name(listing.write.job))
            for lock_set, names in by_set.values():
                lock_set.release(names)

    def _begin(self) -> None:
        jobs, self.to_begin = self.to_begin, []
        held = locks.take_many([task_lock_name(job) for job in jobs], ttl=TASK_LOCK_TTL)
        self.held.callback(held.close)
        free = []
        for job in jobs:
            if task_lock_name(job) in held.held:
                free.append(job)
            elif self.full:
                self.lock_waits.append(job)
            else:
                self.stats.busy.append(f"tasks of job {job.job_id}")
        writes = TaskWrite.begin_many(free, full=self.full)
        for job in free:
            write = writes[job.pk]
            if write is None:
                held.release([task_lock_name(job)])
                continue
            listing = _Listing(self.gw, write, Backoff(self.retry, f"list tasks of job {job.job_id}"), held)
            self.fetcher.fetch(listing.next_batch, partial(self._listed, listing))

    def _store(self) -> None:
        if self.to_store:
            parts, self.to_store = self.to_store, []
            TaskWrite.write_many(parts)

    def _listed(self, listing: _Listing, answer: Future[tuple[str, list | None, bool]]) -> None:
        write = listing.write
        try:
            phase, batch, last = answer.result()
        except NotFound:
            self._store()   # what was listed before, then the job is gone with its tasks
            listing.release()
            self.stats.gone += mirror.mark_job_gone(write.job)
            return
        except GatewayError as error:
            self._store()
            listing.release()
            self._failed(write.job, error)
            return
        if phase == _RESTARTED:
            self._store()
            write.restart()
            self.fetcher.fetch(listing.next_batch, partial(self._listed, listing))
            return
        if batch is not None:
            if not last:   # the next page is on its way while this one is stored
                self.fetcher.fetch(listing.next_batch, partial(self._listed, listing))
            if phase == _VERSIONS:
                write.compare(batch)
            else:
                self.to_store.append((write, batch))
                if sum(len(part) for _, part in self.to_store) >= mirror.UPSERT_BATCH:
                    self._store()
            if not last:
                return
        # The phase's listing is complete.
        if phase == _VERSIONS:
            write.server_time = listing.server_time
            if write.stale:
                listing.open(_TASKS)   # a reconcile's second phase: the changed tasks in full
                self.fetcher.fetch(listing.next_batch, partial(self._listed, listing))
                return
        elif not write.full:
            write.server_time = listing.server_time
        self.to_finish.append(listing)


_VERSIONS, _TASKS, _RESTARTED = "versions", "tasks", "restarted"


class _Listing:
    """One job's task listing, read a batch at a time on the fetcher's threads (never two at once): for a reconcile,
    the versions of every task and then the changed ones in full; otherwise the changed tasks. A Transient error
    that outlasts the SDK's own retries starts the listing again after a backoff: the upserts skip what was stored
    already."""

    def __init__(self, gw: BatchGateway, write: TaskWrite, backoff: Backoff, held: locks.LockSet):
        self.gw, self.write, self.backoff, self.locks = gw, write, backoff, held
        self.server_time: datetime | None = None
        self.open(_VERSIONS if write.full else _TASKS)

    def open(self, phase: str) -> None:
        self.phase = phase
        versions = phase == _VERSIONS
        self._listing = self.gw.list_tasks(self.write.job.job_id, versions_only=versions,
                                           changed_since=None if versions else self.write.listing_since())
        self._batches: Iterator[list] = chunks(self._listing, mirror.UPSERT_BATCH)

    def release(self) -> None:
        """The job's task lock: its next pass may start."""
        self.locks.release([task_lock_name(self.write.job)])

    def next_batch(self) -> tuple[str, list | None, bool]:
        """The phase, its next batch (None: there is none), and whether that batch is the phase's last."""
        phase = self.phase
        try:
            batch = next(self._batches, None)
        except Transient as error:
            self.backoff.wait(error)
            self.open(_VERSIONS if self.write.full else _TASKS)
            return _RESTARTED, None, False
        if phase == _VERSIONS or not self.write.full:
            self.server_time = getattr(self._listing, "server_time", None)
        # `chunks` gives a short batch only once the listing is exhausted: the listing is complete without another
        # trip through the fetcher to learn so (a round of hand-overs for every job of a pass).
        return phase, batch, batch is not None and len(batch) < mirror.UPSERT_BATCH


def _busy(job: Job, remembered: Memory | None) -> bool:
    """Whether the job's tasks are likely to have changed since its last pass: a task was running then, or that pass
    stored changes (a job submitted or changing lately)."""
    return job.task_watermark_at is not None and (job.task_running > 0 or (remembered is not None and remembered.wrote))


def _counts_of(job: Job) -> tuple[int, int, int]:
    return job.task_active, job.task_running, job.task_completed


def _jobs_watermark(account: BatchAccount) -> datetime | None:
    """The newest change to any job the mirror holds, minus SKEW; None if it holds none."""
    newest = [value for value in (
        Job.objects.filter(account=account).order_by("-state_transition_time")
        .exclude(state_transition_time=None).values_list("state_transition_time", flat=True).first(),
        Job.objects.filter(account=account).order_by("-last_modified")
        .exclude(last_modified=None).values_list("last_modified", flat=True).first(),
    ) if value is not None]
    return max(newest) - mirror.SKEW if newest else None
