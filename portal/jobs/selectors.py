"""Reads of jobs and tasks: the filtered job list, a job's progress and task table (keyset pages from an index per
filter and sort), a task's timeline, and which actions a person may start on either."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db.models import Q
from django.urls import reverse

from portal import access
from portal.accounts.selectors import (
    POOL_SEPARATOR,
    AccountScope,
    filtered_account_ids,
    pool_choices,
    split_pool_param,
)
from portal.lookups import CompiledGet
from portal.models import Job, JobState, Node, Pool, Submission, Task, TaskAttempt, TaskState
from portal.pagination import PAGE_SIZE, Page, Sort, keyset_page
from portal.params import exit_code_param, row_id_param
from portal.submit import selectors as submit_selectors


@dataclass(frozen=True)
class Progress:
    """A job's tasks split into the parts of its progress bar, from Batch's task counts; those killed by a terminate
    (Job.task_terminated) apart from the failed."""

    succeeded: int
    failed: int
    running: int
    waiting: int
    terminated: int = 0

    @property
    def total(self) -> int:
        return self.succeeded + self.failed + self.terminated + self.running + self.waiting

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.terminated

    def percent(self, part: int) -> float:
        return round(100 * part / self.total, 2) if self.total else 0.0

    @property
    def succeeded_pct(self) -> float:
        return self.percent(self.succeeded)

    @property
    def failed_pct(self) -> float:
        return self.percent(self.failed)

    @property
    def terminated_pct(self) -> float:
        return self.percent(self.terminated)

    @property
    def running_pct(self) -> float:
        return self.percent(self.running)

    @property
    def waiting_pct(self) -> float:
        return self.percent(self.waiting)

    @property
    def finished_pct(self) -> int:
        # Rounded down, so a job shows 100 % only when every task has finished.
        return 100 * self.finished // self.total if self.total else 0


def job_progress(job: Job) -> Progress:
    # Batch counts completed = succeeded + failed; trust the parts so the bar always adds up.
    return Progress(succeeded=job.task_succeeded, failed=job.failed_task_count, terminated=job.task_terminated,
                    running=job.task_running, waiting=job.task_active)


# --- Dashboard --------------------------------------------------------------------------------


JOB_SORT = Sort("created", "Newest first", "creation_time", descending=True)


@dataclass(frozen=True)
class JobFilters:
    state: str = ""
    pool: str = ""
    submitter: int | None = None
    q: str = ""
    # My / Team / All (portal.access.SCOPES). Not a filter in `active`: it has its own selector and always a value.
    scope: str = access.SCOPE_ALL
    account: str = ""         # an account's name (`?account=`); see portal.accounts.selectors.account_scope
    pool_account: str = ""    # the account of `pool`, when the pool filter named one (`prod/demo-pool`)

    @property
    def active(self) -> bool:
        return bool(self.state or self.pool or self.submitter or self.q or self.account)

    @property
    def pool_value(self) -> str:
        """The pool filter's value as the form sent it, so the same choice shows selected."""
        return f"{self.pool_account}{POOL_SEPARATOR}{self.pool}" if self.pool_account else self.pool


def scope_from(params: Mapping[str, str], default: str = access.SCOPE_ALL) -> str:
    scope = params.get("scope", "")
    return scope if scope in dict(access.SCOPES) else default


def job_filters_from(params: Mapping[str, str], *, default_scope: str = access.SCOPE_ALL) -> JobFilters:
    state = params.get("state", "")
    submitter = params.get("submitter", "")
    pool_account, pool = split_pool_param(params.get("pool", ""))
    return JobFilters(
        scope=scope_from(params, default_scope),
        state=state if state in {"live", *JobState.values} else "",
        pool=pool,
        pool_account=pool_account,
        submitter=row_id_param(submitter),
        q=params.get("q", "").strip()[:200],
        account=params.get("account", "").strip()[:50],
    )


def job_list(*, user: User, filters: JobFilters, after: str | None = None, before: str | None = None,
             size: int = PAGE_SIZE) -> Page:
    """Jobs newest first, filtered; `q` matches anywhere in the job id or display name."""
    account_ids = filtered_account_ids(user=user, account=filters.account, pool_account=filters.pool_account)
    jobs = Job.objects.filter(account_id__in=account_ids).select_related("submitted_by", "account")
    # Scopes filter on indexed columns (submitted_by, team), so the keyset page below stays one range scan.
    jobs = access.scoped(jobs, user=user, scope=filters.scope)
    if filters.state == "live":
        jobs = jobs.live()
    elif filters.state:
        jobs = jobs.filter(state=filters.state)
    if filters.pool:
        jobs = jobs.filter(pool_id=filters.pool)
    if filters.submitter:
        jobs = jobs.filter(submitted_by_id=filters.submitter)
    if filters.q:
        jobs = jobs.filter(Q(job_id__icontains=filters.q) | Q(display_name__icontains=filters.q))
    return keyset_page(jobs, sort=JOB_SORT, tiebreak="id", size=size, after=after, before=before)


def job_filter_choices(*, user: User, scope: AccountScope) -> dict:
    """The accounts, pools and submitters the jobs list can be filtered by."""
    User = get_user_model()
    return {
        "states": [("live", "Not finished"), *JobState.choices],
        "pools": pool_choices(scope),
        # Names only: the choices are kept in the shared cache (portal.pages.shared_value), password hashes are not.
        "submitters": list(User.objects.filter(submitted_jobs__isnull=False).distinct()
                           .order_by(User.USERNAME_FIELD).only("pk", User.USERNAME_FIELD)),
    }


# The job and task pages read these on every request, every viewer's page polling: compiled once.
_JOB_WITH_ACCOUNT = CompiledGet(Job.objects.select_related("account", "submitted_by"))
_TASK_WITH_JOB = CompiledGet(Task.objects.select_related("job", "job__account"))


def job_get(*, user: User, pk: int) -> Job:
    return access.readable_or_404(_JOB_WITH_ACCOUNT, user=user, account_of=lambda job: job.account_id, pk=pk)


def job_pool(job: Job) -> Pool | None:
    return Pool.objects.filter(account_id=job.account_id, pool_id=job.pool_id).first() if job.pool_id else None


TASK_SORTS = {
    sort.param: sort
    for key, label, field_name in [
        ("id", "Task id", None),
        ("start", "Start time", "start_time"),
        ("end", "End time", "end_time"),
        ("duration", "Duration", "duration_seconds"),
    ]
    for sort in (Sort(key, label, field_name), Sort(key, label, field_name, descending=True))
}
DEFAULT_TASK_SORT = TASK_SORTS["id"]


@dataclass(frozen=True)
class TaskFilters:
    state: str = ""
    failed: bool = False
    terminated: bool = False     # only the tasks a terminate killed (Task.killed_by_terminate)
    exit_code: int | None = None
    q: str = ""
    sort: Sort = DEFAULT_TASK_SORT

    @property
    def active(self) -> bool:
        return bool(self.state or self.failed or self.terminated or self.exit_code is not None or self.q)


def task_filters_from(params: Mapping[str, str]) -> TaskFilters:
    state = params.get("state", "")
    return TaskFilters(
        state=state if state in TaskState.values else "",
        failed=params.get("failed") in {"1", "on", "true"},
        terminated=params.get("terminated") in {"1", "on", "true"},
        exit_code=exit_code_param(params.get("exit_code", "")),
        q=params.get("q", "").strip()[:200],
        sort=TASK_SORTS.get(params.get("sort", ""), DEFAULT_TASK_SORT),
    )


def task_list(*, job: Job, filters: TaskFilters, after: str | None = None, before: str | None = None,
              size: int = PAGE_SIZE) -> Page:
    """One page of a job's tasks: filtered, searched anywhere in the id or name, in the chosen order.

    Every filter and sort has an index starting with the job (see Task.Meta.indexes), so a page
    costs the same for 100 tasks as for 100,000; there is no count of matching tasks."""
    tasks = Task.objects.filter(job=job).defer("command_line", "environment")
    if filters.state:
        tasks = tasks.filter(state=filters.state)
    if filters.failed:
        tasks = tasks.failed()
    if filters.terminated:
        tasks = tasks.killed_by_terminate()
    if filters.exit_code is not None:
        tasks = tasks.filter(exit_code=filters.exit_code)
    if filters.q:
        tasks = tasks.filter(Q(task_id__icontains=filters.q) | Q(display_name__icontains=filters.q))
    bound = _matching_tasks_at_most(job, filters)
    return keyset_page(tasks, sort=filters.sort, tiebreak="task_id", size=size, after=after, before=before,
                       sort_index=bound is None or bound > FEW_TASKS)


# Up to this many matching tasks, fetching them all from the filter's index and sorting them is cheap.
FEW_TASKS = 5_000


def _matching_tasks_at_most(job: Job, filters: TaskFilters) -> int | None:
    """An upper bound on the tasks the filters match, from Batch's counts on the job (None: unknown)."""
    bounds: list[int | None] = []
    if filters.state:
        bounds.append({TaskState.ACTIVE: job.task_active, TaskState.RUNNING: job.task_running,
                       # Batch counts preparing tasks as running.
                       TaskState.PREPARING: job.task_running,
                       TaskState.COMPLETED: job.task_completed}.get(filters.state))  # type: ignore[call-overload]
    if filters.failed:
        bounds.append(job.task_failed)
    if filters.terminated:
        bounds.append(job.task_terminated)
    known = [b for b in bounds if b is not None]
    return min(known) if known else None


def task_get(*, user: User, pk: int) -> Task:
    return access.readable_or_404(_TASK_WITH_JOB, user=user, account_of=lambda task: task.job.account_id, pk=pk)


TIMELINE_MIN_GAP_SECONDS = 1.0


@dataclass
class TimelineStep:
    state: str
    label: str
    at: datetime | None
    note: str = ""
    after_seconds: float | None = None
    current: bool = False


def task_attempts(task: Task) -> list[TaskAttempt]:
    """The task's attempts as the sync recorded them, in order (none for a task that has not started)."""
    return list(task.attempts.order_by("number"))


def task_waited_seconds(task: Task, attempts: list[TaskAttempt]) -> float | None:
    """How long the task waited for its first start: not until the last attempt's start, which would count
    failed attempts as waiting. None when the first start was not seen."""
    if attempts:
        first = attempts[0].start_time
    else:
        first = task.start_time if not task.retry_count else None
    if first is None or task.creation_time is None:
        return None
    return max((first - task.creation_time).total_seconds(), 0.0)


def task_timeline(task: Task, attempts: list[TaskAttempt] | None = None) -> list[TimelineStep]:
    """The task's states in order, with when each began: each attempt the sync recorded (its start, and how an
    earlier one ended), else the times Batch reports for the last attempt."""
    steps = [TimelineStep(TaskState.ACTIVE, "Created, waiting for a node", task.creation_time)]
    if task.previous_state == TaskState.PREPARING or task.state == TaskState.PREPARING:
        at = task.state_transition_time if task.state == TaskState.PREPARING else None
        steps.append(TimelineStep(TaskState.PREPARING, "Preparing (job preparation task)", at))
    if attempts and len(attempts) > 1:
        steps += _attempt_steps(attempts)
    elif task.start_time or task.state in (TaskState.RUNNING, TaskState.COMPLETED):
        note = f"attempt {task.retry_count + 1}" if task.retry_count else ""
        at = task.start_time or (task.state_transition_time if task.state == TaskState.RUNNING else None)
        steps.append(TimelineStep(TaskState.RUNNING, "Started running", at, note))
    if task.state == TaskState.COMPLETED:
        label = {"success": "Succeeded", "failure": "Failed"}.get(task.result, "Completed")
        at = task.end_time or task.state_transition_time
        note = "" if task.exit_code is None else f"exit code {task.exit_code}"
        steps.append(TimelineStep(TaskState.COMPLETED, label, at, note))
    if task.gone_at:
        steps.append(TimelineStep("gone", "Deleted in Batch", task.gone_at))
    previous = None
    for step in steps:
        if previous is not None and previous.at and step.at:
            gap = (step.at - previous.at).total_seconds()
            # Below a second the gap says nothing a person can use ("1 ms until the next step"): Batch stamps
            # the steps of a quick task almost together, and its clocks are no finer than that anyway.
            previous.after_seconds = gap if gap >= TIMELINE_MIN_GAP_SECONDS else None
        previous = step
    steps[-1].current = True
    return steps


def _attempt_steps(attempts: list[TaskAttempt]) -> list[TimelineStep]:
    """Each attempt's start, and for each but the last how it ended (the last one's end is the task's)."""
    steps = []
    for attempt in attempts:
        where = f"on {attempt.node_id}" if attempt.node_id else ""
        if attempt.seen:
            steps.append(TimelineStep(TaskState.RUNNING, f"Attempt {attempt.number} started", attempt.start_time,
                                      where))
        else:
            steps.append(TimelineStep(TaskState.RUNNING, f"Attempt {attempt.number} ran", None,
                                      "it started and failed between two syncs, so its times are not known"))
        if attempt is attempts[-1]:
            break
        if attempt.result == "failure":
            steps.append(TimelineStep("failed", f"Attempt {attempt.number} failed", attempt.end_time,
                                      "a non-zero exit code; Batch retried the task"))
        else:
            steps.append(TimelineStep("stopped", f"Attempt {attempt.number} stopped", attempt.end_time,
                                      "Batch ran the task again (requeued or reactivated)"))
    return steps


def task_environment(task: Task) -> list[tuple[str, str]]:
    """The task's environment settings as (name, value) pairs, whichever shape the sync stored."""
    env = task.environment or []
    if isinstance(env, dict):
        return sorted((str(k), "" if v is None else str(v)) for k, v in env.items())
    pairs = []
    for item in env:
        if isinstance(item, dict):
            pairs.append((str(item.get("name", "")), "" if item.get("value") is None else str(item.get("value"))))
    return pairs


def task_node(task: Task) -> Node | None:
    if not (task.node_id and task.pool_id):
        return None
    return (Node.objects.select_related("pool")
            .filter(pool__account_id=task.job.account_id, pool__pool_id=task.pool_id, node_id=task.node_id)
            .first())


# --- What a person may do here ------------------------------------------------------------------

def job_actions_allowed(user: User, job: Job) -> dict[str, bool]:
    """Which actions `user` may start on `job` as the mirror last saw it: what the job page offers. The services
    check again, and Batch has the last word."""
    if job.gone_at is not None or not access.can_act_on(user, job):
        return {"terminate": False, "retry_failed": False}
    return {"terminate": not job.has_ended, "retry_failed": not job.has_ended and job.failed_task_count > 0}


def task_actions_allowed(user: User, task: Task) -> dict[str, bool]:
    """Which actions `user` may start on `task`, as `job_actions_allowed` does for jobs."""
    job = task.job
    if task.gone_at is not None or job.gone_at is not None or not access.can_act_on(user, task):
        return {"terminate": False, "delete": False}
    return {"terminate": not job.has_ended and task.state != TaskState.COMPLETED,
            "delete": job.state != JobState.DELETING}


def job_rerun_url(*, user: User, job: Job) -> str | None:
    """The submission form pre-filled from the submission that made `job`, for someone who may re-run it."""
    submission = Submission.of_job(job)
    if submission is None or not submission.template_version.template.is_active:
        return None
    if not access.can_submit_again(user, submission):
        return None
    form_url = reverse("submit_form", args=[submission.template_version.template.slug])
    return f"{form_url}?rerun={submission.public_id}"


def job_retry_again_url(*, user: User, job: Job) -> str | None:
    """For a job that has ended with failures: the confirm page that submits its failed tasks again as a new job
    (Batch cannot run an ended job's tasks again), when the job came from the portal and `user` may."""
    if not job.has_ended:
        return None
    submission = Submission.of_job(job)
    if submission is None:
        return None
    return submit_selectors.submission_retry_url(user=user, submission=submission, job=job)


def job_retry_not_possible(*, user: User, job: Job) -> str:
    """Why an ended job with failures offers no retry, for someone who may act on it: it did not come from the
    portal. Empty otherwise."""
    if (not job.has_ended or job.gone_at is not None or job.failed_task_count <= 0
            or not access.can_act_on(user, job) or Submission.of_job(job) is not None):
        return ""
    return "Retry not possible: this job was not submitted through the portal, and it has ended."
