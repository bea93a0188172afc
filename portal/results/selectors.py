"""What the results pages read: a page of a job's (or a task's) output files straight from the outputs container, one
file's details, the tasks whose uploads failed, and the output rules of the template behind the job."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from django.conf import settings

from batchsync.gateway import BlobInfo, BlobStore
from portal.models import Job, Submission, Task
from portal.results.files import ResultFile, blob_path, job_prefix, result_file, task_prefix

# Files on one screen of a job's results: one request to storage lists them, however many the job has.
PAGE_SIZE = 100
# Files the task page lists before it links to the rest on the results page.
TASK_PAGE_SIZE = 20
# Tasks named on the results page whose output files could not be uploaded.
UPLOAD_FAILURES_SHOWN = 20
# Batch's task ids: what a `task` filter in a query string may hold.
TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Storage's continuation tokens are short printable strings; anything else is not one of ours.
TOKEN = re.compile(r"[\x21-\x7e]{1,1024}")


@dataclass
class ResultsPage:
    files: list[ResultFile]
    next_token: str | None
    # Task id → the task's row, for links to its page and its files (a blob of a task the mirror lacks has none).
    tasks: dict[str, Task] = field(default_factory=dict)

    @property
    def rows(self) -> list[tuple[ResultFile, Task | None]]:
        return [(found, self.tasks.get(found.task_id)) for found in self.files]


def results_page(job: Job, *, store: BlobStore, task_id: str | None = None, token: str | None = None,
                 size: int | None = None) -> ResultsPage:
    """One page of the job's output files in name order (task by task), or of one task's: one listing request to
    storage from `token` on. Raises the gateway's errors (a token storage cannot read: GatewayError, status 400)."""
    prefix = task_prefix(job.job_id, task_id) if task_id else job_prefix(job.job_id)
    blobs, next_token = store.list_page(settings.STORAGE_OUTPUTS_CONTAINER, prefix, size=size or PAGE_SIZE,
                                        token=token)
    files = [found for found in (result_file(info, job.job_id) for info in blobs) if found is not None]
    ids = {found.task_id for found in files}
    tasks = {task.task_id: task for task in Task.objects.filter(job=job, task_id__in=ids).select_related("job")}
    return ResultsPage(files, next_token, tasks)


def result_info(task: Task, name: str, *, store: BlobStore) -> BlobInfo | None:
    """The stored output `name` of `task`, or None when there is none. Raises InvalidFileName for a name that could
    not be an output's (nothing is asked of storage then), the gateway's errors when storage does not answer."""
    return store.info(settings.STORAGE_OUTPUTS_CONTAINER, blob_path(task.job.job_id, task.task_id, name))


def upload_failures(job: Job, *, limit: int = UPLOAD_FAILURES_SHOWN) -> list[Task]:
    """Tasks of `job` whose output files (results or saved logs) Batch could not upload, first `limit` by id."""
    return list(job.tasks.filter(result="failure", failure_code__startswith=Task.UPLOAD_FAILURE_PREFIX)
                .order_by("task_id")[:limit])


def output_rules(job: Job) -> list[dict] | None:
    """The output rules (`pattern`, `upload_condition`) of the template version behind `job`; None for a job made
    outside the portal, whose outputs (if any) follow rules the portal does not know."""
    submission = Submission.of_job(job)
    if submission is None:
        return None
    return list(submission.template_version.parsed.outputs)
