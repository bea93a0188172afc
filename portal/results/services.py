"""What reading results writes: an audit event each time a task's output leaves the portal, one file or a job's zip,
as portal.logs.services records logs leaving it."""

from __future__ import annotations

from django.contrib.auth.models import User

from portal.audit.services import record_event
from portal.models import Job, Task


def result_download_record(*, user: User, task: Task, name: str, size: int) -> None:
    """A person downloaded the output file `name` of `task` through the portal."""
    record_event(actor=user, action="results.download", obj=task, details={"name": name, "bytes": size})


def job_results_zip_record(*, user: User, job: Job, tasks: int) -> None:
    """A person downloaded every output file of `job` (a job of `tasks` tasks) as one zip."""
    record_event(actor=user, action="results.zip_download", obj=job, details={"tasks": tasks})
