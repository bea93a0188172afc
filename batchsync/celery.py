"""The Celery app of the portal, run as `celery -A batchsync worker -B -Q submit,sync`."""

import gc
import os

from celery import Celery
from celery.signals import worker_process_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

# Tasks are listed explicitly (each with a fixed name="batchsync.…") rather than discovered.
app = Celery("batchsync", include=["batchsync.tasks"])
# The broker (and its transport options) come from Django settings: CELERY_BROKER_URL.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    # A task is acknowledged after it ran, so a worker that dies mid-task leaves it queued;
    # tasks are idempotent, so running one twice is safe.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # Tasks can be long (Batch calls); one at a time per process keeps the rest on the queue
    # for other workers instead of stuck behind it.
    worker_prefetch_multiplier=1,
    # Results live in the database rows tasks update, never in Celery.
    task_ignore_result=True,
    result_backend=None,
    # Nothing goes to Celery's default "celery" queue, which no worker here consumes.
    task_default_queue="sync",
    task_create_missing_queues=True,
    broker_connection_retry_on_startup=True,
    # Two queues, so neither waits for the other: a sync pass against a slow Batch (or a 100,000-task listing)
    # never delays a submission, and a 10,000-task submission never makes the mirror stale. The archiver and the
    # completion e-mails follow the mirror, so they go with the sync. The dev worker consumes both (-Q submit,sync);
    # production runs a worker per queue (docs/ARCHITECTURE.md).
    task_routes={"batchsync.sync_*": {"queue": "sync"}, "batchsync.archive_*": {"queue": "sync"},
                 "batchsync.notify_*": {"queue": "sync"}, "batchsync.publish_*": {"queue": "sync"},
                 "batchsync.refresh_*": {"queue": "sync"},
                 "batchsync.submit_*": {"queue": "submit"},
                 "batchsync.redrive_*": {"queue": "submit"}},
    # A static schedule, run by exactly one beat. Each run expires when the next one is due: a backlog
    # (worker down, Redis restarted) then collapses into one pass instead of a burst of stale ones.
    beat_schedule={
        "sync-every-5s": {
            "task": "batchsync.sync_all_accounts",
            "schedule": 5.0,
            "options": {"expires": 5.0},
        },
        # Submissions whose doorbell was lost (Redis restarted, worker killed) or whose retry is due.
        # With the 45 s lease, a submission whose worker died is resumed within a minute.
        "redrive-submissions-every-15s": {
            "task": "batchsync.redrive_submissions",
            "schedule": 15.0,
            "options": {"expires": 15.0, "queue": "submit"},
        },
        # Copies finished tasks' stdout/stderr to Blob before the node's copy goes (bounded batch per run, paced:
        # ARCHIVE_TASKS_PER_SECOND).
        "archive-logs-every-15s": {
            "task": "batchsync.archive_finished_tasks",
            "schedule": 15.0,
            "options": {"expires": 15.0},
        },
        # Completion e-mails for jobs the sync has seen finish (each submission once: batchsync/notify.py).
        "notify-finished-jobs-every-30s": {
            "task": "batchsync.notify_finished_jobs",
            "schedule": 30.0,
            "options": {"expires": 30.0},
        },
        # The dashboard's chart counted once for every viewer (portal/dashboard/rollups.py).
        "refresh-dashboard-rollups-every-30s": {
            "task": "batchsync.refresh_dashboard_rollups",
            "schedule": 30.0,
            "options": {"expires": 30.0},
        },
        # The audit chain's head to write-once storage, so cutting records from the end shows (portal/audit/heads.py).
        "publish-audit-head-every-10min": {
            "task": "batchsync.publish_audit_head",
            "schedule": 600.0,
            "options": {"expires": 600.0},
        },
        # Lists every job and task of the jobs still changing: catches deletions and anything the
        # incremental passes missed.
        "reconcile-every-5min": {
            "task": "batchsync.sync_all_accounts",
            "schedule": 300.0,
            "kwargs": {"full": True},
            "options": {"expires": 300.0},
        },
    },
)


@worker_ready.connect
@worker_process_init.connect
def freeze_startup_objects(**_: object) -> None:
    """Leave the objects the worker made while starting (Django, the SDKs, every module: well over 100,000) out of
    the cycle collector's full passes. A 10,000-task submission makes enough long-lived objects (the tasks queued
    ahead of their requests) to set off a full pass, which otherwise walks that whole heap with every request
    thread stopped: 100-250 ms, once or twice a submission. worker_ready is the process that runs tasks under the
    solo and threads pools, worker_process_init each child of the prefork pool (their share of the parent's
    memory also stays unwritten)."""
    gc.freeze()
