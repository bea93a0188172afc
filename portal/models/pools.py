"""The mirror of Batch pools and their nodes, and the pool templates people create pools from.

Mirrored fields keep Batch's names in snake_case and are written only by batchsync/sync/; our bookkeeping fields
end in `_at`. Rows Batch deleted stay, marked by `gone_at`."""

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from portal.models.accounts import BatchAccount


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
    # Autoscale on, and its last run's error; the first of Batch's resizeErrors (e.g. AccountCoreQuotaReached).
    enable_auto_scale = models.BooleanField(default=False, db_default=False)
    auto_scale_error = models.TextField(blank=True, db_default="")
    resize_error_code = models.CharField(max_length=100, blank=True, db_default="")
    resize_error_message = models.TextField(blank=True, db_default="")
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

    @property
    def is_live(self) -> bool:
        """A pool that still exists in Batch can resize, and its nodes change state, at any time."""
        return self.gone_at is None


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


# The most nodes of each kind (dedicated, low-priority) a pool can be given from the portal. Batch allows far
# more within the account's quota; this cap keeps a slip of the keyboard from starting a costly pool.
MAX_NODES_PER_KIND = 100


class NodeFillType(models.TextChoices):
    SPREAD = "spread", "spread (tasks across all nodes)"
    PACK = "pack", "pack (fill one node before the next)"


class PoolTemplate(models.Model):
    """A recipe for a pool that people with `manage_pools` create from: machine, image, sizes, start task.

    Edited in the admin; `portal.pools.services.pool_create` turns it into a Batch pool."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    vm_size = models.CharField(max_length=100, help_text="Azure VM size, e.g. standard_d2s_v3.")
    image_publisher = models.CharField(max_length=100)
    image_offer = models.CharField(max_length=100)
    image_sku = models.CharField(max_length=100)
    image_version = models.CharField(max_length=50, default="latest")
    node_agent_sku_id = models.CharField(max_length=100, help_text="e.g. batch.node.ubuntu 22.04")
    # Null: the default account, as for job templates.
    account = models.ForeignKey(BatchAccount, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="pool_templates", verbose_name="runs on",
                                help_text="The Batch account its pools are created in; empty: the default account.")
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

    def clean(self) -> None:
        errors = {}
        problem = resource_files_problem(self.start_task_resource_files)
        if problem:
            errors["start_task_resource_files"] = problem
        if self.start_task_resource_files and not self.start_task_command_line.strip():
            errors["start_task_command_line"] = ("Resource files are downloaded for the start task: "
                                                 "give it a command line.")
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


def resource_files_problem(value: object) -> str | None:
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
