"""Failure triage's reads: failed tasks across the jobs a person can see, grouped by what they failed with (Batch's
failure code, the exit code, the first error line of stderr), with the jobs affected and a few examples."""

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db.models import Count, F, Max, Min, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from portal import access
from portal.accounts.selectors import (
    POOL_SEPARATOR,
    AccountScope,
    filtered_account_ids,
    pool_choices,
    split_pool_param,
)
from portal.models import TERMINATED_FAILURE_CODE, BatchAccount, Job, Task, TaskAttempt, TaskResult
from portal.params import exit_code_param, row_id_param

TRIAGE_RANGES = {"24h": ("Last 24 hours", timedelta(hours=24)), "7d": ("Last 7 days", timedelta(days=7)),
                 "all": ("All time", None)}
DEFAULT_TRIAGE_RANGE = "7d"
TRIAGE_GROUPS_SHOWN = 40
TRIAGE_EXAMPLES = 3
TRIAGE_JOBS_SHOWN = 5
# Failed tasks read newest first for the examples before the groups still short of them are asked one by one.
EXAMPLE_SCAN_ROWS = 2_000
# Up to this many (signature, job) rows, one GROUP BY answers the whole page.
PAIR_ROWS = 2_000
# A group's first failure. A retried task's end_time is its latest attempt's (Batch keeps no other), so each task
# counts from its earliest failed attempt the sync recorded (TaskAttempt, looked up by the task's own index); a
# task without attempts (synced before they were recorded) from its end_time.
FIRST_SEEN = Min(Coalesce(Subquery(
    TaskAttempt.objects.filter(task_id=OuterRef("pk"), result=TaskResult.FAILURE, end_time__isnull=False)
    .order_by("end_time").values("end_time")[:1]), "end_time"))


@dataclass(frozen=True)
class TriageFilters:
    range: str = DEFAULT_TRIAGE_RANGE
    job: int | None = None      # a Job row's pk
    pool: str = ""
    pool_account: str = ""      # the account of `pool`, when the pool filter named one (`prod/demo-pool`)
    account: str = ""           # an account's name (portal.accounts.selectors.account_scope)
    # Also tasks killed by a terminate (Task.killed_by_terminate): left out unless asked for, as nothing in them failed.
    terminated: bool = False

    @property
    def pool_value(self) -> str:
        """The pool filter's value as the form sent it, so the same choice shows selected."""
        return f"{self.pool_account}{POOL_SEPARATOR}{self.pool}" if self.pool_account else self.pool

    def since(self, now: datetime) -> datetime | None:
        span = TRIAGE_RANGES[self.range][1]
        return None if span is None else now - span

    @property
    def range_label(self) -> str:
        return TRIAGE_RANGES[self.range][0]

    @property
    def params(self) -> dict[str, str]:
        """The filters as query parameters, for links that keep them (the retry page, "only this job")."""
        params = {"range": self.range}
        if self.job:
            params["job"] = str(self.job)
        if self.pool:
            params["pool"] = self.pool_value
        if self.account:
            params["account"] = self.account
        if self.terminated:
            params["terminated"] = "1"
        return params


def triage_filters_from(params: Mapping[str, str]) -> TriageFilters:
    job, chosen_range = params.get("job", ""), params.get("range", "")
    pool_account, pool = split_pool_param(params.get("pool", ""))
    return TriageFilters(
        range=chosen_range if chosen_range in TRIAGE_RANGES else DEFAULT_TRIAGE_RANGE,
        job=row_id_param(job),
        pool=pool,
        pool_account=pool_account,
        account=params.get("account", "").strip()[:50],
        terminated=params.get("terminated") in {"1", "on", "true"},
    )


@dataclass(frozen=True)
class Signature:
    """What failed tasks share: Batch's failure code, the exit code, and the first error-looking line of stderr."""

    failure_code: str
    exit_code: int | None
    error_line: str

    @property
    def params(self) -> dict[str, str]:
        return {"code": self.failure_code, "exit": "" if self.exit_code is None else str(self.exit_code),
                "line": self.error_line}

    @property
    def lookup(self) -> dict:
        exit_match: dict[str, object] = (
            {"exit_code__isnull": True} if self.exit_code is None else {"exit_code": self.exit_code})
        return {"failure_code": self.failure_code, "error_line": self.error_line, **exit_match}

    @property
    def killed_by_terminate(self) -> bool:
        """Tasks a terminate ended (Task.killed_by_terminate): shown only with the filter, in their own words."""
        return self.failure_code == TERMINATED_FAILURE_CODE

    def tasks(self, queryset: QuerySet[Task]) -> QuerySet[Task]:
        return queryset.filter(**self.lookup)


def signature_from(params: Mapping[str, str]) -> Signature | None:
    """The signature named by a retry link, or None when the parameters cannot name one."""
    if "code" not in params or "exit" not in params or "line" not in params:
        return None
    exit_text = params["exit"].strip()
    code = exit_code_param(exit_text) if exit_text else None  # a group of failures without an exit code
    if exit_text and code is None:
        return None
    return Signature(params["code"][:100], code, params["line"][:300])


@dataclass
class FailureGroup:
    signature: Signature
    count: int
    first_seen: datetime | None
    last_seen: datetime | None
    job_count: int
    jobs: list[tuple[Job, int]]       # the most affected jobs first, at most TRIAGE_JOBS_SHOWN
    examples: list[Task]

    @property
    def more_jobs(self) -> int:
        return self.job_count - len(self.jobs)


@dataclass
class Triage:
    groups: list[FailureGroup]
    more_groups: bool                 # smaller groups exist beyond the ones shown
    failures: int                     # failed tasks in all signatures, shown or not
    since: datetime | None


def _failed_tasks(*, user: User, filters: TriageFilters, now: datetime) -> QuerySet[Task]:
    """Failed tasks the filters select, in accounts the user reads: the one query every triage read starts from.
    Tasks killed by a terminate only when the filters ask for them."""
    tasks = Task.objects.filter(result=TaskResult.FAILURE) if filters.terminated else Task.objects.failed()
    accounts = filtered_account_ids(user=user, account=filters.account, pool_account=filters.pool_account)
    if set(accounts) != set(BatchAccount.objects.values_list("pk", flat=True)):
        # Only when some account is hidden or filtered out: the join costs a lookup per failed task.
        tasks = tasks.filter(job__account_id__in=accounts)
    since = filters.since(now)
    if since is not None:
        tasks = tasks.filter(end_time__gte=since)
    if filters.job:
        tasks = tasks.filter(job_id=filters.job)
    if filters.pool:
        # The jobs on that pool: a few rows from the jobs' pool index, then the tasks of those jobs.
        tasks = tasks.filter(job_id__in=Job.objects.filter(account_id__in=accounts, pool_id=filters.pool)
                             .values("pk"))
    return tasks


def failure_triage(*, user: User, filters: TriageFilters, now: datetime | None = None,
                   limit: int = TRIAGE_GROUPS_SHOWN) -> Triage:
    """Failed tasks grouped by signature, largest group first, with the jobs affected and a few examples.

    Usually one GROUP BY, by signature and job, over the failed tasks in the range: each group's count, first and
    last end time and jobs follow from its rows. When that makes more than PAIR_ROWS rows (a signature spread over
    thousands of jobs, or error lines that name a file each), the database ranks the signatures instead and only
    the shown ones are grouped by job. Then the shown groups' examples. Nothing counts all tasks."""
    now = now or timezone.now()
    failed = _failed_tasks(user=user, filters=filters, now=now)
    pairs = list(failed.values_list("failure_code", "exit_code", "error_line", "job_id")
                 .annotate(n=Count("*"), first=FIRST_SEEN, last=Max("end_time")).order_by()[:PAIR_ROWS + 1])
    if len(pairs) <= PAIR_ROWS:
        rows, per_job = _fold_pairs(pairs)
        more, failures = len(rows) > limit, sum(row[3] for row in rows)
        rows = rows[:limit]
        signatures = [Signature(code, exit_code, line) for code, exit_code, line, *_ in rows]
        top_jobs, job_counts = _rank_jobs(signatures, per_job)
    else:
        rows = list(failed.values_list("failure_code", "exit_code", "error_line")
                    .annotate(n=Count("*"), first=FIRST_SEEN, last=Max("end_time"))
                    .order_by("-n", F("last").desc(nulls_last=True), "failure_code", "error_line")[:limit + 1])
        more = len(rows) > limit
        rows = rows[:limit]
        signatures = [Signature(code, exit_code, line) for code, exit_code, line, *_ in rows]
        top_jobs, job_counts = _top_jobs(failed, signatures, every=not more)
        failures = failed.count() if more else sum(row[3] for row in rows)
    jobs = (Job.objects.select_related("account").only("pk", "job_id", "display_name", "account__name")
            .in_bulk({pk for picked in top_jobs.values() for pk, _ in picked}))
    examples = _examples(failed, {signature: row[3] for signature, row in zip(signatures, rows, strict=True)})
    groups = [FailureGroup(signature=signature, count=n, first_seen=first, last_seen=last,
                           job_count=job_counts.get(signature, 0),
                           jobs=[(jobs[pk], count) for pk, count in top_jobs.get(signature, []) if pk in jobs],
                           examples=examples.get(signature, []))
              for signature, (_, _, _, n, first, last) in zip(signatures, rows, strict=True)]
    return Triage(groups=groups, more_groups=more, failures=failures, since=filters.since(now))


def _fold_pairs(pairs: Iterable[tuple]) -> tuple[list[tuple], dict[tuple, list[tuple[int, int]]]]:
    """(signature rows (code, exit code, line, count, first, last) in the order the page shows them, and each
    signature's (job pk, count) list) from GROUP BY (signature, job) rows."""
    groups: dict[tuple, list] = {}
    per_job: dict[tuple, list[tuple[int, int]]] = {}
    for code, exit_code, line, job_pk, n, first, last in pairs:
        key = (code, exit_code, line)
        group = groups.get(key)
        if group is None:
            groups[key] = [n, first, last]
        else:
            group[0] += n
            if first is not None and (group[1] is None or first < group[1]):
                group[1] = first
            if last is not None and (group[2] is None or last > group[2]):
                group[2] = last
        per_job.setdefault(key, []).append((job_pk, n))
    # As the database would order them: largest first; among equals, the one seen most recently.
    rows = sorted(((*key, n, first, last) for key, (n, first, last) in groups.items()),
                  key=lambda row: (-row[3], -(row[5].timestamp() if row[5] else float("-inf")), row[0], row[2]))
    return rows, per_job


def _rank_jobs(signatures: list[Signature], per_job: dict[tuple, list[tuple[int, int]]]) -> tuple[dict, dict]:
    top, counts = {}, {}
    for signature in signatures:
        jobs = per_job.get((signature.failure_code, signature.exit_code, signature.error_line), [])
        top[signature] = heapq.nsmallest(TRIAGE_JOBS_SHOWN, jobs, key=lambda item: (-item[1], item[0]))
        counts[signature] = len(jobs)
    return top, counts


def _top_jobs(failed: QuerySet[Task], signatures: list[Signature], *, every: bool) -> tuple[dict, dict]:
    """For each shown signature, (job pk, failed tasks) of the TRIAGE_JOBS_SHOWN jobs with the most of them, and how
    many jobs it touches: a GROUP BY (signature, job), over the shown signatures only when some are not shown (`every`
    False). Its rows are ints and short strings; a signature spread over thousands of jobs costs thousands of them."""
    if not signatures:
        return {}, {}
    rows = failed
    if not every:
        match = Q()
        for signature in signatures:
            match |= Q(**signature.lookup)
        rows = rows.filter(match)
    per_job: dict[tuple, list[tuple[int, int]]] = {}
    for code, exit_code, line, job_pk, n in (rows.values_list("failure_code", "exit_code", "error_line", "job_id")
                                             .annotate(n=Count("*")).order_by()):
        per_job.setdefault((code, exit_code, line), []).append((job_pk, n))
    return _rank_jobs(signatures, per_job)


def _examples(failed: QuerySet[Task], groups: dict[Signature, int]) -> dict[Signature, list[Task]]:
    """The newest TRIAGE_EXAMPLES tasks of each shown signature (`groups`: signature → its count).

    Failed tasks are read newest first from the (result, end time) index, a few columns each, until every group
    has its examples or EXAMPLE_SCAN_ROWS were read: the big groups fill within the first rows. A group still
    short after that is small, and its examples come from the signature index, which holds few of its rows.
    Then one query loads the chosen tasks."""
    # Keyed by plain tuples in the loop: thousands of rows, and a dataclass's hash and == cost more.
    needed = {(s.failure_code, s.exit_code, s.error_line): min(TRIAGE_EXAMPLES, n) for s, n in groups.items()}
    picks: dict[tuple, list[int]] = {key: [] for key in needed}
    missing = sum(needed.values())
    newest = failed.order_by("-end_time", "-pk").values_list("failure_code", "exit_code", "error_line", "pk")
    # Two plain reads rather than a cursor: PostgreSQL would materialise a held cursor's whole result up front.
    for start, stop in ((0, EXAMPLE_SCAN_ROWS // 4), (EXAMPLE_SCAN_ROWS // 4, EXAMPLE_SCAN_ROWS)):
        for code, exit_code, line, pk in newest[start:stop]:
            picked = picks.get((code, exit_code, line))
            if picked is not None and len(picked) < needed[(code, exit_code, line)]:
                picked.append(pk)
                missing -= 1
        if not missing:
            break
    chosen = {signature: picks[(signature.failure_code, signature.exit_code, signature.error_line)]
              for signature in groups}
    for signature, picked in chosen.items():
        if len(picked) < min(TRIAGE_EXAMPLES, groups[signature]):
            picked[:] = signature.tasks(failed).order_by(F("end_time").desc(nulls_last=True), "-pk").values_list(
                "pk", flat=True)[:TRIAGE_EXAMPLES]
    tasks = Task.objects.select_related("job").only("pk", "task_id", "display_name", "end_time", "job__job_id",
                                                  "job__display_name") \
        .in_bulk([pk for picked in chosen.values() for pk in picked])
    return {signature: [tasks[pk] for pk in picked if pk in tasks] for signature, picked in chosen.items()}


def triage_filter_choices(*, scope: AccountScope) -> dict:
    return {"ranges": [(key, label) for key, (label, _) in TRIAGE_RANGES.items()], "pools": pool_choices(scope)}


def triage_job(*, user: User, filters: TriageFilters) -> Job | None:
    """The job the triage is narrowed to, if the user may see it (a job they may not see narrows to nothing)."""
    if not filters.job:
        return None
    job = Job.objects.filter(pk=filters.job).first()
    return job if job and access.user_can_view_account(user=user, account_id=job.account_id) else None


def failure_group_tasks(*, user: User, filters: TriageFilters, signature: Signature,
                        now: datetime | None = None) -> list[tuple[Job, list[str]]]:
    """The Batch ids of one signature's failed tasks, per job (jobs by id): what "retry these" acts on."""
    now = now or timezone.now()
    rows = (signature.tasks(_failed_tasks(user=user, filters=filters, now=now))
            .filter(gone_at__isnull=True).values_list("job_id", "task_id").order_by("job_id", "task_id"))
    by_job: dict[int, list[str]] = {}
    for job_pk, task_id in rows:
        by_job.setdefault(job_pk, []).append(task_id)
    jobs = Job.objects.select_related("account").in_bulk(list(by_job))
    return sorted(((jobs[pk], ids) for pk, ids in by_job.items()), key=lambda item: item[0].job_id)


def failure_group_gone(*, user: User, filters: TriageFilters, signature: Signature,
                       now: datetime | None = None) -> int:
    """How many of the signature's failed tasks Batch has deleted: they can no longer be retried."""
    now = now or timezone.now()
    return signature.tasks(_failed_tasks(user=user, filters=filters, now=now)).filter(gone_at__isnull=False).count()
