"""Submitting work: job templates and their spec, the submit form, uploads, the preview, submissions and re-runs.
The submit worker that sends a submission to Batch is batchsync/submit.py."""
