"""User-initiated writes, named `<entity>_<action>`: creating, resizing and deleting Batch pools; actions on
submitted work (terminate, delete, retry). Submissions and job template versions: portal/submit/services.py.

Each checks the user's permission and its input, asks Batch through the gateway, and turns Batch's refusals into
`PoolActionError`s whose message says what happened and what to do."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.db import transaction

from batchsync.gateway import (AlreadyExists, AuthFailed, GatewayError, ImageSpec, NotFound, PoolSpec, Rejected,
                               ResourceFileSpec, Transient)
from portal import access
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
    return access.can_manage_pools(user)


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
    """Every successful pool action passes through here, inside the transaction `_after` opens. A resize's node
    counts are kept as before → after changes; the rest of `details` stays as it is."""
    from portal.audit import record_event

    details = dict(details)
    changes = {}
    for kind in ("dedicated_nodes", "low_priority_nodes"):
        if f"from_{kind}" in details:
            changes[f"target_{kind}"] = [details.pop(f"from_{kind}"), details.pop(kind)]
    record_event(actor=user, action=action, object_type="pool", object_id=pool_id, object_label=pool_id,
                 changes=changes, details={"account": account.name, **details})


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


# --- actions on submitted work (the submission issue) ----------------------------------------------------------
#
# Terminate a job, terminate or delete a task, retry a job's failed tasks. Each checks portal.access.can_act_on
# (PermissionDenied otherwise: views answer 404, so a forbidden object looks missing), asks Batch, records an audit
# event and asks for a sync once that is committed. Batch stays the source of truth: nothing here writes the mirror,
# so a job shows "terminating" when the sync has seen it so.

# The most tasks one retry reactivates, and how long it may spend on it: one web request makes the calls (Batch has
# no bulk reactivate), so both are bounded; what is left over is reported, and pressing again carries on.
MAX_RETRY_TASKS = 10_000
RETRY_CONCURRENCY = 16
RETRY_BUDGET_SECONDS = 20.0
# Batch keeps at most this much of a job's terminate reason (the rest stays in the audit history).
BATCH_TERMINATE_REASON_LENGTH = 64
MAX_REASON_LENGTH = 1000
# Batch's answers meaning a task is not (or no longer) a failed, completed task: skipped, not an error.
_NOT_FAILED_CODES = frozenset({"TaskNotCompleted", "TaskSucceeded", "TaskNotFound"})
_ENDED_JOB_CODES = frozenset({"JobCompleted", "JobBeingTerminated", "JobBeingDeleted"})


class JobActionError(Exception):
    """An action on a job or task did not happen; `message` is for the person, `field` names the input at fault."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class ActionOutcome:
    """What an accepted action did: `done` is False when Batch had nothing left to do (already ended or gone);
    `message` says which, in words for the person."""
    done: bool
    message: str


@dataclass(frozen=True)
class RetryOutcome:
    """What `tasks_retry` did, or with `dry_run` would do.

    `candidates`: failed tasks (per the mirror) it took, at most MAX_RETRY_TASKS; `limited`: there were more.
    `retried`: Batch put them back to waiting; `skipped`: not failed any more (per the mirror, or Batch said so:
    running again, succeeded, deleted); `not_retried`: Batch was busy or the time ran out — pressing again retries
    them. In a dry run only `candidates`, `skipped` and `limited` are filled."""
    dry_run: bool
    candidates: int
    retried: int = 0
    skipped: int = 0
    not_retried: int = 0
    limited: bool = False

    @property
    def message(self) -> str:
        def tasks(n: int) -> str:
            return f"{n:,} failed task{'' if n == 1 else 's'}"

        if self.dry_run:
            if not self.candidates:
                text = "There are no failed tasks to retry."
            else:
                text = f"This retries {tasks(self.candidates)}."
            if self.limited:
                text += (f" That is as many as one retry takes ({MAX_RETRY_TASKS:,}); retry again afterwards for "
                         "the rest.")
            return text
        parts = [f"Batch is running {tasks(self.retried)} again." if self.retried else "No task was retried."]
        if self.skipped:
            parts.append(f"{self.skipped:,} {'was' if self.skipped == 1 else 'were'} skipped because "
                         f"{'it is' if self.skipped == 1 else 'they are'} no longer failed.")
        if self.not_retried:
            parts.append(f"{self.not_retried:,} could not be retried because Batch was busy; retry again in a "
                         "minute.")
        if self.limited:
            parts.append(f"One retry takes at most {MAX_RETRY_TASKS:,} tasks; retry again for the rest.")
        return " ".join(parts)


def job_actions_allowed(user, job) -> dict[str, bool]:
    """Which actions `user` may start on `job` as the mirror last saw it: what the job page offers. The services
    check again, and Batch has the last word."""
    from portal.models import JobState

    if job.gone_at is not None or not access.can_act_on(user, job):
        return {"terminate": False, "retry_failed": False}
    ended = job.state in (JobState.COMPLETED, JobState.TERMINATING, JobState.DELETING)
    return {"terminate": not ended, "retry_failed": not ended and job.task_failed > 0}


def task_actions_allowed(user, task) -> dict[str, bool]:
    """Which actions `user` may start on `task`, as `job_actions_allowed` does for jobs."""
    from portal.models import JobState, TaskState

    job = task.job
    if task.gone_at is not None or job.gone_at is not None or not access.can_act_on(user, task):
        return {"terminate": False, "delete": False}
    job_open = job.state not in (JobState.COMPLETED, JobState.TERMINATING, JobState.DELETING)
    return {"terminate": job_open and task.state != TaskState.COMPLETED,
            "delete": job.state != JobState.DELETING}


def job_terminate(*, user, job, reason: str) -> ActionOutcome:
    """Ask Batch to terminate `job`: its running tasks are stopped and waiting ones never start. Batch records
    `reason` (its first 64 characters) as the job's terminate reason; the audit history keeps all of it. A job
    already ending or ended is not an error: the outcome says so."""
    from batchsync.accounts import gateway_for

    _check_may_act(user, job)
    reason = _checked_reason(reason)
    _check_job_still_there(job)
    done, message = True, (f"Batch is terminating the job “{job.job_id}”: running tasks are stopped and waiting "
                           "ones will not start. The page shows it once the next sync has seen it.")
    try:
        with gateway_for(job.account) as gateway:
            gateway.terminate_job(job.job_id, reason=_batch_reason(reason))
    except NotFound:
        done, message = False, f"Batch no longer has the job “{job.job_id}”, so there was nothing to terminate."
    except Rejected as exc:
        if exc.code not in _ENDED_JOB_CODES:
            raise _action_refusal(exc, action="terminate", what=f"the job “{job.job_id}”") from exc
        done, message = False, _job_already_ended(job, exc.code)
    except GatewayError as exc:
        raise _action_refusal(exc, action="terminate", what=f"the job “{job.job_id}”") from exc
    _after_action(user=user, action="job.terminate", obj=job, reason=reason,
                  details={"job_id": job.job_id, "batch_did_it": done, "batch_reason": _batch_reason(reason)})
    return ActionOutcome(done=done, message=message)


def task_terminate(*, user, task, reason: str) -> ActionOutcome:
    """Ask Batch to terminate `task`: a running task is stopped, a waiting one never starts; either way it ends
    as completed and failed. A task that has completed already is not an error: the outcome says so."""
    from batchsync.accounts import gateway_for

    _check_may_act(user, task)
    reason = _checked_reason(reason)
    job = task.job
    _check_task_still_there(task)
    done, message = True, (f"Batch is terminating the task “{task.task_id}”. The page shows it once the next sync "
                           "has seen it.")
    try:
        with gateway_for(job.account) as gateway:
            gateway.terminate_task(job.job_id, task.task_id)
    except NotFound:
        done, message = False, f"Batch no longer has the task “{task.task_id}”, so there was nothing to terminate."
    except Rejected as exc:
        if exc.code != "TaskCompleted":
            raise _action_refusal(exc, action="terminate", what=f"the task “{task.task_id}”") from exc
        done, message = False, f"The task “{task.task_id}” had already completed, so there was nothing to terminate."
    except GatewayError as exc:
        raise _action_refusal(exc, action="terminate", what=f"the task “{task.task_id}”") from exc
    _after_action(user=user, action="task.terminate", obj=task, reason=reason, job_pk=job.pk,
                  details={"job_id": job.job_id, "task_id": task.task_id, "batch_did_it": done})
    return ActionOutcome(done=done, message=message)


def task_delete(*, user, task, reason: str) -> ActionOutcome:
    """Ask Batch to delete `task` and its files on the node; a running task is stopped first. The portal keeps
    what it saw of the task (marked gone), and logs already saved to storage stay."""
    from batchsync.accounts import gateway_for

    _check_may_act(user, task)
    reason = _checked_reason(reason)
    job = task.job
    _check_task_still_there(task)
    done, message = True, (f"Batch deleted the task “{task.task_id}”. The portal keeps what it saw of it, marked "
                           "deleted after the next sync.")
    try:
        with gateway_for(job.account) as gateway:
            gateway.delete_task(job.job_id, task.task_id)
    except NotFound:
        done, message = False, f"Batch no longer had the task “{task.task_id}”, so there was nothing to delete."
    except GatewayError as exc:
        raise _action_refusal(exc, action="delete", what=f"the task “{task.task_id}”") from exc
    # A full pass of the job's tasks: only that notices a task Batch no longer lists.
    _after_action(user=user, action="task.delete", obj=task, reason=reason, job_pk=job.pk, full_task_sync=True,
                  details={"job_id": job.job_id, "task_id": task.task_id, "batch_did_it": done})
    return ActionOutcome(done=done, message=message)


def tasks_retry(*, user, job, task_ids: list[str] | None = None, dry_run: bool) -> RetryOutcome:
    """Run failed tasks of `job` again, with Batch's reactivate (their retry count starts again from zero).

    `task_ids` None: every task of the job the mirror shows as failed (Task.result == "failure"). Given: those of
    the listed Batch task ids that the mirror shows as failed in this job; the others count as skipped. Either way
    at most MAX_RETRY_TASKS per call, by task id (`limited` says there were more), and at most
    RETRY_BUDGET_SECONDS of calls to Batch (`not_retried` counts what was not reached).

    `dry_run=True` changes nothing and asks Batch nothing: the count for a confirm page. Otherwise the calls run
    RETRY_CONCURRENCY at a time; tasks Batch says are no longer failed are skipped. Raises JobActionError when the
    job has ended — Batch cannot reactivate the tasks of a completed or terminating job, so the answer is a re-run
    — and PermissionDenied when `user` may not act on the job. Used by the job page and the failure triage page."""
    from batchsync.accounts import gateway_for

    _check_may_act(user, job)
    _check_job_still_there(job)
    _check_job_open_for_retry(job, job.state)
    candidates, skipped, limited = _failed_task_ids(job, task_ids)
    if dry_run or not candidates:
        return RetryOutcome(dry_run=dry_run, candidates=len(candidates), skipped=skipped, limited=limited)
    try:
        with gateway_for(job.account) as gateway:
            result = gateway.reactivate_tasks(job.job_id, candidates, max_concurrency=RETRY_CONCURRENCY,
                                              budget_seconds=RETRY_BUDGET_SECONDS)
    except NotFound as exc:
        raise JobActionError(f"Batch no longer has the job “{job.job_id}”; nothing was retried.") from exc
    except Rejected as exc:
        if exc.code in _ENDED_JOB_CODES:
            _check_job_open_for_retry(job, "completed")
        raise _action_refusal(exc, action="retry tasks of", what=f"the job “{job.job_id}”") from exc
    except GatewayError as exc:
        raise _action_refusal(exc, action="retry tasks of", what=f"the job “{job.job_id}”") from exc
    not_failed = sum(1 for failure in result.refused if failure.code in _NOT_FAILED_CODES)
    outcome = RetryOutcome(dry_run=False, candidates=len(candidates), retried=len(result.reactivated),
                           skipped=skipped + not_failed,
                           not_retried=len(result.not_tried) + len(result.refused) - not_failed, limited=limited)
    if result.refused:
        logger.warning("retry of job %s: Batch refused %d of %d tasks, e.g. %s", job.job_id, len(result.refused),
                       len(candidates), result.refused[0])
    if outcome.retried:
        # Ids of up to 100 tasks in the record; the counts say how many there were.
        _after_action(user=user, action="job.retry_failed", obj=job, reason="", job_pk=job.pk,
                      details={"job_id": job.job_id, "retried": outcome.retried, "skipped": outcome.skipped,
                               "not_retried": outcome.not_retried, "task_ids": list(result.reactivated[:100]),
                               "chosen": "all failed" if task_ids is None else "listed"})
    return outcome


def _check_may_act(user, obj) -> None:
    if not access.can_act_on(user, obj):
        raise PermissionDenied("Only the submitter, an Operator of their team or an administrator may do this.")


def _checked_reason(reason) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise JobActionError("Say why, in a few words: it goes into the audit history. Nothing was changed.",
                             field="reason")
    if len(reason) > MAX_REASON_LENGTH:
        raise JobActionError(f"Keep the reason under {MAX_REASON_LENGTH:,} characters. Nothing was changed.",
                             field="reason")
    return reason


def _batch_reason(reason: str) -> str:
    line = " ".join(reason.split())
    limit = BATCH_TERMINATE_REASON_LENGTH
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _check_job_still_there(job) -> None:
    if job.gone_at is not None:
        raise JobActionError(f"The job “{job.job_id}” no longer exists in Batch. Nothing was changed.")


def _check_task_still_there(task) -> None:
    _check_job_still_there(task.job)
    if task.gone_at is not None:
        raise JobActionError(f"The task “{task.task_id}” no longer exists in Batch. Nothing was changed.")


def _check_job_open_for_retry(job, state: str) -> None:
    from portal.models import JobState

    if state in (JobState.COMPLETED, JobState.TERMINATING, JobState.DELETING):
        ending = {"completed": "has ended", "terminating": "is ending", "deleting": "is being deleted"}[state]
        raise JobActionError(f"The job “{job.job_id}” {ending}, and Batch cannot run the tasks of an ended job "
                             "again. Nothing was retried; re-run the submission instead.")


def _failed_task_ids(job, task_ids) -> tuple[list[str], int, bool]:
    """(failed task ids to retry, how many listed ids were not failed, whether the limit cut the list)."""
    from portal.models import Task, TaskResult, TaskState

    failed = Task.objects.filter(job=job, result=TaskResult.FAILURE, state=TaskState.COMPLETED, gone_at__isnull=True)
    if task_ids is None:
        found = list(failed.order_by("task_id").values_list("task_id", flat=True)[:MAX_RETRY_TASKS + 1])
        return found[:MAX_RETRY_TASKS], 0, len(found) > MAX_RETRY_TASKS
    wanted = sorted({str(task_id) for task_id in task_ids})
    limited = len(wanted) > MAX_RETRY_TASKS
    wanted = wanted[:MAX_RETRY_TASKS]
    found: set[str] = set()
    for start in range(0, len(wanted), 500):   # SQLite caps the parameters of one query
        found.update(failed.filter(task_id__in=wanted[start:start + 500]).values_list("task_id", flat=True))
    return [task_id for task_id in wanted if task_id in found], len(wanted) - len(found), limited


def _job_already_ended(job, code: str) -> str:
    if code == "JobBeingDeleted":
        return f"The job “{job.job_id}” is being deleted, so there was nothing to terminate."
    if code == "JobBeingTerminated":
        return f"The job “{job.job_id}” is already being terminated; nothing more to do."
    return f"The job “{job.job_id}” had already ended, so there was nothing to terminate."


def _action_refusal(exc: GatewayError, *, action: str, what: str) -> JobActionError:
    """The person's version of a gateway error; the log keeps Batch's code and request id."""
    logger.warning("%s %s refused by Batch: %s", action, what, exc)
    if isinstance(exc, Transient):
        return JobActionError("Batch is busy or could not be reached; nothing was changed. Try again in a minute.")
    if isinstance(exc, AuthFailed):
        return JobActionError("Batch refused the portal's credentials; nothing was changed. Ask an administrator "
                              "to check the Batch account settings.")
    if isinstance(exc, Rejected):
        reason = (exc.message or "no reason given").rstrip(". ")
        return JobActionError(f"Batch refused to {action} {what}: {reason}. Nothing was changed.")
    return JobActionError(f"Batch answered with an unexpected error; nothing was changed. Try again, and tell an "
                          f"administrator if it keeps happening (Batch request id {exc.request_id or 'unknown'}).")


def _after_action(*, user, action: str, obj, reason: str, details: dict, job_pk: int | None = None,
                  full_task_sync: bool = False) -> None:
    """Record what was done and, once that is committed, ask for a sync of the account (and of the job's tasks)."""
    from portal.audit import record_event
    from portal.models import Task

    account_pk = (obj.job if isinstance(obj, Task) else obj).account_id
    with transaction.atomic():
        record_event(actor=user, action=action, obj=obj, reason=reason, details=details)
        transaction.on_commit(lambda: _request_sync(account_pk))
        if job_pk is not None:
            transaction.on_commit(lambda: _request_job_tasks_sync(job_pk, full=full_task_sync))


def _request_job_tasks_sync(job_pk: int, *, full: bool) -> None:
    # Like _request_sync: freshness only, never an error for an action Batch accepted.
    try:
        from batchsync.tasks import sync_job_tasks_task

        sync_job_tasks_task.apply_async((job_pk,), {"full": full}, expires=300)
    except Exception:
        logger.warning("could not enqueue a task sync of job %s after an action", job_pk, exc_info=True)
