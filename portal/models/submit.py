"""Job templates (what people can run), their immutable versions, and submissions (the outbox to Batch)."""

import uuid
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.functional import cached_property

from portal.models.accounts import BatchAccount, Team

if TYPE_CHECKING:   # for the annotation only: loading the models must not load the spec parser
    from portal.submit.spec import TemplateSpec
from portal.models.jobs import Job, JobOutcome, Outcome


class JobTemplate(models.Model):
    """Something people can run from the portal ("Count words in each text file"). What it runs lives in its
    versions: a submission records the version it used, so editing a template never changes past submissions."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True, help_text="Offered to people who submit; past submissions stay.")
    # Null: the default account (the one in settings), so templates written before there were several keep working.
    account = models.ForeignKey(BatchAccount, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="job_templates", verbose_name="runs on",
                                help_text="The Batch account its jobs are submitted to; empty: the default account.")
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
    """One immutable revision of a template's spec (checked by portal.submit.spec.parse_spec); a new revision is a
    new row with the next number (portal.submit.services.job_template_version_create)."""

    template = models.ForeignKey(JobTemplate, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    spec = models.JSONField(help_text="Pool, command line with {parameter} placeholders, parameters, fan-out, files, "
                                      "outputs, environment, constraints; see portal/submit/spec.py.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["template", "-number"]
        constraints = [models.UniqueConstraint(fields=["template", "number"], name="template_version_unique")]

    def __str__(self) -> str:
        return f"{self.template} v{self.number}"

    def clean(self) -> None:
        # Imported here: the spec parser loads the gateway (and the Azure SDK), which loading the models must not.
        from portal.submit.spec import SpecError, parse_spec  # noqa: PLC0415

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
    def parsed(self) -> "TemplateSpec":
        from portal.submit.spec import parse_spec  # noqa: PLC0415 (lazily, as in clean())

        return parse_spec(self.spec)


class SubmissionState(models.TextChoices):
    PENDING = "pending"
    CREATING_JOB = "creating_job", "creating the job"
    ADDING_TASKS = "adding_tasks", "adding tasks"
    FINALIZING = "finalizing"
    SUBMITTED = "submitted"
    FAILED = "failed"
    # Estimated past its team's per-submission limit (Team.approval_limit): nothing is sent to Batch until an Operator
    # of the team or an Admin approves it (portal.submit.services.submission_decide); never driven until then.
    AWAITING_APPROVAL = "awaiting_approval", "waiting for approval"


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
    # A retry of failed tasks (portal.submit.services.submission_retry_failed): the ended submission whose failures
    # this one runs again, with the same template version, values and files, and only the tasks in `task_indexes`.
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries",
                                 help_text="The submission whose failed tasks this one runs again.")
    # The tasks of the expansion to send, by index from 1 (task t00037 is 37), ascending; empty means every task.
    # Indexes rather than specs: the tasks are expanded from the spec as the parent's were, so they keep its ids.
    task_indexes = models.JSONField(default=list, blank=True,
                                    help_text="Only these tasks (by index from 1); empty: all of them.")
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="submissions",
                             help_text="The submitter's team when it was made.")
    # What people call it ("Word counts for March"): shown wherever the job or submission appears, its Batch id
    # beside it. Set once by portal.submit.services (stripped, at most NAME_MAX_LENGTH); a template name and date
    # when left empty.
    name = models.CharField(max_length=200, blank=True)
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
            # The dashboard's "Waiting for approval": the few rows in that state, newest first.
            models.Index(fields=["-created_at"], name="submission_awaiting_approval",
                         condition=models.Q(state="awaiting_approval")),
        ]

    # Every job a submission makes is named sub-<its public id in hex>: the id derives from the row, so a retry that
    # finds the job already there knows it is its own. Lower case, because Batch ids are case-insensitive.
    JOB_ID_PREFIX = "sub-"
    NAME_MAX_LENGTH = 200

    def __str__(self) -> str:
        return self.job_id

    @property
    def title(self) -> str:
        """What people call it: its name, else (a submission made before names) its template's name."""
        return self.name or self.template_version.template.name

    @property
    def name_and_id(self) -> str:
        """The name with the Batch id beside it, for one line of text (the audit history, e-mails)."""
        return f"{self.name} ({self.job_id})" if self.name else self.job_id

    @property
    def is_final(self) -> bool:
        return self.state in (SubmissionState.SUBMITTED, SubmissionState.FAILED)

    @property
    def outcome(self) -> JobOutcome:
        """How it turned out: waiting for approval while it does (nothing is being sent), submitting until Batch has
        the whole job, not submitted if it never will, then its job's outcome (Job.outcome, the one rule), running
        until the sync has seen the job."""
        if self.state == SubmissionState.FAILED:
            return JobOutcome(Outcome.NOT_SUBMITTED)
        if self.state == SubmissionState.AWAITING_APPROVAL:
            return JobOutcome(Outcome.AWAITING_APPROVAL)
        if not self.is_final:
            return JobOutcome(Outcome.SUBMITTING)
        job = self.job
        return job.outcome if job is not None else JobOutcome(Outcome.RUNNING)

    @classmethod
    def job_id_for(cls, public_id: uuid.UUID) -> str:
        return f"{cls.JOB_ID_PREFIX}{public_id.hex}"

    @cached_property
    def job(self) -> Job | None:
        """The job this submission made, as the mirror has it; None until the sync has seen it."""
        return Job.objects.filter(account_id=self.account_id, job_id=self.job_id).first()

    @classmethod
    def of_job(cls, job: Job) -> "Submission | None":
        """The submission that made `job`, with its template; None for a job made outside the portal."""
        if not job.job_id.startswith(cls.JOB_ID_PREFIX):
            return None
        return (cls.objects.select_related("template_version__template")
                .filter(account_id=job.account_id, job_id=job.job_id).first())
