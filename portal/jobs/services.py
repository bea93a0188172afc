"""Actions on jobs and tasks: terminate a job, terminate or delete a task, retry a job's failed tasks, and retry
one group of failures from the triage page across its jobs.

Each checks portal.access.can_act_on (PermissionDenied otherwise: views answer 404, so a forbidden object looks
missing), asks Batch, records an audit event and asks for a sync once that is committed. Batch stays the source of
truth: nothing here writes the mirror, so a job shows "terminating" when the sync has seen it so."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied

from batchsync.accounts import AccountNotConfigured, gateway_for
from batchsync.gateway import GatewayError, NotFound, Rejected
from portal import access
from portal.actions import ActionError, record_and_sync, refusal
from portal.jobs.triage import Signature, TriageFilters, failure_group_gone, failure_group_tasks
from portal.models import Job, JobState, Submission, Task, TaskState
from portal.submit.services import (
    FailedTasksRetry,
    SubmissionError,
    submission_retry_failed,
    submission_retry_failed_plan,
)

logger = logging.getLogger(__name__)

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


def job_terminate(*, user: User, job: Job, reason: str) -> ActionOutcome:
    """Ask Batch to terminate `job`: its running tasks are stopped and waiting ones never start. Batch records
    `reason` (its first 64 characters) as the job's terminate reason; the audit history keeps all of it. A job
    already ending or ended is not an error: the outcome says so."""
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
            raise refusal(exc, action="terminate", what=f"the job “{job.job_id}”") from exc
        done, message = False, _job_already_ended(job, exc.code)
    except AccountNotConfigured as exc:
        raise ActionError(str(exc)) from exc
    except GatewayError as exc:
        raise refusal(exc, action="terminate", what=f"the job “{job.job_id}”") from exc
    record_and_sync(account_pk=job.account_id, actor=user, action="job.terminate", obj=job, reason=reason,
                    details={"job_id": job.job_id, "batch_did_it": done, "batch_reason": _batch_reason(reason)})
    return ActionOutcome(done=done, message=message)


def task_terminate(*, user: User, task: Task, reason: str) -> ActionOutcome:
    """Ask Batch to terminate `task`: a running task is stopped, a waiting one never starts; either way it ends
    as completed and failed. A task that has completed already is not an error: the outcome says so."""
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
            raise refusal(exc, action="terminate", what=f"the task “{task.task_id}”") from exc
        done, message = False, f"The task “{task.task_id}” had already completed, so there was nothing to terminate."
    except AccountNotConfigured as exc:
        raise ActionError(str(exc)) from exc
    except GatewayError as exc:
        raise refusal(exc, action="terminate", what=f"the task “{task.task_id}”") from exc
    record_and_sync(account_pk=job.account_id, job_pk=job.pk, actor=user, action="task.terminate", obj=task,
                    reason=reason, details={"job_id": job.job_id, "task_id": task.task_id, "batch_did_it": done})
    return ActionOutcome(done=done, message=message)


def task_delete(*, user: User, task: Task, reason: str) -> ActionOutcome:
    """Ask Batch to delete `task` and its files on the node; a running task is stopped first. The portal keeps
    what it saw of the task (marked gone), and logs already saved to storage stay."""
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
    except AccountNotConfigured as exc:
        raise ActionError(str(exc)) from exc
    except GatewayError as exc:
        raise refusal(exc, action="delete", what=f"the task “{task.task_id}”") from exc
    # A full pass of the job's tasks: only that notices a task Batch no longer lists.
    record_and_sync(account_pk=job.account_id, job_pk=job.pk, full_task_sync=True, actor=user, action="task.delete",
                    obj=task, reason=reason,
                    details={"job_id": job.job_id, "task_id": task.task_id, "batch_did_it": done})
    return ActionOutcome(done=done, message=message)


def tasks_retry(*, user: User, job: Job, task_ids: list[str] | None = None, dry_run: bool) -> RetryOutcome:
    """Run failed tasks of `job` again, with Batch's reactivate (their retry count starts again from zero).

    `task_ids` None: every task of the job the mirror shows as failed (Task.result == "failure"). Given: those of
    the listed Batch task ids that the mirror shows as failed in this job; the others count as skipped. Either way
    at most MAX_RETRY_TASKS per call, by task id (`limited` says there were more), and at most
    RETRY_BUDGET_SECONDS of calls to Batch (`not_retried` counts what was not reached).

    `dry_run=True` changes nothing and asks Batch nothing: the count for a confirm page. Otherwise the calls run
    RETRY_CONCURRENCY at a time; tasks Batch says are no longer failed are skipped. Raises ActionError when the
    job has ended — Batch cannot reactivate the tasks of a completed or terminating job, so the answer is a re-run
    — and PermissionDenied when `user` may not act on the job. Used by the job page and the failure triage page."""
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
        raise ActionError(f"Batch no longer has the job “{job.job_id}”; nothing was retried.") from exc
    except Rejected as exc:
        if exc.code in _ENDED_JOB_CODES:
            _check_job_open_for_retry(job, "completed")
        raise refusal(exc, action="retry tasks of", what=f"the job “{job.job_id}”") from exc
    except AccountNotConfigured as exc:
        raise ActionError(str(exc)) from exc
    except GatewayError as exc:
        raise refusal(exc, action="retry tasks of", what=f"the job “{job.job_id}”") from exc
    not_failed = sum(1 for failure in result.refused if failure.code in _NOT_FAILED_CODES)
    outcome = RetryOutcome(dry_run=False, candidates=len(candidates), retried=len(result.reactivated),
                           skipped=skipped + not_failed,
                           not_retried=len(result.not_tried) + len(result.refused) - not_failed, limited=limited)
    if result.refused:
        logger.warning("retry of job %s: Batch refused %d of %d tasks, e.g. %s", job.job_id, len(result.refused),
                       len(candidates), result.refused[0])
    if outcome.retried:
        # Ids of up to 100 tasks in the record; the counts say how many there were.
        record_and_sync(account_pk=job.account_id, job_pk=job.pk, actor=user, action="job.retry_failed", obj=job,
                        details={"job_id": job.job_id, "retried": outcome.retried, "skipped": outcome.skipped,
                                 "not_retried": outcome.not_retried, "task_ids": list(result.reactivated[:100]),
                                 "chosen": "all failed" if task_ids is None else "listed"})
    return outcome


def _check_may_act(user: User, obj: Job | Task) -> None:
    if not access.can_act_on(user, obj):
        raise PermissionDenied("Only the submitter, an Operator of their team or an administrator may do this.")


def _checked_reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ActionError("Say why, in a few words: it goes into the audit history. Nothing was changed.",
                             field="reason")
    if len(reason) > MAX_REASON_LENGTH:
        raise ActionError(f"Keep the reason under {MAX_REASON_LENGTH:,} characters. Nothing was changed.",
                             field="reason")
    return reason


def _batch_reason(reason: str) -> str:
    line = " ".join(reason.split())
    limit = BATCH_TERMINATE_REASON_LENGTH
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _check_job_still_there(job: Job) -> None:
    if job.gone_at is not None:
        raise ActionError(f"The job “{job.job_id}” no longer exists in Batch. Nothing was changed.")


def _check_task_still_there(task: Task) -> None:
    _check_job_still_there(task.job)
    if task.gone_at is not None:
        raise ActionError(f"The task “{task.task_id}” no longer exists in Batch. Nothing was changed.")


def _check_job_open_for_retry(job: Job, state: str) -> None:
    if state in JobState.ENDED:
        ending = {"completed": "has ended", "terminating": "is ending", "deleting": "is being deleted"}[state]
        if Submission.of_job(job) is None:
            raise ActionError(f"The job “{job.job_id}” {ending}, and Batch cannot run the tasks of an ended job "
                              "again. Nothing was retried. It was not submitted through the portal, so the portal "
                              "cannot submit its tasks again as a new job either: retrying is not possible.")
        raise ActionError(f"The job “{job.job_id}” {ending}, and Batch cannot run the tasks of an ended job "
                          "again. Nothing was retried here; once it has ended, Retry failed tasks on the job's "
                          "page submits them again as a new job.")


def _failed_task_ids(job: Job, task_ids: Iterable[object] | None) -> tuple[list[str], int, bool]:
    """(failed task ids to retry, how many listed ids were not failed, whether the limit cut the list)."""
    # Failed as the model says: a task someone terminated did not fail, and is not run again by "Retry failed".
    failed = Task.objects.failed().filter(job=job, state=TaskState.COMPLETED, gone_at__isnull=True)
    if task_ids is None:
        listed = list(failed.order_by("task_id").values_list("task_id", flat=True)[:MAX_RETRY_TASKS + 1])
        return listed[:MAX_RETRY_TASKS], 0, len(listed) > MAX_RETRY_TASKS
    wanted = sorted({str(task_id) for task_id in task_ids})
    limited = len(wanted) > MAX_RETRY_TASKS
    wanted = wanted[:MAX_RETRY_TASKS]
    found: set[str] = set()
    for start in range(0, len(wanted), 500):   # SQLite caps the parameters of one query
        found.update(failed.filter(task_id__in=wanted[start:start + 500]).values_list("task_id", flat=True))
    return [task_id for task_id in wanted if task_id in found], len(wanted) - len(found), limited


def _job_already_ended(job: Job, code: str) -> str:
    if code == "JobBeingDeleted":
        return f"The job “{job.job_id}” is being deleted, so there was nothing to terminate."
    if code == "JobBeingTerminated":
        return f"The job “{job.job_id}” is already being terminated; nothing more to do."
    return f"The job “{job.job_id}” had already ended, so there was nothing to terminate."


# --- retrying one group of failures (the triage page) ------------------------------------------------------------

@dataclass
class JobPart:
    """One job's share of a group: its failed tasks and what a retry does (or would do) with them: reactivated in
    the job while it runs (`outcome`), or, once it has ended, submitted again as a new job (`again`, and the
    submission made: `submitted`)."""

    job: Job
    task_ids: list[str]
    why_skipped: str = ""          # "" when these tasks are retried; "ended" (`note` says why) or "not yours"
    note: str = ""
    outcome: RetryOutcome | None = None
    again: FailedTasksRetry | None = None
    submitted: Submission | None = None

    @property
    def count(self) -> int:
        return len(self.task_ids)

    @property
    def to_retry(self) -> int:
        """Tasks this part runs again, as the services counted them."""
        if self.why_skipped:
            return 0
        return self.outcome.candidates if self.outcome else (self.again.count if self.again else 0)


@dataclass
class RetryPlan:
    parts: list[JobPart] = field(default_factory=list)
    gone: int = 0                  # tasks Batch deleted: nothing left to retry

    def _parts(self, why: str) -> list[JobPart]:
        return [part for part in self.parts if part.why_skipped == why]

    @property
    def retried_parts(self) -> list[JobPart]:
        return self._parts("")

    @property
    def again_parts(self) -> list[JobPart]:
        """Parts of ended jobs whose tasks are submitted again as new jobs."""
        return [part for part in self.retried_parts if part.again]

    @property
    def ended_parts(self) -> list[JobPart]:
        return self._parts("ended")

    @property
    def not_yours_parts(self) -> list[JobPart]:
        return self._parts("not yours")

    @property
    def to_retry(self) -> int:
        """Tasks the retry takes, as the services counted them."""
        return sum(part.to_retry for part in self.retried_parts)

    @property
    def jobs_to_retry(self) -> int:
        return sum(1 for part in self.retried_parts if part.to_retry)

    @property
    def again(self) -> int:
        """Of `to_retry`, the tasks of ended jobs, which run again in new jobs."""
        return sum(part.to_retry for part in self.again_parts)

    @property
    def ended(self) -> int:
        return sum(part.count for part in self.ended_parts)

    @property
    def not_yours(self) -> int:
        return sum(part.count for part in self.not_yours_parts)

    @property
    def no_longer_failed(self) -> int:
        return sum(part.outcome.skipped for part in self.retried_parts if part.outcome)

    @property
    def limited(self) -> bool:
        return any(part.outcome.limited for part in self.retried_parts if part.outcome)


def failure_group_retry(*, user: User, filters: TriageFilters, signature: Signature, dry_run: bool,
                        key: uuid.UUID | None = None) -> RetryPlan:
    """Retry one group of failures (a signature, under the triage page's filters) job by job: `tasks_retry` for
    the jobs still running, and, for those that have ended, a new submission of the group's tasks of that job
    (`portal.submit.services.submission_retry_failed`); skipped: ended jobs that cannot be submitted again (`note`
    says why) and jobs `user` may not act on. `dry_run=True` only counts: the confirm page. Otherwise `key` is the
    key that page handed out: each new submission's is derived from it and its parent's, so posting the same page
    twice submits nothing twice (without a key, ended jobs are skipped)."""
    plan = RetryPlan(gone=failure_group_gone(user=user, filters=filters, signature=signature))
    for job, task_ids in failure_group_tasks(user=user, filters=filters, signature=signature):
        part = JobPart(job=job, task_ids=task_ids)
        plan.parts.append(part)
        if not access.can_act_on(user, job):
            part.why_skipped = "not yours"
        elif job.gone_at is not None or job.has_ended:
            _retry_ended_part(part, user=user, dry_run=dry_run, key=key)
        else:
            try:
                part.outcome = tasks_retry(user=user, job=job, task_ids=task_ids, dry_run=dry_run)
            except ActionError as exc:
                # The job ended between the sync and now (Batch said so), or it is gone.
                part.why_skipped, part.note = "ended", exc.message
            except PermissionDenied:
                part.why_skipped = "not yours"
    return plan


def _retry_ended_part(part: JobPart, *, user: User, dry_run: bool, key: uuid.UUID | None) -> None:
    try:
        part.again = submission_retry_failed_plan(user=user, job=part.job, task_ids=part.task_ids)
        if not dry_run:
            if key is None:
                raise SubmissionError("The form was incomplete (it had no key), so nothing was submitted for this "
                                      "job; open the retry page again.")
            own_key = uuid.uuid5(key, str(part.again.parent.public_id))
            part.submitted = submission_retry_failed(user=user, job=part.job, key=own_key, task_ids=part.task_ids)
    except SubmissionError as exc:
        part.why_skipped, part.note, part.again = "ended", exc.message, None
    except PermissionDenied:
        part.why_skipped, part.again = "not yours", None


def _count(n: int, what: str = "task") -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def failure_group_retry_message(plan: RetryPlan) -> str:
    """What a retry of one group did, in words for the person."""
    retried = sum(part.outcome.retried for part in plan.retried_parts if part.outcome)
    jobs = sum(1 for part in plan.retried_parts if part.outcome and part.outcome.retried)
    not_retried = sum(part.outcome.not_retried for part in plan.retried_parts if part.outcome)
    submitted = [part.submitted for part in plan.again_parts if part.submitted]
    text = []
    if retried:
        text.append(f"Batch is running {_count(retried, 'failed task')} again in {_count(jobs, 'job')}; the page "
                    "shows them once the next sync has seen it.")
    if submitted:
        tasks = sum(s.total_tasks for s in submitted)
        text.append(f"{_count(tasks, 'failed task')} of {_count(len(submitted), 'ended job')} "
                    f"{'was' if tasks == 1 else 'were'} submitted again as "
                    f"{'a new job' if len(submitted) == 1 else 'new jobs'}: "
                    + ", ".join(s.job_id for s in submitted) + ".")
    if not text:
        text.append("No task was retried.")
    if plan.ended:
        text.append(f"Skipped {_count(plan.ended)} of jobs that have ended and cannot be submitted again (the "
                    "confirm page said why for each).")
    if plan.not_yours:
        text.append(f"Skipped {_count(plan.not_yours)} of jobs that are not yours.")
    if plan.no_longer_failed:
        text.append(f"Skipped {_count(plan.no_longer_failed)} that are no longer failed.")
    if not_retried:
        text.append(f"{_count(not_retried)} could not be retried because Batch was busy; press retry again.")
    return " ".join(text)
