"""The Celery side of the portal: sync from Batch, submission to Batch, log reads."""

from batchsync.celery import app as celery_app

__all__ = ["celery_app"]
