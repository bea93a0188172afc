"""The mirror of Batch jobs and their tasks, as last seen by the sync.

Mirrored fields keep Batch's names in snake_case and are written only by batchsync/sync/; our bookkeeping fields
end in `_at`. Rows Batch deleted stay, marked by `gone_at`."""

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import models
from django.utils.functional import cached_property

from portal.models.accounts import BatchAccount, Team


class JobState(models.TextChoices):
    ACTIVE = "active"
    DISABLING = "disabling"
    DISABLED = "disabled"
    ENABLING = "enabling"
    TERMINATING = "terminating"
    COMPLETED = "completed"
    DELETING = "deleting"
    UNKNOWN = "unknown"

    # Batch runs nothing more of a job in these states: it cannot be terminated, nor its tasks retried.
    ENDED = enum.nonmember(frozenset({COMPLETED, TERMINATING, DELETING}))


class TaskState(models.TextChoices):
    ACTIVE = "active"
    PREPARING = "preparing"
    RUNNING = "running"
    COMPLETED = "completed"
    UNKNOWN = "unknown"


class TaskResult(models.TextChoices):
    SUCCESS = "success"
    FAILURE = "failure"


# Batch's failure code for a task it ended because someone asked: the task terminated on its own, or its job
# terminated while it ran (localbatch writes the same code for both, as the real service does). Such a task
# completes with result "failure", yet nothing in it failed: "killed by terminate", not counted as a failure.
TERMINATED_FAILURE_CODE = "TaskEnded"


# Why Batch ends a job of itself: every task is done, or a task failed and the job was set to end on failure. Any
# other reason (UserTerminate, the person's own words, MaxWallClockTimeExpiry, ...) cut the job short: terminated.
NATURAL_END_REASONS = frozenset({"alltaskscomplete", "taskfailed"})


class Outcome(models.TextChoices):
    SUBMITTING = "submitting", "submitting"          # a submission still on its way to Batch
    AWAITING_APPROVAL = "awaiting_approval", "waiting for approval"   # held until an Operator or Admin decides
    NOT_SUBMITTED = "not_submitted", "not submitted"  # a submission Batch never got
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    TERMINATED = "terminated", "terminated"


@dataclass(frozen=True)
class JobOutcome:
    """How a job turned out (Job.outcome): one word, and how many of its tasks failed of themselves."""

    kind: Outcome
    failed: int = 0

    @property
    def label(self) -> str:
        """'running', 'running, 2 failed', 'succeeded', '3 failed', 'terminated'."""
        if self.kind == Outcome.FAILED:
            return f"{self.failed:,} failed"
        if self.kind == Outcome.RUNNING and self.failed:
            return f"running, {self.failed:,} failed"
        return str(self.kind.label)


class JobQuerySet(models.QuerySet):
    def live(self) -> "JobQuerySet":
        """Jobs the pages still poll: see Job.is_live."""
        return self.filter(gone_at__isnull=True).exclude(state=JobState.COMPLETED)


class Job(models.Model):
    account = models.ForeignKey(BatchAccount, on_delete=models.PROTECT, related_name="jobs")
    job_id = models.CharField(max_length=64)
    display_name = models.CharField(max_length=1024, blank=True)
    state = models.CharField(max_length=20, choices=JobState.choices, default=JobState.UNKNOWN)
    pool_id = models.CharField(max_length=64, blank=True, help_text="Batch id of the pool the job runs on.")
    priority = models.IntegerField(default=0)
    on_all_tasks_complete = models.CharField(max_length=20, blank=True)
    creation_time = models.DateTimeField(null=True, blank=True)
    state_transition_time = models.DateTimeField(null=True, blank=True)
    start_time = models.DateTimeField(null=True, blank=True)
    end_time = models.DateTimeField(null=True, blank=True)
    terminate_reason = models.CharField(max_length=100, blank=True)
    last_modified = models.DateTimeField(null=True, blank=True)
    etag = models.CharField(max_length=100, blank=True)
    # constraints.maxParallelTasks (-1: no limit) and whether its tasks may depend on each other.
    max_parallel_tasks = models.IntegerField(default=-1, db_default=-1)
    uses_task_dependencies = models.BooleanField(default=False, db_default=False)
    # Batch's own task counts (get_job_task_counts): progress without counting our task table.
    task_active = models.IntegerField(default=0)
    task_running = models.IntegerField(default=0)
    task_completed = models.IntegerField(default=0)
    task_succeeded = models.IntegerField(default=0)
    task_failed = models.IntegerField(default=0)
    # Who submitted it through the portal (given by its submission as soon as Batch accepted the job:
    # batchsync.submit.own_job; empty for outside jobs).
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="submitted_jobs")
    # The submitter's team at submission time (portal.access scopes and Operator rights); empty for outside jobs.
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    # Incremental task sync: tasks changed at or after this time (minus a skew overlap) are fetched next.
    task_watermark_at = models.DateTimeField(null=True, blank=True)
    tasks_synced_at = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    gone_at = models.DateTimeField(null=True, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-creation_time", "job_id"]
        constraints = [models.UniqueConstraint(fields=["account", "job_id"], name="job_unique_per_account")]
        indexes = [
            models.Index(fields=["state", "-creation_time"], name="job_state_created"),
            models.Index(fields=["pool_id", "-creation_time"], name="job_pool_created"),
            models.Index(fields=["submitted_by", "-creation_time"], name="job_submitter_created"),
            models.Index(fields=["-creation_time"], name="job_created"),
        ]

    def __str__(self) -> str:
        return self.job_id

    @property
    def title(self) -> str:
        """What people call it: its display name (a submission's name, given to Batch at submit), else its id."""
        return self.display_name or self.job_id

    @property
    def has_name(self) -> bool:
        """Has a name of its own to show, with the Batch id beside it (pages show the id alone otherwise)."""
        return self.display_name not in ("", self.job_id)

    @property
    def name_and_id(self) -> str:
        """The name with the Batch id beside it, for one line of text (the audit history, e-mails)."""
        return f"{self.display_name} ({self.job_id})" if self.has_name else self.job_id

    @property
    def task_total(self) -> int:
        return self.task_active + self.task_running + self.task_completed

    @cached_property
    def task_terminated(self) -> int:
        """Its tasks killed by a terminate (Task.killed_by_terminate). Batch's counts put them among the failed;
        no query when Batch counts no failure, and from the partial index task_killed_by_terminate otherwise."""
        if not self.task_failed:
            return 0
        return min(self.task_failed, Task.objects.killed_by_terminate().filter(job=self).count())

    @staticmethod
    def read_task_terminated(jobs: Iterable["Job"]) -> None:
        """task_terminated of each of `jobs` (a page listing them) in one query instead of one a job with failures,
        from the same partial index."""
        failing = [job for job in jobs if job.task_failed and "task_terminated" not in job.__dict__]
        if not failing:
            return
        killed = dict(Task.objects.killed_by_terminate().filter(job__in=failing).order_by().values("job_id")
                      .annotate(n=models.Count("pk")).values_list("job_id", "n"))
        for job in failing:
            job.__dict__["task_terminated"] = min(job.task_failed, killed.get(job.pk, 0))

    @property
    def failed_task_count(self) -> int:
        """Tasks that failed of themselves: Batch's failed count less those killed by a terminate."""
        return self.task_failed - self.task_terminated

    @property
    def was_terminated(self) -> bool:
        """Cut short by a terminate (a person's, or its time limit) rather than ended by Batch's own rules."""
        return (self.state in (JobState.TERMINATING, JobState.COMPLETED) and bool(self.terminate_reason)
                and self.terminate_reason.lower() not in NATURAL_END_REASONS)

    @property
    def outcome(self) -> JobOutcome:
        """The one rule for how a job turned out, from its mirrored state, terminate reason and task counts:
        terminated, else running while not ended, else N failed or succeeded."""
        failed = self.failed_task_count
        if self.was_terminated:
            return JobOutcome(Outcome.TERMINATED, failed)
        if not self.has_ended:
            return JobOutcome(Outcome.RUNNING, failed)
        return JobOutcome(Outcome.FAILED if failed else Outcome.SUCCEEDED, failed)

    @property
    def has_ended(self) -> bool:
        """Batch runs nothing more of it (JobState.ENDED): no terminating it, no retrying its tasks."""
        return self.state in JobState.ENDED

    @property
    def is_live(self) -> bool:
        """Can still change, so its pages keep polling and count it as not finished: still in Batch and not
        completed. Wider than `not has_ended`: a job terminating or being deleted has ended for actions, but its
        state and counts still move until it is completed or gone."""
        return self.gone_at is None and self.state != JobState.COMPLETED


class TaskQuerySet(models.QuerySet):
    def failed(self) -> "TaskQuerySet":
        """Tasks that failed of themselves (see Task.has_failed): result failure, not killed by a terminate."""
        return self.filter(result=TaskResult.FAILURE).exclude(failure_code=TERMINATED_FAILURE_CODE)

    def killed_by_terminate(self) -> "TaskQuerySet":
        """Tasks a terminate ended (see Task.killed_by_terminate)."""
        return self.filter(result=TaskResult.FAILURE, failure_code=TERMINATED_FAILURE_CODE)


class Task(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="tasks")
    task_id = models.CharField(max_length=64)
    display_name = models.CharField(max_length=1024, blank=True)
    state = models.CharField(max_length=20, choices=TaskState.choices, default=TaskState.UNKNOWN)
    previous_state = models.CharField(max_length=20, blank=True)
    state_transition_time = models.DateTimeField(null=True, blank=True)
    creation_time = models.DateTimeField(null=True, blank=True)
    command_line = models.TextField(blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    result = models.CharField(max_length=20, choices=TaskResult.choices, blank=True)
    failure_category = models.CharField(max_length=20, blank=True)
    failure_code = models.CharField(max_length=100, blank=True)
    failure_message = models.TextField(blank=True)
    retry_count = models.IntegerField(default=0)
    requeue_count = models.IntegerField(default=0)
    start_time = models.DateTimeField(null=True, blank=True)
    end_time = models.DateTimeField(null=True, blank=True)
    # end_time - start_time, kept by the sync so the task table can sort by duration from an index.
    duration_seconds = models.FloatField(null=True, blank=True)
    node_id = models.CharField(max_length=100, blank=True)
    pool_id = models.CharField(max_length=64, blank=True)
    required_slots = models.IntegerField(default=1)
    environment = models.JSONField(default=list, blank=True)
    max_wall_clock_seconds = models.FloatField(null=True, blank=True)
    max_task_retry_count = models.IntegerField(null=True, blank=True)
    # dependsOn as Batch has it ({"taskIds": [...], "taskIdRanges": [{"start", "end"}]}; empty: none), and what this
    # task's completion did to the tasks depending on it ("satisfy" or "block"; empty until it completed).
    # TaskDependency holds the same edges the other way round, for "needed by".
    depends_on = models.JSONField(default=dict, db_default=models.Value({}, models.JSONField()), blank=True)
    dependency_action = models.CharField(max_length=10, blank=True, db_default="")
    last_synced_at = models.DateTimeField(null=True, blank=True)
    gone_at = models.DateTimeField(null=True, blank=True)
    # When stdout/stderr were found saved in Blob (by the task's own output-file rules or by the archiver), and
    # the first line of stderr that looks like an error: part of the failure-triage signature.
    logs_saved_at = models.DateTimeField(null=True, blank=True)
    error_line = models.CharField(max_length=300, blank=True)

    objects = TaskQuerySet.as_manager()

    class Meta:
        ordering = ["task_id"]
        constraints = [models.UniqueConstraint(fields=["job", "task_id"], name="task_unique_per_job")]
        indexes = [
            # Keyset pagination of the job's task table, for each sort and filter the page offers.
            models.Index(fields=["job", "state", "task_id"], name="task_job_state_id"),
            models.Index(fields=["job", "start_time", "task_id"], name="task_job_start"),
            # The task table's poll (running, by start time): running tasks sit at the far end of task_job_start,
            # so a walk of it reads the whole job (4.1 s at 1,000,000 tasks); this range holds just them.
            models.Index(fields=["job", "state", "start_time", "task_id"], name="task_job_state_start"),
            models.Index(fields=["job", "end_time", "task_id"], name="task_job_end"),
            models.Index(fields=["job", "duration_seconds", "task_id"], name="task_job_duration"),
            # A job's cost counts a task that needs several slots that many times (portal.costs.selectors): the few
            # such tasks are summed from here, while the run times of all are summed from task_job_duration alone.
            models.Index(fields=["job", "duration_seconds"], include=["required_slots"], name="task_multi_slot",
                         condition=models.Q(required_slots__gt=1)),
            models.Index(fields=["job", "exit_code", "task_id"], name="task_job_exit"),
            models.Index(fields=["job", "result", "task_id"], name="task_job_result"),
            # Dashboard: recent failures and tasks finished per hour.
            models.Index(fields=["result", "-end_time"], name="task_result_end"),
            models.Index(fields=["-end_time"], name="task_end"),
            # Failure triage: failed tasks grouped by signature.
            models.Index(fields=["result", "failure_code", "exit_code"], name="task_failure_signature"),
            # A job's tasks killed by a terminate, counted apart from its failures (Job.task_terminated): a few rows.
            models.Index(fields=["job"], name="task_killed_by_terminate",
                         condition=models.Q(result="failure", failure_code=TERMINATED_FAILURE_CODE)),
            # "Why is it waiting?": a job's failed tasks whose failure blocks the tasks depending on them (a few rows).
            models.Index(fields=["job", "task_id"], name="task_dependency_blocks",
                         condition=models.Q(dependency_action="block")),
        ]

    # Batch's failure codes when an output file could not be uploaded (FileUploadContainerNotFound,
    # FileUploadFailed, ...): the task ended, and some of its results or saved logs are not in storage.
    UPLOAD_FAILURE_PREFIX = "FileUpload"

    def __str__(self) -> str:
        return self.task_id

    @property
    def killed_by_terminate(self) -> bool:
        """Ended by a terminate (of the task or of its job) rather than failing: its own word and colour, and no
        place among failures (Recent failures, the Failures page, "N failed") unless asked for."""
        return self.result == TaskResult.FAILURE and self.failure_code == TERMINATED_FAILURE_CODE

    @property
    def has_failed(self) -> bool:
        """Failed of itself: result failure and not killed by a terminate (Task.objects.failed())."""
        return self.result == TaskResult.FAILURE and not self.killed_by_terminate

    @property
    def output_upload_failed(self) -> bool:
        return self.failure_code.startswith(self.UPLOAD_FAILURE_PREFIX)

    @property
    def is_live(self) -> bool:
        """Can still change (its page keeps polling): still in Batch, not completed, and its job is live."""
        return self.gone_at is None and self.state != TaskState.COMPLETED and self.job.is_live


class TaskDependency(models.Model):
    """One edge of a task's dependsOn, kept by the sync so a task's page finds what needs it ("needed by: 12 tasks")
    from an index: a task id (`parent_task_id`) or an inclusive range of numeric ids (`range_start`..`range_end`,
    -1 for an id edge). Batch never changes a task's dependencies, so edges are only ever added."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="dependency_edges")
    task_id = models.CharField(max_length=64)                   # the task that waits
    parent_task_id = models.CharField(max_length=64, blank=True)  # the task it waits for ("" for a range)
    range_start = models.IntegerField(default=-1)
    range_end = models.IntegerField(default=-1)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "task_id", "parent_task_id", "range_start"],
                                               name="task_dependency_unique")]
        indexes = [models.Index(fields=["job", "parent_task_id"], name="task_dependency_parent"),
                   models.Index(fields=["job", "range_start", "range_end"], name="task_dependency_range")]

    def __str__(self) -> str:
        return f"{self.task_id} → {self.parent_task_id or f'{self.range_start}-{self.range_end}'}"


class TaskAttempt(models.Model):
    """One run of a task, as the sync saw it: Batch keeps only the last attempt's times, exit code and node, so each
    attempt is recorded here when the sync sees it (batchsync/attempts.py, called by the task pass) and its output
    is kept by the archiver before the next attempt overwrites it (batchsync/archive.py).

    What Batch never reports stays empty rather than guessed: an earlier attempt's exit code and end time (Batch
    retries only after a non-zero exit, so `result` is "failure"), and everything but its number for an attempt
    that started and failed between two syncs (`start_time` None)."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()          # 1, 2, … in the order they ran
    retry_count = models.IntegerField(default=0)    # Batch's retryCount while this attempt ran
    start_time = models.DateTimeField(null=True, blank=True)
    end_time = models.DateTimeField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    result = models.CharField(max_length=20, choices=TaskResult.choices, blank=True)
    node_id = models.CharField(max_length=100, blank=True)
    pool_id = models.CharField(max_length=64, blank=True)
    # The archiver's bookkeeping: when it settled this attempt's output (saved, or found already overwritten), and
    # the ETag of the saved copy it came from (so one upload is never taken for two attempts).
    output_saved_at = models.DateTimeField(null=True, blank=True)
    output_kept = models.BooleanField(default=False)
    output_etag = models.CharField(max_length=100, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["task", "number"]
        constraints = [models.UniqueConstraint(fields=["task", "number"], name="attempt_unique_per_task")]
        # The archiver finds earlier attempts from their successors: the few rows numbered 2 and up.
        indexes = [models.Index(fields=["number"], name="attempt_number")]

    def __str__(self) -> str:
        return f"{self.task_id} #{self.number}"

    @property
    def seen(self) -> bool:
        """Whether the sync saw it run; an attempt that started and failed between two syncs was not."""
        return self.start_time is not None
