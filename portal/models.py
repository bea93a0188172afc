"""The mirror of Batch accounts: pools, nodes, jobs and tasks as last seen by the sync.

Mirrored fields keep Batch's names in snake_case and are written only by batchsync/sync.py;
our bookkeeping fields end in `_at`. Rows Batch deleted stay, marked by `gone_at`."""

from django.conf import settings
from django.db import models


class PoolState(models.TextChoices):
    ACTIVE = "active"
    DELETING = "deleting"
    UNKNOWN = "unknown"


class AllocationState(models.TextChoices):
    STEADY = "steady"
    RESIZING = "resizing"
    STOPPING = "stopping"
    UNKNOWN = "unknown"


class NodeState(models.TextChoices):
    CREATING = "creating"
    STARTING = "starting"
    WAITING_FOR_START_TASK = "waitingforstarttask", "waiting for start task"
    START_TASK_FAILED = "starttaskfailed", "start task failed"
    IDLE = "idle"
    RUNNING = "running"
    OFFLINE = "offline"
    LEAVING_POOL = "leavingpool", "leaving pool"
    UNUSABLE = "unusable"
    REBOOTING = "rebooting"
    REIMAGING = "reimaging"
    PREEMPTED = "preempted"
    DEALLOCATING = "deallocating"
    DEALLOCATED = "deallocated"
    UPGRADING_OS = "upgradingos", "upgrading OS"
    UNKNOWN = "unknown"


class JobState(models.TextChoices):
    ACTIVE = "active"
    DISABLING = "disabling"
    DISABLED = "disabled"
    ENABLING = "enabling"
    TERMINATING = "terminating"
    COMPLETED = "completed"
    DELETING = "deleting"
    UNKNOWN = "unknown"


class TaskState(models.TextChoices):
    ACTIVE = "active"
    PREPARING = "preparing"
    RUNNING = "running"
    COMPLETED = "completed"
    UNKNOWN = "unknown"


class TaskResult(models.TextChoices):
    SUCCESS = "success"
    FAILURE = "failure"


class BatchAccount(models.Model):
    """One Batch account the portal fronts. Its key is a secret and lives in the environment,
    in the variable named by `key_env_var`, never in the database."""

    name = models.SlugField(unique=True, help_text="Short name used in the portal.")
    account_url = models.URLField(max_length=300)
    account_name = models.CharField(max_length=64)
    key_env_var = models.CharField(max_length=100, default="BATCH_ACCOUNT_KEY")
    is_default = models.BooleanField(default=False)
    last_synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Pool(models.Model):
    account = models.ForeignKey(BatchAccount, on_delete=models.PROTECT, related_name="pools")
    pool_id = models.CharField(max_length=64)
    display_name = models.CharField(max_length=1024, blank=True)
    state = models.CharField(max_length=20, choices=PoolState.choices, default=PoolState.UNKNOWN)
    allocation_state = models.CharField(max_length=20, choices=AllocationState.choices, default=AllocationState.UNKNOWN)
    vm_size = models.CharField(max_length=100, blank=True)
    target_dedicated_nodes = models.IntegerField(default=0)
    target_low_priority_nodes = models.IntegerField(default=0)
    current_dedicated_nodes = models.IntegerField(default=0)
    current_low_priority_nodes = models.IntegerField(default=0)
    task_slots_per_node = models.IntegerField(default=1)
    node_fill_type = models.CharField(max_length=20, blank=True)
    start_task_command_line = models.TextField(blank=True)
    creation_time = models.DateTimeField(null=True, blank=True)
    state_transition_time = models.DateTimeField(null=True, blank=True)
    last_modified = models.DateTimeField(null=True, blank=True)
    etag = models.CharField(max_length=100, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    gone_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pool_id"]
        constraints = [models.UniqueConstraint(fields=["account", "pool_id"], name="pool_unique_per_account")]

    def __str__(self) -> str:
        return self.pool_id


class Node(models.Model):
    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="nodes")
    node_id = models.CharField(max_length=100)
    state = models.CharField(max_length=30, choices=NodeState.choices, default=NodeState.UNKNOWN)
    scheduling_state = models.CharField(max_length=20, blank=True)
    is_dedicated = models.BooleanField(default=True)
    running_tasks_count = models.IntegerField(default=0)
    running_task_slots_count = models.IntegerField(default=0)
    total_tasks_run = models.IntegerField(default=0)
    total_tasks_succeeded = models.IntegerField(default=0)
    start_task_state = models.CharField(max_length=20, blank=True)
    start_task_exit_code = models.IntegerField(null=True, blank=True)
    start_task_result = models.CharField(max_length=20, blank=True)
    start_task_failure_code = models.CharField(max_length=100, blank=True)
    start_task_failure_message = models.TextField(blank=True)
    state_transition_time = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    gone_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["node_id"]
        constraints = [models.UniqueConstraint(fields=["pool", "node_id"], name="node_unique_per_pool")]

    def __str__(self) -> str:
        return self.node_id


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
    # Batch's own task counts (get_job_task_counts): progress without counting our task table.
    task_active = models.IntegerField(default=0)
    task_running = models.IntegerField(default=0)
    task_completed = models.IntegerField(default=0)
    task_succeeded = models.IntegerField(default=0)
    task_failed = models.IntegerField(default=0)
    # Who submitted it through the portal (set by the submission issue; empty for outside jobs).
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="submitted_jobs")
    # Incremental task sync: tasks changed at or after this time (minus a skew overlap) are fetched next.
    task_watermark_at = models.DateTimeField(null=True, blank=True)
    tasks_synced_at = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    gone_at = models.DateTimeField(null=True, blank=True)

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
    def task_total(self) -> int:
        return self.task_active + self.task_running + self.task_completed


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
    last_synced_at = models.DateTimeField(null=True, blank=True)
    gone_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["task_id"]
        constraints = [models.UniqueConstraint(fields=["job", "task_id"], name="task_unique_per_job")]
        indexes = [
            # Keyset pagination of the job's task table, for each sort and filter the page offers.
            models.Index(fields=["job", "state", "task_id"], name="task_job_state_id"),
            models.Index(fields=["job", "start_time", "task_id"], name="task_job_start"),
            models.Index(fields=["job", "end_time", "task_id"], name="task_job_end"),
            models.Index(fields=["job", "duration_seconds", "task_id"], name="task_job_duration"),
            models.Index(fields=["job", "exit_code", "task_id"], name="task_job_exit"),
            models.Index(fields=["job", "result", "task_id"], name="task_job_result"),
            # Dashboard: recent failures and tasks finished per hour.
            models.Index(fields=["result", "-end_time"], name="task_result_end"),
            models.Index(fields=["-end_time"], name="task_end"),
        ]

    def __str__(self) -> str:
        return f"{self.job_id}/{self.task_id}"
