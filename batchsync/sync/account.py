"""One sync pass over an account: pools and nodes, jobs and their task counts, and the tasks of the jobs that
can still change."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from functools import partial

from django.db.models import DateTimeField, ExpressionWrapper, F, Q, QuerySet
from django.utils import timezone

from portal.models import BatchAccount, Job, JobState, Node, Pool

from .. import locks
from ..gateway import BatchGateway, NotFound
from . import mirror
from .common import DEFAULT_RETRY, RetryPolicy, SyncStats, gateway_or_own, retrying
from .mirror import (
    AFTER_COMPLETION,
    FULL_PASS_WAITS,
    JOB_COMPARE,
    JOB_FIELDS,
    NODE_FIELDS,
    POOL_FIELDS,
    job_row,
    mark_gone,
    mark_job_gone,
    mark_tasks_of_gone_jobs_gone,
    node_row,
    pool_row,
    reconcile_job_tasks,
    sync_job_tasks,
    upsert,
)

log = logging.getLogger("batchsync.sync")

# --- the account ---------------------------------------------------------------------------------

def sync_account(account: BatchAccount, *, full: bool = False, tasks: bool = True,
                 gateway: BatchGateway | None = None, retry: RetryPolicy = DEFAULT_RETRY) -> SyncStats:
    """One pass over the account: pools and nodes, jobs and their task counts, and (with `tasks`) the
    tasks of every job that can still change. `full` lists every job and task instead of the changes,
    and marks what Batch deleted as gone. Each part takes its own lock and is skipped if it is busy."""
    started = time.monotonic()
    stats = SyncStats()
    with gateway_or_own(account, gateway) as gw:
        stats += sync_pools(account, gateway=gw, retry=retry)
        stats += sync_jobs(account, full=full, gateway=gw, retry=retry)
        if tasks:
            for job in jobs_needing_task_sync(account):
                task_pass = reconcile_job_tasks if full else sync_job_tasks
                stats += task_pass(job, gateway=gw, retry=retry)
    BatchAccount.objects.filter(pk=account.pk).update(last_synced_at=timezone.now())
    stats.seconds = time.monotonic() - started
    # Every few seconds from beat: say it at INFO only when something changed.
    changed = stats.pools or stats.nodes or stats.jobs or stats.tasks or stats.gone
    log.log(logging.INFO if changed else logging.DEBUG, "account %s synced%s: %s", account.name,
            " (full)" if full else "", stats)
    return stats


def jobs_needing_task_sync(account: BatchAccount) -> QuerySet[Job]:
    """Jobs whose tasks can still change: not gone, and unfinished or completed less than
    AFTER_COMPLETION before their tasks were last synced."""
    settled = ExpressionWrapper(F("state_transition_time") + AFTER_COMPLETION, output_field=DateTimeField())
    return (Job.objects.filter(account=account, gone_at__isnull=True)
            .filter(~Q(state=JobState.COMPLETED) | Q(tasks_synced_at__isnull=True)
                    | Q(state_transition_time__isnull=True) | Q(tasks_synced_at__lt=settled))
            .order_by("pk"))


# --- pools and nodes -------------------------------------------------------------------------------

def sync_pools(account: BatchAccount, *, gateway: BatchGateway | None = None,
               retry: RetryPolicy = DEFAULT_RETRY) -> SyncStats:
    """Every pool and its nodes; pools and nodes Batch no longer lists are marked gone, returning ones revived."""
    stats = SyncStats()
    with locks.hold(f"account:{account.pk}:pools", ttl=300) as acquired:
        if not acquired:
            stats.busy.append(f"pools of account {account.name}")
            return stats
        with gateway_or_own(account, gateway) as gw:
            records = retrying(gw.list_pools, f"list pools of account {account.name}", retry)
            now = timezone.now()
            rows = [pool_row(account, record, now) for record in records]
            stats.pools = upsert(Pool, "account", account.pk, "pool_id", rows, POOL_FIELDS)
            stats.gone += mark_gone(Pool.objects.filter(account=account), "pool_id", {r.id for r in records}, now)
            stats.gone += Node.objects.filter(pool__account=account, pool__gone_at__isnull=False,
                                              gone_at__isnull=True).update(gone_at=now)

            pools = {pool.pool_id: pool for pool in Pool.objects.filter(account=account, gone_at__isnull=True)}
            for record in records:
                pool = pools.get(record.id)
                if pool is None:
                    continue
                try:
                    nodes = retrying(partial(gw.list_nodes, record.id),
                                      f"list nodes of pool {record.id}", retry)
                except NotFound:
                    continue   # deleted since it was listed; the next pass marks it gone
                now = timezone.now()
                stats.nodes += upsert(Node, "pool", pool.pk, "node_id", [node_row(pool, n, now) for n in nodes],
                                       NODE_FIELDS)
                stats.gone += mark_gone(Node.objects.filter(pool=pool), "node_id", {n.id for n in nodes}, now)
    return stats


# --- jobs ----------------------------------------------------------------------------------------

def sync_jobs(account: BatchAccount, *, full: bool = False, gateway: BatchGateway | None = None,
              retry: RetryPolicy = DEFAULT_RETRY) -> SyncStats:
    """Jobs changed since the newest change the mirror has (or all, with `full`, which also marks deleted
    jobs gone), then Batch's task counts for every job that is not finished."""
    stats = SyncStats()
    wait = FULL_PASS_WAITS if full else 0
    with locks.hold(f"account:{account.pk}:jobs", ttl=300, wait=wait) as acquired:
        if not acquired:
            stats.busy.append(f"jobs of account {account.name}")
            return stats
        with gateway_or_own(account, gateway) as gw:
            since = None if full else _jobs_watermark(account)
            if since is None:
                full = True
            records = retrying(lambda: gw.list_jobs(changed_since=since),
                                f"list jobs of account {account.name}", retry)
            now = timezone.now()
            stats.jobs = upsert(Job, "account", account.pk, "job_id", [job_row(account, r, now) for r in records],
                                 JOB_FIELDS, compare=JOB_COMPARE)
            if full:
                gone = mark_gone(Job.objects.filter(account=account), "job_id", {r.id for r in records}, now)
                if gone:
                    stats.gone += gone + mark_tasks_of_gone_jobs_gone(account, now)

            # Progress comes from Batch's own counts, for every job whose tasks can still change.
            for job in jobs_needing_task_sync(account).only("pk", "job_id"):
                try:
                    counts = retrying(partial(gw.get_task_counts, job.job_id),
                                       f"task counts of job {job.job_id}", retry)
                except NotFound:
                    stats.gone += mark_job_gone(job)
                    continue
                # last_synced_at too: an unchanged job is not listed by an incremental pass, yet was checked.
                Job.objects.filter(pk=job.pk).update(
                    task_active=counts.active, task_running=counts.running, task_completed=counts.completed,
                    task_succeeded=counts.succeeded, task_failed=counts.failed, last_synced_at=timezone.now())
    return stats


def _jobs_watermark(account: BatchAccount) -> datetime | None:
    """The newest change to any job the mirror holds, minus SKEW; None if it holds none."""
    newest = [value for value in (
        Job.objects.filter(account=account).order_by("-state_transition_time")
        .exclude(state_transition_time=None).values_list("state_transition_time", flat=True).first(),
        Job.objects.filter(account=account).order_by("-last_modified")
        .exclude(last_modified=None).values_list("last_modified", flat=True).first(),
    ) if value is not None]
    return max(newest) - mirror.SKEW if newest else None
