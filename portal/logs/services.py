"""What reading logs writes: an audit event each time a copy of a task's output leaves the portal (a download, a
link to the saved copy, a job's zip). Never the link itself: it is a credential for as long as it lives."""

from __future__ import annotations

from django.contrib.auth.models import User

from portal.audit.services import record_event
from portal.models import Job, Task


def task_file_download_record(*, user: User, task: Task, path: str, source: str, size: int) -> None:
    """A person downloaded the task file `path` (`source`: the node's copy or the saved one) through the portal."""
    record_event(actor=user, action="logs.download", obj=task,
                 details={"path": path, "kind": "file", "source": source, "bytes": size})


def task_file_link_record(*, user: User, task: Task, path: str, minutes: int, size: int) -> None:
    """A person was given a link to the saved copy of `path`, valid for `minutes`."""
    record_event(actor=user, action="logs.download", obj=task,
                 details={"path": path, "kind": "link", "minutes": minutes, "bytes": size})


def job_logs_zip_record(*, user: User, job: Job, tasks: int) -> None:
    """A person downloaded the logs of `tasks` tasks of `job` as one zip."""
    record_event(actor=user, action="logs.zip_download", obj=job, details={"tasks": tasks})
