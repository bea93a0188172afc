"""User-initiated writes, named `<entity>_<action>`: creating, resizing and deleting Batch pools; job template
versions and submissions.

Each checks the user's permission and its input, asks Batch through the gateway, and turns Batch's refusals into
`PoolActionError`s whose message says what happened and what to do."""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.db import transaction

from batchsync.gateway import (AlreadyExists, AuthFailed, GatewayError, ImageSpec, NotFound, PoolSpec, Rejected,
                               ResourceFileSpec, Transient)
from portal.models import MAX_NODES_PER_KIND, Pool, PoolState, PoolTemplate

logger = logging.getLogger(__name__)

MANAGE_POOLS = "portal.manage_pools"
# Batch's rule for pool ids: letters, digits, hyphens and underscores, at most 64 characters.
POOL_ID_PATTERN = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
POOL_ID_RULE = "Use 1 to 64 letters, digits, hyphens (-) and underscores (_)."


class PoolActionError(Exception):
    """A pool action did not happen; `message` is meant for the person who asked, `field` names the input at fault."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


def can_manage_pools(user) -> bool:
    return bool(user and user.is_active and user.has_perm(MANAGE_POOLS))


def pool_spec_from_template(*, template: PoolTemplate, pool_id: str, dedicated_nodes: int,
                            low_priority_nodes: int) -> PoolSpec:
    """Exactly what `pool_create` sends to Batch; the confirm page shows this same spec."""
    return PoolSpec(
        id=pool_id,
        vm_size=template.vm_size,
        image=ImageSpec(publisher=template.image_publisher, offer=template.image_offer, sku=template.image_sku,
                        version=template.image_version or "latest", node_agent_sku_id=template.node_agent_sku_id),
        display_name=template.name,
        target_dedicated_nodes=dedicated_nodes,
        target_low_priority_nodes=low_priority_nodes,
        task_slots_per_node=template.task_slots_per_node,
        node_fill_type=template.node_fill_type,
        start_task_command_line=template.start_task_command_line.strip() or None,
        start_task_resource_files=tuple(ResourceFileSpec(http_url=item["http_url"], file_path=item["file_path"])
                                        for item in template.start_task_resource_files or []),
        start_task_wait_for_success=template.start_task_wait_for_success,
    )


def pool_create(*, user, template: PoolTemplate, pool_id: str, dedicated_nodes: int, low_priority_nodes: int) -> None:
    """Ask Batch for a new pool made from `template`. Batch answers at once; the nodes arrive over minutes."""
    from batchsync.accounts import default_account, gateway_for

    _check_permission(user)
    pool_id = _checked_pool_id(pool_id)
    _check_counts(dedicated_nodes, low_priority_nodes)
    spec = pool_spec_from_template(template=template, pool_id=pool_id, dedicated_nodes=dedicated_nodes,
                                   low_priority_nodes=low_priority_nodes)
    account = default_account()
    try:
        with gateway_for(account) as gateway:
            gateway.create_pool(spec)
    except GatewayError as exc:
        raise _refusal(exc, action="create", account=account, pool_id=pool_id) from exc
    _after(account, user=user, action="pool.create", pool_id=pool_id,
           details={"template": template.name, "template_id": template.pk, "dedicated_nodes": dedicated_nodes,
                    "low_priority_nodes": low_priority_nodes})


def pool_resize(*, user, pool: Pool, dedicated_nodes: int, low_priority_nodes: int) -> None:
    """Ask Batch to change the pool's target node counts; the pool is `resizing` until they are reached."""
    from batchsync.accounts import gateway_for

    _check_permission(user)
    _check_counts(dedicated_nodes, low_priority_nodes)
    _check_still_there(pool)
    if pool.state == PoolState.DELETING:
        raise PoolActionError(f"The pool “{pool.pool_id}” is being deleted, so it cannot be resized. "
                              "Nothing was changed.")
    try:
        with gateway_for(pool.account) as gateway:
            gateway.resize_pool(pool.pool_id, dedicated=dedicated_nodes, low_priority=low_priority_nodes)
    except GatewayError as exc:
        raise _refusal(exc, action="resize", account=pool.account, pool_id=pool.pool_id) from exc
    _after(pool.account, user=user, action="pool.resize", pool_id=pool.pool_id,
           details={"from_dedicated_nodes": pool.target_dedicated_nodes,
                    "from_low_priority_nodes": pool.target_low_priority_nodes,
                    "dedicated_nodes": dedicated_nodes, "low_priority_nodes": low_priority_nodes})


def pool_delete(*, user, pool: Pool) -> bool:
    """Ask Batch to delete the pool and its nodes. Returns False if Batch no longer had it (nothing left to do)."""
    from batchsync.accounts import gateway_for

    _check_permission(user)
    _check_still_there(pool)
    try:
        with gateway_for(pool.account) as gateway:
            gateway.delete_pool(pool.pool_id)
    except NotFound:
        # The outcome the person asked for holds already (deleted elsewhere, or a second click); the sync marks it gone.
        deleted = False
    except GatewayError as exc:
        raise _refusal(exc, action="delete", account=pool.account, pool_id=pool.pool_id) from exc
    else:
        deleted = True
    _after(pool.account, user=user, action="pool.delete", pool_id=pool.pool_id, details={"batch_had_it": deleted})
    return deleted


def _record_action(*, user, action: str, account, pool_id: str, details: dict) -> None:
    """Integration point for the audit history: every successful pool action passes through here.

    Intentionally empty until the audit issue lands; it will write an audit event in the caller's transaction."""


# --- helpers ----------------------------------------------------------------------------------------


def _check_permission(user) -> None:
    # Views check first and answer 403; this keeps any other caller (a shell, a future API) to the same rule.
    if not can_manage_pools(user):
        raise PermissionDenied("Managing pools needs the portal.manage_pools permission.")


def _checked_pool_id(pool_id) -> str:
    pool_id = (pool_id or "").strip()
    if not POOL_ID_PATTERN.fullmatch(pool_id):
        raise PoolActionError(f"That pool id is not valid. {POOL_ID_RULE}", field="pool_id")
    return pool_id


def _check_counts(dedicated_nodes, low_priority_nodes) -> None:
    for field, value, kind in (("dedicated_nodes", dedicated_nodes, "dedicated"),
                               ("low_priority_nodes", low_priority_nodes, "spot")):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_NODES_PER_KIND:
            raise PoolActionError(f"Give a whole number of {kind} nodes from 0 to {MAX_NODES_PER_KIND}.",
                                  field=field)


def _check_still_there(pool: Pool) -> None:
    if pool.gone_at is not None:
        raise PoolActionError(f"The pool “{pool.pool_id}” no longer exists in Batch. Nothing was changed.")


def _refusal(exc: GatewayError, *, action: str, account, pool_id: str) -> PoolActionError:
    """The person's version of a gateway error; the log keeps Batch's code and request id."""
    logger.warning("pool %s %s on account %s refused by Batch: %s", action, pool_id, account, exc)
    if isinstance(exc, AlreadyExists):
        return PoolActionError(f"A pool with the id “{pool_id}” already exists in Batch. Nothing was created; "
                               "choose another id.", field="pool_id")
    if isinstance(exc, Transient):
        return PoolActionError("Batch is busy or could not be reached; nothing was changed. Try again in a minute.")
    if isinstance(exc, AuthFailed):
        return PoolActionError("Batch refused the portal's credentials; nothing was changed. Ask an administrator "
                               "to check the Batch account settings.")
    if isinstance(exc, NotFound):
        return PoolActionError(f"Batch has no pool “{pool_id}” any more; nothing was changed. The pool list "
                               "catches up at the next sync.")
    if isinstance(exc, Rejected) and exc.code == "PoolBeingResized":
        return PoolActionError(f"The pool “{pool_id}” is still resizing; nothing was changed. Try again when it "
                               "is steady.")
    if isinstance(exc, Rejected) and exc.code == "PoolBeingDeleted":
        return PoolActionError(f"The pool “{pool_id}” is being deleted; nothing was changed.")
    if isinstance(exc, Rejected):
        reason = (exc.message or "no reason given").rstrip(". ")
        return PoolActionError(f"Batch refused to {action} the pool: {reason}. Nothing was changed; check the "
                               "values and try again.")
    return PoolActionError(f"Batch answered with an unexpected error; nothing was changed. Try again, and tell an "
                           f"administrator if it keeps happening (Batch request id {exc.request_id or 'unknown'}).")


def _after(account, *, user, action: str, pool_id: str, details: dict) -> None:
    """Record a successful action and ask for a sync of the account, once the record is committed."""
    with transaction.atomic():
        _record_action(user=user, action=action, account=account, pool_id=pool_id, details=details)
        transaction.on_commit(lambda: _request_sync(account.pk))


def _request_sync(account_pk: int) -> None:
    # Without this the change shows at the next periodic sync anyway, so a missing sync task or an unreachable
    # broker costs freshness only and must not turn an action Batch accepted into an error page.
    try:
        from batchsync.tasks import sync_account_task
    except ImportError:
        return
    try:
        sync_account_task.delay(account_pk)
    except Exception:
        logger.warning("could not enqueue a sync of account %s after a pool action", account_pk, exc_info=True)


# --- submissions (the submission issue) ---------------------------------------------------------------------

WRITE_COMMAND_LINES = "portal.write_command_lines"


class SubmissionError(Exception):
    """A submission was not made; `message` is for the person, `field_errors` maps parameter names to words.
    Nothing was written and nothing was sent to Batch."""

    def __init__(self, message: str, *, field_errors: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.field_errors = field_errors or {}


def can_write_command_lines(user) -> bool:
    return bool(user and user.is_active and user.has_perm(WRITE_COMMAND_LINES))


def job_template_version_create(*, user, template, spec: dict):
    """A new version of `template` with the next number; the spec is checked first (SubmissionError lists what is
    wrong). Writing a command line is writing code that runs on the pool, so it needs portal.write_command_lines."""
    from portal.models import JobTemplateVersion
    from portal.templating import SpecError, parse_spec

    if not can_write_command_lines(user):
        raise PermissionDenied("Writing job templates needs the portal.write_command_lines permission.")
    try:
        parse_spec(spec)
    except SpecError as exc:
        raise SubmissionError("The template spec has problems: " + "; ".join(exc.problems)) from None
    with transaction.atomic():
        # Locks the template row, so two editors saving at once get consecutive numbers instead of an error.
        type(template).objects.select_for_update().get(pk=template.pk)
        latest = template.versions.order_by("-number").values_list("number", flat=True).first() or 0
        version = JobTemplateVersion.objects.create(template=template, number=latest + 1, spec=spec, created_by=user)
        _record_submission_action(user=user, action="job_template.version_create", target=str(version),
                                  details={"template_id": template.pk, "number": version.number})
    return version


@dataclass(frozen=True)
class PreparedSubmission:
    """A submission checked and ready to write: what `submission_prepare` returns for the preview page."""
    template_version: object
    values: dict
    files: dict
    rows: list | None
    command_line: str | None     # None: the template's own
    preview: object              # portal.templating.Preview; .summary is the sentence to show


def submission_prepare(*, user, template_version, parameters: dict, uploaded_files=None, parent=None,
                       command_line: str | None = None) -> PreparedSubmission:
    """Check everything `submission_create` would, without writing anything: the preview page calls this.
    SubmissionError says what the person must fix."""
    from portal import templating
    from portal.models import Submission

    if not (user and user.is_authenticated and user.is_active):
        raise PermissionDenied("Submitting needs a signed-in, active account.")
    version = _offered_version(template_version, parent=parent)
    if parent is not None:
        if not isinstance(parent, Submission) or not (parent.submitted_by_id == user.pk or user.is_staff):
            raise SubmissionError("You can only re-run your own submissions.")
    spec = version.parsed
    if command_line is not None and command_line.strip() == spec.command_line.strip():
        command_line = None
    if command_line is not None:
        if not can_write_command_lines(user):
            raise PermissionDenied("Writing your own command line needs the portal.write_command_lines permission.")
        placeholders = {p.name for p in spec.parameters} | ({spec.fan_out.placeholder} - {None})
        problems = templating.command_line_problems(command_line, placeholders,
                                                    csv_columns=spec.fan_out.kind == "csv")
        if not command_line.strip() or problems:
            raise SubmissionError("The command line cannot be used: " + (" ".join(problems) or "it is empty."),
                                  field_errors={"command_line": " ".join(problems) or "Give a command line."})
    try:
        values, files = templating.clean_values(spec, parameters or {}, uploaded_files or {})
        rows = None
        if spec.fan_out.kind == "csv":
            table = files.get(spec.fan_out.parameter, ())
            if not table or table[0].content is None:
                raise templating.ParameterErrors({spec.fan_out.parameter: "upload the CSV file the tasks are made "
                                                                          "from."})
            rows = templating.parse_csv(spec.fan_out.parameter, table[0].content)
            missing = templating.missing_csv_columns(spec, rows, command_line)
            if missing:
                raise templating.ParameterErrors({spec.fan_out.parameter: "the CSV file has no column named "
                                                                          + ", ".join(missing) + "."})
    except templating.ParameterErrors as exc:
        raise SubmissionError("Some values need fixing; nothing was submitted.", field_errors=exc.errors) from None
    preview = templating.preview(spec, values, files, rows)
    if preview.task_count == 0:
        raise SubmissionError("These values create no tasks; nothing was submitted. Check the inputs.")
    if preview.task_count > templating.MAX_TASKS:
        raise SubmissionError(f"These values create {preview.task_count:,} tasks; the most one submission may "
                              f"create is {templating.MAX_TASKS:,}. Nothing was submitted; split the work.")
    return PreparedSubmission(template_version=version, values=values, files=files, rows=rows,
                              command_line=command_line, preview=preview)


def submission_create(*, user, template_version, parameters: dict, uploaded_files=None, parent=None,
                      command_line: str | None = None):
    """Record a submission (the outbox row) and, once it is committed, ask a worker to send it to Batch.

    `template_version` is a JobTemplateVersion or its id, as the form posted it; it must be the template's current
    version (or the parent's, for a re-run) of an active template. `uploaded_files` maps file parameters to
    portal.templating.InputFile lists. Raises SubmissionError (nothing written, nothing enqueued) or
    PermissionDenied."""
    from batchsync.accounts import default_account
    from portal.models import Submission

    prepared = submission_prepare(user=user, template_version=template_version, parameters=parameters,
                                  uploaded_files=uploaded_files, parent=parent, command_line=command_line)
    version, preview = prepared.template_version, prepared.preview
    public_id = uuid.uuid4()
    account = default_account()
    with transaction.atomic():
        submission = Submission.objects.create(
            public_id=public_id, account=account, template_version=version, submitted_by=user, parent=parent,
            parameters=prepared.values,
            inputs={name: [{"name": f.name, "url": f.url, "size": f.size} for f in given]
                    for name, given in prepared.files.items()},
            csv_rows=prepared.rows or [], command_line=prepared.command_line or "",
            # Ids derive from the row: a retry that finds the job already there knows it is its own. Lower case,
            # because Batch ids are case-insensitive.
            job_id=f"sub-{public_id.hex}", total_tasks=preview.task_count)
        _record_submission_action(user=user, action="submission.create", target=submission.job_id,
                                  details={"template_version_id": version.pk, "tasks": preview.task_count,
                                           "parent": parent.job_id if parent else None})
        transaction.on_commit(lambda: _request_submit(submission.pk))
    return submission


def _offered_version(template_version, *, parent):
    from portal.models import JobTemplateVersion

    pk = template_version.pk if isinstance(template_version, JobTemplateVersion) else template_version
    try:
        pk = int(pk)
    except (TypeError, ValueError):
        pk = None
    version = (JobTemplateVersion.objects.select_related("template").filter(pk=pk, template__is_active=True).first()
               if pk is not None else None)
    if version is None:
        raise SubmissionError("That template is not offered any more, or the form was changed; nothing was "
                              "submitted. Open the template list and start again.")
    current = version.template.current_version()
    if version.pk != current.pk and not (parent is not None and parent.template_version_id == version.pk):
        raise SubmissionError(f"The template “{version.template.name}” has changed since the form was opened; "
                              "nothing was submitted. Reload the form to use the current version.")
    return version


def _record_submission_action(*, user, action: str, target: str, details: dict) -> None:
    """Integration point for the audit history, like `_record_action` for pools: called inside the transaction
    that makes the change. Intentionally empty until the audit issue lands."""


def _request_submit(submission_pk: int) -> None:
    # The fast path only: if the broker is down the row is still there, and the re-driver sends it.
    try:
        from batchsync.tasks import submit_submission_task

        submit_submission_task.delay(submission_pk)
    except Exception:
        logger.warning("could not enqueue submission %s; the re-driver will pick it up", submission_pk,
                       exc_info=True)
