"""What submitting writes: job template versions and submissions (the outbox row the submit worker sends to Batch),
each with its audit event in the same transaction. Every check happens here, before anything is written: a form's
own checks only help people hear about a mistake sooner."""

from __future__ import annotations

import logging
import unicodedata
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Model
from django.utils import timezone

from batchsync.accounts import runs_on
from batchsync.tasks import submit_submission_task
from portal import access
from portal.audit.services import record_event
from portal.costs.budgets import approval_reason
from portal.costs.preview import CostEstimate, estimate_for_preview
from portal.models import (
    BatchAccount,
    Job,
    JobState,
    JobTemplate,
    JobTemplateVersion,
    Submission,
    SubmissionState,
    Task,
    TaskState,
    Team,
)
from portal.submit.limits import task_limit_problems
from portal.submit.preview import Preview, preview
from portal.submit.render import batch_id_problems, missing_csv_columns, task_id, task_index
from portal.submit.spec import (
    MAX_TASKS,
    SUBMISSION_NAME_FIELD,
    SpecError,
    TemplateSpec,
    command_line_problems,
    parse_spec,
)
from portal.submit.values import InputFile, ParameterErrors, clean_values, parse_csv

logger = logging.getLogger(__name__)


class SubmissionError(Exception):
    """A submission was not made; `message` is for the person, `field_errors` maps parameter names to words.
    Nothing was written and nothing was sent to Batch."""

    def __init__(self, message: str, *, field_errors: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.field_errors = field_errors or {}


# Every submission's job id has this shape (Submission.job_id_for): what a template is checked with when it is saved.
_SHAPE_OF_A_JOB_ID = Submission.job_id_for(uuid.UUID(int=0))


def job_template_spec_check(spec: Mapping) -> TemplateSpec:
    """The spec parsed, and the ids and prefixes its submissions would send checked against Batch's limits;
    SpecError lists every problem, each naming its field. What saving a template checks."""
    parsed = parse_spec(spec)
    problems = batch_id_problems(parsed, job_id=_SHAPE_OF_A_JOB_ID)
    if problems:
        raise SpecError(problems)
    return parsed


def job_template_version_create(*, user: User, template: JobTemplate, spec: dict) -> JobTemplateVersion:
    """A new version of `template` with the next number; the spec is checked first (SubmissionError lists what is
    wrong). Writing a command line is writing code that runs on the pool, so it needs portal.write_command_lines."""
    if not access.can_write_command_lines(user):
        raise PermissionDenied("Writing job templates needs the portal.write_command_lines permission.")
    try:
        job_template_spec_check(spec)
    except SpecError as exc:
        raise SubmissionError("The template spec has problems: " + "; ".join(exc.problems)) from None
    with transaction.atomic():
        # Locks the template row, so two editors saving at once get consecutive numbers instead of an error.
        type(template).objects.select_for_update().get(pk=template.pk)
        latest: tuple[int, dict[str, Any]] = (
            template.versions.order_by("-number").values_list("number", "spec").first() or (0, {}))
        version = JobTemplateVersion.objects.create(template=template, number=latest[0] + 1, spec=spec,
                                                    created_by=user)
        # What changed, key by key of the spec ("spec.command_line: before → after"), and the version number.
        changes = {f"spec.{key}": [latest[1].get(key), spec.get(key)]
                   for key in sorted(set(latest[1]) | set(spec)) if latest[1].get(key) != spec.get(key)}
        _record_submission_action(user=user, action="job_template.version_create", target=str(version),
                                  obj=template, changes={"version": [latest[0] or None, version.number], **changes},
                                  details={"template_id": template.pk, "number": version.number})
    return version


def submission_name_clean(name: str | None, *, template: JobTemplate, now: datetime | None = None) -> str:
    """The name a submission will carry: what the person typed, spaces trimmed and runs of them made one, or the
    template's name and the date when they typed nothing. SubmissionError (field "name") for a name too long or
    with control characters; the pages escape it like any text."""
    cleaned = " ".join((name or "").split())
    if not cleaned:
        return f"{template.name} {timezone.localtime(now or timezone.now()):%Y-%m-%d %H:%M}"
    if len(cleaned) > Submission.NAME_MAX_LENGTH:
        raise SubmissionError("The name is too long; nothing was submitted.",
                              field_errors={SUBMISSION_NAME_FIELD: f"at most {Submission.NAME_MAX_LENGTH} characters, "
                                                    f"this one has {len(cleaned)}."})
    if any(unicodedata.category(char).startswith("C") for char in cleaned):
        raise SubmissionError("The name has characters that cannot be shown; nothing was submitted.",
                              field_errors={SUBMISSION_NAME_FIELD: "use letters, digits, spaces and punctuation only."})
    return cleaned


@dataclass(frozen=True)
class PreparedSubmission:
    """A submission checked and ready to write: what `submission_prepare` returns for the preview page."""
    name: str                    # cleaned, or the default (submission_name_clean)
    template_version: JobTemplateVersion
    values: dict
    files: dict
    rows: list | None
    command_line: str | None     # None: the template's own
    preview: Preview             # .summary is the sentence to show


def submission_prepare(*, user: User, template_version: JobTemplateVersion | int | str | None, parameters: dict,
                       uploaded_files: Mapping[str, Sequence[InputFile]] | None = None,
                       parent: Submission | None = None, command_line: str | None = None,
                       name: str | None = None) -> PreparedSubmission:
    """Check everything `submission_create` would, without writing anything: the preview page calls this.
    SubmissionError says what the person must fix."""
    if not access.can_submit(user):
        raise PermissionDenied("Submitting needs the Submitter role (the portal.submit permission).")
    version = _offered_version(template_version, parent=parent)
    # A re-run is an action on the parent: its submitter, or an Operator of its team.
    if parent is not None and (not isinstance(parent, Submission) or not access.can_act_on(user, parent)):
        raise SubmissionError("You can only re-run your own submissions or, as an Operator, your teams'.")
    spec = version.parsed
    cleaned_name = submission_name_clean(name, template=version.template)
    # A version saved before its ids were checked (or under older limits) is refused here, before anything is written,
    # rather than by Batch after the submission was made.
    problems = batch_id_problems(spec, job_id=_SHAPE_OF_A_JOB_ID)
    if problems:
        raise SubmissionError(f"The template “{version.template.name}” cannot be submitted as it stands: "
                              + " ".join(problems) + " Nothing was submitted; ask the template's owner to fix it.")
    if command_line is not None and command_line.strip() == spec.command_line.strip():
        command_line = None
    if command_line is not None:
        if not access.can_write_command_lines(user):
            raise PermissionDenied("Writing your own command line needs the portal.write_command_lines permission.")
        placeholders = {p.name for p in spec.parameters} | {p for p in [spec.fan_out.placeholder] if p is not None}
        problems = command_line_problems(command_line, placeholders, csv_columns=spec.fan_out.kind == "csv")
        if not command_line.strip() or problems:
            raise SubmissionError("The command line cannot be used: " + (" ".join(problems) or "it is empty."),
                                  field_errors={"command_line": " ".join(problems) or "Give a command line."})
    try:
        values, files = clean_values(spec, parameters or {}, uploaded_files or {})
        rows = None
        if spec.fan_out.kind == "csv":
            assert spec.fan_out.parameter is not None   # a CSV fan-out names its file parameter
            table = files.get(spec.fan_out.parameter, ())
            if not table or table[0].content is None:
                raise ParameterErrors({spec.fan_out.parameter: "upload the CSV file the tasks are made from."})
            rows = parse_csv(spec.fan_out.parameter, table[0].content)
            missing = missing_csv_columns(spec, rows, command_line)
            if missing:
                raise ParameterErrors({spec.fan_out.parameter: "the CSV file has no column named "
                                                               + ", ".join(missing) + "."})
    except ParameterErrors as exc:
        raise SubmissionError("Some values need fixing; nothing was submitted.", field_errors=exc.errors) from None
    too_large = task_limit_problems(spec, values, files, rows=rows, command_line=command_line)
    if too_large:
        raise SubmissionError("Batch would refuse these tasks; nothing was submitted. "
                              + " ".join(too_large.values()), field_errors=too_large)
    previewed = preview(spec, values, files, rows)
    if previewed.task_count == 0:
        raise SubmissionError("These values create no tasks; nothing was submitted. Check the inputs.")
    if previewed.task_count > MAX_TASKS:
        raise SubmissionError(f"These values create {previewed.task_count:,} tasks; the most one submission may "
                              f"create is {MAX_TASKS:,}. Nothing was submitted; split the work.")
    return PreparedSubmission(name=cleaned_name, template_version=version, values=values, files=files, rows=rows,
                              command_line=command_line, preview=previewed)


def submission_create(*, user: User, template_version: JobTemplateVersion | int | str | None, parameters: dict,
                      uploaded_files: Mapping[str, Sequence[InputFile]] | None = None, parent: Submission | None = None,
                      command_line: str | None = None, public_id: uuid.UUID | None = None,
                      name: str | None = None) -> Submission:
    """Record a submission (the outbox row) and, once it is committed, ask a worker to send it to Batch.

    `template_version` is a JobTemplateVersion or its id, as the form posted it; it must be the template's current
    version (or the parent's, for a re-run) of an active template. `uploaded_files` maps file parameters to
    portal.submit.values.InputFile lists. Raises SubmissionError (nothing written, nothing enqueued) or
    PermissionDenied.

    `name` is what people will call it (submission_name_clean: trimmed, at most Submission.NAME_MAX_LENGTH, the
    template's name and the date when empty); it also becomes the job's display name in Batch.

    `public_id` is the idempotency key the preview page handed out: a second call with it (a double click, a
    re-posted form) returns the submission the first made, and never makes another."""
    if public_id is not None:
        existing = _submission_with_key(user, public_id)
        if existing is not None:
            return existing
    prepared = submission_prepare(user=user, template_version=template_version, parameters=parameters,
                                  uploaded_files=uploaded_files, parent=parent, command_line=command_line,
                                  name=name)
    public_id = public_id or uuid.uuid4()
    account = runs_on(prepared.template_version.template.account)
    if not account.enabled:
        raise SubmissionError(f"The template runs on the Batch account “{account.name}”, which an administrator has "
                              "disabled, so nothing was submitted. Ask an administrator to enable it or to point the "
                              "template at another account.")
    spec = prepared.template_version.parsed
    team = access.submission_team(user)
    approval = approval_reason(team=team, estimate=estimate_for_preview(
        template=prepared.template_version.template, spec=spec, task_count=prepared.preview.task_count,
        account=account))
    try:
        submission = _submission_write(user=user, prepared=prepared, public_id=public_id, account=account,
                                       team=team, parent=parent, approval=approval)
    except IntegrityError:
        # Two posts of the same preview raced past the check above: the other one's row is the submission.
        existing = _submission_with_key(user, public_id)
        if existing is None:
            raise
        return existing
    return submission


def _submission_with_key(user: User, public_id: uuid.UUID) -> Submission | None:
    existing = Submission.objects.filter(public_id=public_id).first()
    if existing is not None and existing.submitted_by_id != user.pk:
        # Not a double click: someone else's key. Say nothing about that submission.
        raise SubmissionError("This form cannot be submitted again; nothing was submitted. Start again from the "
                              "template list.")
    return existing


def _submission_write(*, user: User, prepared: PreparedSubmission, public_id: uuid.UUID, account: BatchAccount,
                      team: Team | None, parent: Submission | None, approval: str = "") -> Submission:
    """`approval`: why it must wait for approval (portal.costs.budgets.approval_reason); then it is written waiting
    and nothing is enqueued until submission_decide approves it."""
    version, preview = prepared.template_version, prepared.preview
    with transaction.atomic():
        submission = Submission.objects.create(
            public_id=public_id, account=account, template_version=version, submitted_by=user, parent=parent,
            team=team, name=prepared.name,
            parameters=prepared.values,
            # Uploaded files are kept as blob paths; a read SAS is signed when the tasks are built.
            inputs={name: [{"name": f.name, "blob": f.blob, "size": f.size,
                            **({"snapshot": f.snapshot} if f.snapshot else {})} if f.blob
                           else {"name": f.name, "url": f.url, "size": f.size} for f in given]
                    for name, given in prepared.files.items()},
            csv_rows=prepared.rows or [], command_line=prepared.command_line or "",
            job_id=Submission.job_id_for(public_id), total_tasks=preview.task_count,
            state=SubmissionState.AWAITING_APPROVAL if approval else SubmissionState.PENDING)
        _record_submission_action(user=user, action="submission.create", target=submission.job_id,
                                  obj=submission,
                                  details={"name": submission.name, "template_version_id": version.pk,
                                           "template": str(version),
                                           "tasks": preview.task_count, "job_id": submission.job_id,
                                           "parent": parent.job_id if parent else None,
                                           "parameters": prepared.values,
                                           "inputs": {name: [f.name for f in given]
                                                      for name, given in prepared.files.items()},
                                           **({"approval_needed": approval} if approval else {})})
        if not approval:
            transaction.on_commit(lambda: _request_submit(submission.pk))
    return submission


# --- retrying the failed tasks of an ended job: a new submission of only those -------------------------------------

# Why an ended job that did not come from the portal cannot be retried: said the same way wherever it is asked.
NOT_FROM_THE_PORTAL = ("was not submitted through the portal, so the portal does not know how to make its tasks "
                       "again, and Batch cannot run the tasks of an ended job again: retrying its failed tasks is not "
                       "possible. Submit the work again the way it was first submitted.")


@dataclass(frozen=True)
class FailedTasksRetry:
    """What retrying the failed tasks of an ended job submits (`submission_retry_failed_plan`, nothing written):
    the submission that made the job, which of its tasks run again (by index: t00037 is 37), and the counts the
    confirm page leads with."""
    job: Job
    parent: Submission
    task_indexes: tuple[int, ...]
    succeeded: int                       # Batch's count of the job's tasks that succeeded: not run again
    others: int                          # neither failed nor succeeded (stopped, or never added): not run either
    earlier: tuple[Submission, ...]      # retries of the same submission made before, newest first
    # What running them again should cost: a retry is a submission, so it meets the same budget warning and the
    # same per-submission approval limit as any other (the confirm page shows both).
    estimate: CostEstimate

    @property
    def count(self) -> int:
        return len(self.task_indexes)

    @property
    def message(self) -> str:
        """'This runs 37 tasks again; 963 succeeded and are not re-run.'"""
        text = f"This runs {_tasks(self.count)} again"
        if self.succeeded:
            text += f"; {self.succeeded:,} succeeded and {'is' if self.succeeded == 1 else 'are'} not re-run"
        if self.others:
            text += (f"; {self.others:,} {'other' if self.others == 1 else 'others'} neither succeeded nor failed "
                     f"(stopped, or never added) and {'is' if self.others == 1 else 'are'} not re-run either")
        return text + "."


def _tasks(n: int) -> str:
    return f"{n:,} task{'' if n == 1 else 's'}"


def submission_retry_failed_plan(*, user: User, job: Job, task_ids: Sequence[str] | None = None) -> FailedTasksRetry:
    """What `submission_retry_failed` would submit for `job`, changing nothing: its confirm page asks this.

    `task_ids` None: every task of the job the mirror shows as failed; given (a triage group): those of them that
    failed. Raises PermissionDenied when `user` may not submit the job's work again, and SubmissionError saying
    why in plain words when there is nothing to submit: the job has not ended (its tasks are retried in place),
    is still ending, was deleted, did not come from the portal, its template is withdrawn, or nothing failed."""
    parent = _retry_parent(user=user, job=job)
    indexes = _failed_indexes(job, task_ids)
    if not indexes:
        raise SubmissionError(f"The job “{job.job_id}” has no failed tasks to retry (as of the last sync); nothing "
                              "was submitted.")
    counted = len(indexes) + job.task_succeeded
    version = parent.template_version
    return FailedTasksRetry(job=job, parent=parent, task_indexes=tuple(indexes), succeeded=job.task_succeeded,
                            others=max(0, parent.total_tasks - counted) if task_ids is None else 0,
                            earlier=tuple(parent.retries.order_by("-created_at")[:20]),
                            estimate=estimate_for_preview(template=version.template, spec=version.parsed,
                                                          task_count=len(indexes)))


def submission_retry_failed(*, user: User, job: Job, key: uuid.UUID,
                            task_ids: Sequence[str] | None = None) -> Submission:
    """Submit the failed tasks of the ended `job` again, as a new submission of its submission's template version,
    values and files with only those tasks, which keep their ids (t00037 in both jobs): the outbox row, linked to
    its parent by `retry_of`, and its audit event in one transaction; a worker sends it once committed. Like any
    submission, one estimated past the team's per-submission limit waits for approval (submission_decide) instead.

    `key` is the idempotency key the confirm page handed out, and the new submission's public id: a second call
    with it (a double click, a re-posted form) returns the submission the first made and never makes another.
    Raises what `submission_retry_failed_plan` raises; then nothing was written."""
    existing = _submission_with_key(user, key)
    if existing is not None:
        return existing
    plan = submission_retry_failed_plan(user=user, job=job, task_ids=task_ids)
    parent = plan.parent
    approval = approval_reason(team=access.submission_team(user), estimate=plan.estimate)
    try:
        with transaction.atomic():
            submission = Submission.objects.create(
                public_id=key, account_id=parent.account_id, template_version=parent.template_version,
                submitted_by=user, retry_of=parent, team=access.submission_team(user),
                name=f"Retry of {parent.title}"[:Submission.NAME_MAX_LENGTH],
                # The parent's values and files as they were: uploads are kept as snapshots, read again by blob path.
                parameters=parent.parameters, inputs=parent.inputs, csv_rows=parent.csv_rows,
                command_line=parent.command_line, job_id=Submission.job_id_for(key), total_tasks=plan.count,
                task_indexes=list(plan.task_indexes),
                state=SubmissionState.AWAITING_APPROVAL if approval else SubmissionState.PENDING)
            # Ids of up to 100 tasks in the record; the count says how many there were.
            _record_submission_action(
                user=user, action="submission.retry_failed", target=submission.job_id, obj=submission,
                details={"retry_of": parent.job_id, "job_id": submission.job_id, "tasks": plan.count,
                         "succeeded_not_rerun": plan.succeeded, "template": str(parent.template_version),
                         "chosen": "all failed" if task_ids is None else "listed",
                         "task_ids": [task_id(index) for index in plan.task_indexes[:100]],
                         **({"approval_needed": approval} if approval else {})})
            if not approval:   # else it waits for submission_decide
                transaction.on_commit(lambda: _request_submit(submission.pk))
    except IntegrityError:
        # Two posts of the same confirm page raced past the check above: the other one's row is the submission.
        existing = _submission_with_key(user, key)
        if existing is None:
            raise
        return existing
    return submission


def _retry_parent(*, user: User, job: Job) -> Submission:
    """The submission whose failed tasks a retry of `job` submits again, once every reason not to is ruled out."""
    if not access.can_act_on(user, job):
        raise PermissionDenied("Only the submitter, an Operator of their team or an administrator may do this.")
    parent = Submission.of_job(job)
    if parent is None:
        raise SubmissionError(f"The job “{job.job_id}” {NOT_FROM_THE_PORTAL}")
    if job.gone_at is not None or job.state == JobState.DELETING:
        raise SubmissionError(f"The job “{job.job_id}” was deleted in Batch, so the portal cannot tell for certain "
                              "which of its tasks failed. Nothing was submitted; re-run the submission instead.")
    if not job.has_ended:
        raise SubmissionError(f"The job “{job.job_id}” has not ended: Batch runs its failed tasks again in the job "
                              "itself (Retry failed tasks, on the job's page). Nothing was submitted.")
    if job.state != JobState.COMPLETED or not parent.is_final:
        raise SubmissionError(f"The job “{job.job_id}” is still ending; try again in a minute, once it has ended and "
                              "every task's result is known. Nothing was submitted.")
    template = parent.template_version.template
    if not template.is_active:
        raise SubmissionError(f"The template “{template.name}” is not offered any more, so its work cannot be "
                              "submitted again. Nothing was submitted.")
    if not access.can_submit_again(user, parent):
        raise PermissionDenied("Submitting work again needs the Submitter role and the right to act on it.")
    return parent


def _failed_indexes(job: Job, task_ids: Sequence[str] | None) -> list[int]:
    """The indexes of the job's failed tasks (all of them, or those listed), ascending. Failed as the model says
    (Task.objects.failed(): a task killed by a terminate did not fail); a deleted task is not taken, as the job
    page's retry does not take it."""
    failed = Task.objects.failed().filter(job=job, state=TaskState.COMPLETED, gone_at__isnull=True)
    if task_ids is None:
        found = list(failed.values_list("task_id", flat=True))
    else:
        wanted, found = sorted({str(task_id) for task_id in task_ids}), []
        for start in range(0, len(wanted), 500):   # SQLite caps the parameters of one query
            found += failed.filter(task_id__in=wanted[start:start + 500]).values_list("task_id", flat=True)
    indexes = {task_index(task_id) for task_id in found}
    indexes.discard(None)
    return sorted(index for index in indexes if index is not None)


def _offered_version(template_version: JobTemplateVersion | int | str | None, *,
                     parent: Submission | None) -> JobTemplateVersion:
    pk = template_version.pk if isinstance(template_version, JobTemplateVersion) else template_version
    try:
        pk = int(pk)  # type: ignore[arg-type]  # None raises TypeError, caught below
    except (TypeError, ValueError):
        pk = None
    version = (JobTemplateVersion.objects.select_related("template").filter(pk=pk, template__is_active=True).first()
               if pk is not None else None)
    if version is None:
        raise SubmissionError("That template is not offered any more, or the form was changed; nothing was "
                              "submitted. Open the template list and start again.")
    current = version.template.current_version()
    assert current is not None   # the template has this version at least
    if version.pk != current.pk and not (parent is not None and parent.template_version_id == version.pk):
        raise SubmissionError(f"The template “{version.template.name}” has changed since the form was opened; "
                              "nothing was submitted. Reload the form to use the current version.")
    return version


def submission_decide(*, user: User, submission: Submission, approve: bool, reason: str = "") -> Submission:
    """Approve a submission that waits for approval (it is then sent to Batch as any other) or turn it down (it ends
    as not submitted, saying by whom and why), with the audit event, once: a second decision is refused."""
    if not access.can_approve(user, submission):
        raise access.Refused("Only an Operator of the submission's team or an Admin, other than the person who "
                             "submitted it, may approve it or turn it down.")
    reason = (reason or "").strip()[:500]
    with transaction.atomic():
        if approve:
            fields: dict = {"state": SubmissionState.PENDING}
        else:
            refused = f"Not approved by {user.get_username()}" + (f": {reason}" if reason else ".")
            fields = {"state": SubmissionState.FAILED, "error_message": refused}
        changed = Submission.objects.filter(pk=submission.pk, state=SubmissionState.AWAITING_APPROVAL).update(
            **fields, updated_at=timezone.now())
        if not changed:
            raise SubmissionError("This submission no longer waits for approval; someone decided already.")
        _record_submission_action(user=user, action="submission.approve" if approve else "submission.reject",
                                  target=submission.job_id, obj=submission, reason=reason,
                                  changes={"state": [SubmissionState.AWAITING_APPROVAL, fields["state"]]},
                                  details={})
        if approve:
            transaction.on_commit(lambda: _request_submit(submission.pk))
    submission.refresh_from_db()
    return submission


def _record_submission_action(*, user: access.Person, action: str, target: str, details: dict, obj: Model | None = None,
                              changes: dict | None = None,
                              reason: str = "") -> None:
    """The audit event of a submission or template action: called inside the transaction that makes the change.
    `obj` names the object; without it, `target` is its label."""
    record_event(actor=user, action=action, obj=obj, object_label=target if obj is None else "",
                 object_type="" if obj is not None else action.split(".")[0], reason=reason, changes=changes,
                 details=details)


def _request_submit(submission_pk: int) -> None:
    # The fast path only: if the broker is down the row is still there, and the re-driver sends it.
    try:
        submit_submission_task.delay(submission_pk)
    except Exception:
        logger.warning("could not enqueue submission %s; the re-driver will pick it up", submission_pk,
                       exc_info=True)

