"""The mirror of Batch accounts: pools, nodes, jobs and tasks as last seen by the sync.

Mirrored fields keep Batch's names in snake_case and are written only by batchsync/sync.py;
our bookkeeping fields end in `_at`. Rows Batch deleted stay, marked by `gone_at`."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
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


class Team(models.Model):
    """A group of people who share work: Team scope on every list, and what an Operator may act on."""

    name = models.CharField(max_length=100, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="teams", blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


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
    # The submitter's team at submission time (portal.access scopes and Operator rights); empty for outside jobs.
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
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
    # When stdout/stderr were found saved in Blob (by the task's own output-file rules or by the archiver), and
    # the first line of stderr that looks like an error: part of the failure-triage signature.
    logs_saved_at = models.DateTimeField(null=True, blank=True)
    error_line = models.CharField(max_length=300, blank=True)

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
            # Failure triage: failed tasks grouped by signature.
            models.Index(fields=["result", "failure_code", "exit_code"], name="task_failure_signature"),
        ]

    def __str__(self) -> str:
        return self.task_id


# The most nodes of each kind (dedicated, low-priority) a pool can be given from the portal. Batch allows far
# more within the account's quota; this cap keeps a slip of the keyboard from starting a costly pool.
MAX_NODES_PER_KIND = 100


class NodeFillType(models.TextChoices):
    SPREAD = "spread", "spread (tasks across all nodes)"
    PACK = "pack", "pack (fill one node before the next)"


class PoolTemplate(models.Model):
    """A recipe for a pool that people with `manage_pools` create from: machine, image, sizes, start task.

    Edited in the admin; `portal.services.pool_create` turns it into a Batch pool."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    vm_size = models.CharField(max_length=100, help_text="Azure VM size, e.g. standard_d2s_v3.")
    image_publisher = models.CharField(max_length=100)
    image_offer = models.CharField(max_length=100)
    image_sku = models.CharField(max_length=100)
    image_version = models.CharField(max_length=50, default="latest")
    node_agent_sku_id = models.CharField(max_length=100, help_text="e.g. batch.node.ubuntu 22.04")
    default_dedicated_nodes = models.PositiveIntegerField(default=1, validators=[MaxValueValidator(MAX_NODES_PER_KIND)])
    default_low_priority_nodes = models.PositiveIntegerField(default=0,
                                                             validators=[MaxValueValidator(MAX_NODES_PER_KIND)])
    task_slots_per_node = models.PositiveIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(256)],
        help_text="How many tasks run at once on one node (Batch allows 1–256).")
    node_fill_type = models.CharField(max_length=10, choices=NodeFillType.choices, default=NodeFillType.SPREAD)
    start_task_command_line = models.TextField(
        blank=True, help_text="Runs on every node as it joins the pool; leave empty for no start task.")
    start_task_resource_files = models.JSONField(
        default=list, blank=True,
        help_text='Files downloaded before the start task runs: '
                  '[{"http_url": "https://…", "file_path": "setup.sh"}].')
    start_task_wait_for_success = models.BooleanField(
        default=True, help_text="Run no tasks on a node until its start task has succeeded.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [("manage_pools", "Can create, resize and delete Batch pools")]

    def __str__(self) -> str:
        return self.name

    def clean(self):
        errors = {}
        problem = resource_files_problem(self.start_task_resource_files)
        if problem:
            errors["start_task_resource_files"] = problem
        if self.start_task_resource_files and not self.start_task_command_line.strip():
            errors["start_task_command_line"] = "Resource files are downloaded for the start task: give it a command line."
        if errors:
            raise ValidationError(errors)

    @property
    def image_label(self) -> str:
        return f"{self.image_publisher} / {self.image_offer} / {self.image_sku} / {self.image_version}"

    def resource_files_for_display(self) -> list[dict]:
        """The start task's files with each URL's query string left out: it may carry a SAS token."""
        shown = []
        for item in self.start_task_resource_files or []:
            url = str(item.get("http_url", ""))
            base, _, query = url.partition("?")
            shown.append({"url": base, "has_query": bool(query), "file_path": item.get("file_path", "")})
        return shown


def resource_files_problem(value) -> str | None:
    """What is wrong with a start task's resource file list, in words for the person editing it, or None."""
    if value in (None, ""):
        return None
    if not isinstance(value, list):
        return 'Give a list, e.g. [{"http_url": "https://…/setup.sh", "file_path": "setup.sh"}].'
    for number, item in enumerate(value, start=1):
        if not isinstance(item, dict) or set(item) != {"http_url", "file_path"}:
            return f'File {number}: give exactly "http_url" and "file_path".'
        url, path = item["http_url"], item["file_path"]
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            return f"File {number}: http_url must start with https:// (or http://)."
        # Batch places the file relative to the task's working directory; it rejects paths leaving it.
        if (not isinstance(path, str) or not path.strip() or path.startswith(("/", "\\"))
                or ".." in path.replace("\\", "/").split("/")):
            return f"File {number}: file_path must be a relative path inside the working directory, e.g. setup.sh."
    return None


# --- job templates and submissions (the submission issue) ------------------------------------------------------


class JobTemplate(models.Model):
    """Something people can run from the portal ("Count words in each text file"). What it runs lives in its
    versions: a submission records the version it used, so editing a template never changes past submissions."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True, help_text="Offered to people who submit; past submissions stay.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [("write_command_lines", "Can write free-form command lines for jobs and job templates")]

    def __str__(self) -> str:
        return self.name

    def current_version(self) -> "JobTemplateVersion | None":
        return self.versions.order_by("-number").first()


class JobTemplateVersion(models.Model):
    """One immutable revision of a template's spec (checked by portal.templating.parse_spec); a new revision is a
    new row with the next number (portal.services.job_template_version_create)."""

    template = models.ForeignKey(JobTemplate, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    spec = models.JSONField(help_text="Pool, command line with {parameter} placeholders, parameters, fan-out, files, "
                                      "outputs, environment, constraints; see portal/templating.py.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["template", "-number"]
        constraints = [models.UniqueConstraint(fields=["template", "number"], name="template_version_unique")]

    def __str__(self) -> str:
        return f"{self.template} v{self.number}"

    def clean(self):
        from portal.templating import SpecError, parse_spec

        try:
            parse_spec(self.spec)
        except SpecError as exc:
            raise ValidationError({"spec": exc.problems}) from None
        if self.pk and self.submissions.exists():
            stored = type(self).objects.filter(pk=self.pk).values_list("spec", flat=True).first()
            if stored != self.spec:
                raise ValidationError({"spec": "This version has been used by submissions and cannot change; "
                                               "save a new version instead."})

    @property
    def parsed(self):
        from portal.templating import parse_spec

        return parse_spec(self.spec)


class SubmissionState(models.TextChoices):
    PENDING = "pending"
    CREATING_JOB = "creating_job", "creating the job"
    ADDING_TASKS = "adding_tasks", "adding tasks"
    FINALIZING = "finalizing"
    SUBMITTED = "submitted"
    FAILED = "failed"


# States a submission still has work in; the re-driver looks only at these.
UNFINISHED_SUBMISSION_STATES = [SubmissionState.PENDING, SubmissionState.CREATING_JOB, SubmissionState.ADDING_TASKS,
                                SubmissionState.FINALIZING]


class Submission(models.Model):
    """The outbox of one submission: written with everything needed to build its job and tasks, then driven to
    Batch by batchsync/submit.py (the only writer of its progress), and re-driven until it is final."""

    public_id = models.UUIDField(unique=True, editable=False)
    account = models.ForeignKey(BatchAccount, on_delete=models.PROTECT, related_name="submissions")
    template_version = models.ForeignKey(JobTemplateVersion, on_delete=models.PROTECT, related_name="submissions")
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                                     related_name="submissions")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns",
                               help_text="The submission this one re-runs.")
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="submissions",
                             help_text="The submitter's team when it was made.")
    parameters = models.JSONField(default=dict, blank=True, help_text="Checked values, by parameter name.")
    # {parameter: [{"name", "url", "size"}]}, plus the rows of a CSV the tasks fan out over: the expansion needs
    # nothing but this row and the template version.
    inputs = models.JSONField(default=dict, blank=True)
    csv_rows = models.JSONField(default=list, blank=True)
    command_line = models.TextField(blank=True, help_text="A free-form command line replacing the template's.")
    state = models.CharField(max_length=20, choices=SubmissionState.choices, default=SubmissionState.PENDING)
    job_id = models.CharField(max_length=64, unique=True, help_text="Batch id of the job, derived from public_id.")
    total_tasks = models.PositiveIntegerField(default=0)
    tasks_added = models.PositiveIntegerField(default=0)
    error_message = models.TextField(blank=True, help_text="What went wrong, for the person who submitted.")
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    # When the submitter was e-mailed that the job finished; set once, so nobody is told twice.
    notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("submit", "Can submit work from job templates and act on their own submissions"),
                       ("operate_team_work", "Can act on the jobs and submissions of their teams")]
        indexes = [
            models.Index(fields=["submitted_by", "-created_at"], name="submission_submitter"),
            # The re-driver's two questions, over unfinished rows only: which retries are due, which went quiet.
            models.Index(fields=["next_attempt_at"], name="submission_redrive_due",
                         condition=models.Q(state__in=UNFINISHED_SUBMISSION_STATES)),
            models.Index(fields=["updated_at"], name="submission_redrive_stale",
                         condition=models.Q(state__in=UNFINISHED_SUBMISSION_STATES)),
        ]

    def __str__(self) -> str:
        return self.job_id

    @property
    def is_final(self) -> bool:
        return self.state in (SubmissionState.SUBMITTED, SubmissionState.FAILED)


# --- audit history (the access and audit issue) -----------------------------------------------------------------


class AuditEvent(models.Model):
    """One thing a person did, appended and never changed: each row carries the hash of the previous one, so a
    row edited or removed behind the app's back breaks the chain (`manage.py audit_verify`); on PostgreSQL a
    trigger refuses UPDATE and DELETE outright. No foreign keys: deleting a user or a job must not touch history."""

    at = models.DateTimeField()
    actor_id = models.IntegerField(null=True, blank=True, help_text="Id of the user; empty for the system.")
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=40, blank=True)
    object_id = models.CharField(max_length=200, blank=True)
    object_label = models.CharField(max_length=300, blank=True)
    team_id = models.IntegerField(null=True, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    reason = models.TextField(blank=True)
    changes = models.JSONField(default=dict, blank=True, help_text="{field: [before, after]}")
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["-at"], name="audit_at"),
            models.Index(fields=["actor_id", "-at"], name="audit_actor"),
            models.Index(fields=["action", "-at"], name="audit_action"),
            models.Index(fields=["object_type", "object_id", "-at"], name="audit_object"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name or 'system'} {self.action} {self.object_label}"
