"""Batch → database: the mirror of pools, nodes, jobs and tasks (the only writer of its Batch fields).

`account` runs a pass over an account, `mirror` turns records into rows and writes them (the task pass of one
job included), `common` holds what both share."""

from .account import jobs_needing_task_sync, sync_account, sync_jobs, sync_pools
from .common import DEFAULT_RETRY, RetryPolicy, SyncStats
from .mirror import SKEW, reconcile_job_tasks, sync_job_tasks

__all__ = ["DEFAULT_RETRY", "SKEW", "RetryPolicy", "SyncStats", "jobs_needing_task_sync", "reconcile_job_tasks",
           "sync_account", "sync_job_tasks", "sync_jobs", "sync_pools"]
