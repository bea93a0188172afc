"""Celery tasks: thin wrappers that load rows by id and call one sync or submit function.

Each is idempotent and safe to run twice or side by side: the sync functions take their own locks."""

from celery import shared_task
from django.conf import settings

from portal.audit import heads
from portal.dashboard import rollups
from portal.models import BatchAccount, Job

from . import accounts, archive, notify, submit, sync


@shared_task(name="batchsync.sync_all_accounts")
def sync_all_accounts_task(full: bool = False) -> None:
    """Beat's entry point: one sync_account_task per enabled account (the configured one is created if new)."""
    for account_id in accounts.synced_accounts():
        sync_account_task.delay(account_id, full=full)


@shared_task(name="batchsync.sync_account")
def sync_account_task(account_id: int, full: bool = False) -> None:
    """One pass over the account (its requests side by side); a job's big task listing gets a task of its own."""
    # A task queued before the account was disabled finds it disabled and does nothing.
    account = BatchAccount.objects.filter(pk=account_id, enabled=True).first()
    if account is None:
        return

    def defer(job: Job) -> None:
        # A backlog (slow or stopped worker) collapses: the next round enqueues a fresh one anyway.
        sync_job_tasks_task.apply_async((job.pk,), {"full": full}, expires=300 if full else 60)

    sync.sync_account(account, full=full, defer=defer)


@shared_task(name="batchsync.sync_job_tasks")
def sync_job_tasks_task(job_pk: int, full: bool = False) -> None:
    """The job's changed tasks (all of them, and deletions, with `full`)."""
    job = Job.objects.select_related("account").filter(pk=job_pk, gone_at__isnull=True).first()
    if job is None:
        return
    (sync.reconcile_job_tasks if full else sync.sync_job_tasks)(job)


@shared_task(name="batchsync.submit_submission")
def submit_submission_task(submission_id: int) -> None:
    """Take one submission further towards Batch; a no-op if it is final or another run holds it."""
    submit.submit_submission(submission_id)


@shared_task(name="batchsync.redrive_submissions")
def redrive_submissions_task() -> None:
    """Beat's safety net: enqueue the unfinished submissions whose message was lost or whose worker died."""
    submit.redrive_submissions()
    submit.link_submitted_jobs()


@shared_task(name="batchsync.publish_audit_head")
def publish_audit_head_task() -> None:
    """Write the audit chain's newest record id and hash to write-once storage (portal.audit.heads)."""
    with accounts.blob_store() as store:
        heads.publish_head(store)


@shared_task(name="batchsync.refresh_dashboard_rollups")
def refresh_dashboard_rollups_task() -> None:
    """Count the dashboard's chart once for every viewer (portal.dashboard.rollups)."""
    rollups.refresh()


@shared_task(name="batchsync.notify_finished_jobs")
def notify_finished_jobs_task() -> None:
    """E-mail the submitters of jobs that finished since the last run, each once (batchsync.notify)."""
    notify.notify_finished_jobs()


@shared_task(name="batchsync.archive_finished_tasks")
def archive_finished_tasks_task() -> None:
    """Save the logs of the newest finished tasks not yet saved (one pass at a time: it takes a lock)."""
    archive.archive_finished_tasks(tasks_per_second=settings.ARCHIVE_TASKS_PER_SECOND)
