"""The Celery side of the portal: the sync from Batch, submissions to Batch, the log archiver and completion
e-mails, and the gateway, the only code that talks to Azure."""

from batchsync.celery import app as celery_app

__all__ = ["celery_app"]
