"""Reads for the pages: dashboard, pools, jobs and tasks, each answered from an index of the mirror.

Nothing here writes, and nothing here counts the task table: counts come from Batch's task counts."""

import base64
import binascii
import heapq
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db.models import Count, F, Max, Min, Q, Sum
from django.db.models.functions import Coalesce, TruncHour
from django.http import Http404
from django.utils import timezone

from portal import access
from portal.models import BatchAccount, Job, JobState, Node, NodeState, Pool, Task, TaskResult, TaskState

PAGE_SIZE = 50
DASHBOARD_JOBS = 12
DASHBOARD_FAILURES = 8
# A sync normally runs every few seconds; older than this and the page says it may be out of date.
STALE_AFTER = timedelta(minutes=2)


# --- Access ---------------------------------------------------------------------------------

def user_can_view_account(*, user, account_id: int) -> bool:
    """Whether `user` may read the mirror of one Batch account.

    Anyone with a role reads every account (portal.access.can_read) until per-account roles exist; this is
    the one place to narrow that, and every object fetch below goes through it."""
    return bool(account_id) and access.can_read(user)


def visible_account_ids(user) -> list[int]:
    """Ids of the accounts `user` may read; lists filter on these (the account table is tiny)."""
    return [pk for pk in BatchAccount.objects.order_by("pk").values_list("pk", flat=True)
            if user_can_view_account(user=user, account_id=pk)]


def accounts_synced_at(account_ids: list[int]) -> datetime | None:
    """When the least recently synced of these accounts was synced: a page is only as fresh as that."""
    synced = list(BatchAccount.objects.filter(pk__in=account_ids).values_list("last_synced_at", flat=True))
    return None if not synced or None in synced else min(synced)


def _checked(obj, user, account_id: int):
    # 404 rather than 403: a person without access learns nothing about which ids exist.
    if not user_can_view_account(user=user, account_id=account_id):
        raise Http404("No such object")
    return obj


def _get_or_404(queryset, **lookup):
    try:
        return queryset.get(**lookup)
    except queryset.model.DoesNotExist:
        raise Http404(f"No {queryset.model._meta.verbose_name} matches the given query.") from None


# --- What can still change --------------------------------------------------------------------

def pool_is_live(pool: Pool) -> bool:
    """A pool that still exists in Batch can resize, and its nodes change state, at any time."""
    return pool.gone_at is None


def job_is_live(job: Job) -> bool:
    return job.gone_at is None and job.state != JobState.COMPLETED


def task_is_live(task: Task) -> bool:
    return task.gone_at is None and task.state != TaskState.COMPLETED and job_is_live(task.job)


def sync_is_stale(synced_at: datetime | None, now: datetime | None = None) -> bool:
    return synced_at is None or (now or timezone.now()) - synced_at > STALE_AFTER


# --- Progress ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Progress:
    """A job's tasks split into the four parts of its progress bar, from Batch's task counts."""

    succeeded: int
    failed: int
    running: int
    waiting: int

    @property
    def total(self) -> int:
        return self.succeeded + self.failed + self.running + self.waiting

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed

    def percent(self, part: int) -> float:
        return round(100 * part / self.total, 2) if self.total else 0.0

    @property
    def succeeded_pct(self) -> float:
        return self.percent(self.succeeded)

    @property
    def failed_pct(self) -> float:
        return self.percent(self.failed)

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
    return Progress(succeeded=job.task_succeeded, failed=job.task_failed,
                    running=job.task_running, waiting=job.task_active)


# --- Keyset pagination ------------------------------------------------------------------------

@dataclass(frozen=True)
class Sort:
    """One way to order a list: by a (possibly nullable) field with a unique tiebreak, or by the tiebreak."""

    key: str
    label: str
    field: str | None
    descending: bool = False

    @property
    def param(self) -> str:
        return f"-{self.key}" if self.descending else self.key


@dataclass
class Page:
    items: list
    next_cursor: str | None = None
    prev_cursor: str | None = None
    first: bool = True

    @property
    def has_next(self) -> bool:
        return self.next_cursor is not None

    @property
    def has_prev(self) -> bool:
        return self.prev_cursor is not None


class BadCursor(ValueError):
    pass


def _encode_cursor(segment: int, value, tie) -> str:
    if isinstance(value, datetime):
        value = value.isoformat()
    raw = json.dumps([segment, value, tie], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, model, sort: Sort, tiebreak: str) -> tuple[int, object, object]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        segment, value, tie = json.loads(raw)
        if segment not in (0, 1) or (segment == 1 and sort.field is None):
            raise BadCursor(cursor)
        if sort.field is not None and segment == 0:
            value = model._meta.get_field(sort.field).to_python(value)
            if value is None:
                raise BadCursor(cursor)
        tie = model._meta.get_field(tiebreak).to_python(tie)
    except (ValueError, TypeError, ValidationError, binascii.Error) as exc:
        # JSONDecodeError and UnicodeDecodeError are ValueErrors; to_python raises ValidationError.
        raise BadCursor(cursor) from exc
    return segment, value, tie


def keyset_page(queryset, *, sort: Sort, tiebreak: str, size: int = PAGE_SIZE,
                after: str | None = None, before: str | None = None, sort_index: bool = True) -> Page:
    """One page of `queryset` in `sort` order, after or before a cursor, without OFFSET or COUNT.

    A nullable sort field splits the order into two segments, rows with a value (ordered by value,
    then tiebreak) and rows without (ordered by tiebreak), both in the sort's direction. Each
    segment is one range scan of an index on (filter…, field, tiebreak), so a page deep into
    100,000 rows costs what the first page costs. A cursor holds (segment, value, tiebreak).

    `sort_index=False` says the filters match few rows: the order is then written so that no index
    can produce it, and the database reads the few rows from the filter's index and sorts them.
    Otherwise PostgreSQL may walk the whole sort index looking for them: it assumes the filter's
    rows are spread evenly along the sort, and running tasks, say, all sit at its far end."""
    model = queryset.model
    segments = [0] if sort.field is None else [0, 1]
    backwards = bool(before) and not after
    cursor = before if backwards else after
    position = None
    if cursor:
        try:
            position = _decode_cursor(cursor, model, sort, tiebreak)
        except BadCursor:
            # A stale or hand-edited link shows the first page rather than an error.
            position, backwards = None, False

    def segment_queryset(segment: int, reverse: bool, start):
        descending = sort.descending != reverse
        if sort.field is None or segment == 1:
            qs = queryset if sort.field is None else queryset.filter(**{f"{sort.field}__isnull": True})
            if start is not None:
                qs = qs.filter(**{f"{tiebreak}__{'lt' if descending else 'gt'}": start[2]})
            return qs.order_by(f"-{tiebreak}" if descending else tiebreak)
        qs = queryset.filter(**{f"{sort.field}__isnull": False})
        if start is not None:
            _, value, tie = start
            # (field, tie) > (value, tie') written so the first condition bounds the index range
            # on every database; the OR only drops rows equal to the cursor's value.
            if descending:
                qs = qs.filter(Q(**{f"{sort.field}__lte": value}),
                               Q(**{f"{sort.field}__lt": value}) | Q(**{f"{tiebreak}__lt": tie}))
            else:
                qs = qs.filter(Q(**{f"{sort.field}__gte": value}),
                               Q(**{f"{sort.field}__gt": value}) | Q(**{f"{tiebreak}__gt": tie}))
        if sort_index:
            prefix = "-" if descending else ""
            return qs.order_by(f"{prefix}{sort.field}", f"{prefix}{tiebreak}")
        # COALESCE(x, x) sorts as x does (x is never null here) but matches no index.
        key = Coalesce(F(sort.field), F(sort.field))
        return qs.order_by(key.desc() if descending else key.asc(), f"-{tiebreak}" if descending else tiebreak)

    def fetch(reverse: bool, start) -> tuple[list, bool]:
        order = list(reversed(segments)) if reverse else segments
        if start is not None:
            order = order[order.index(start[0]):]
        rows: list = []
        for segment in order:
            from_here = start if start is not None and segment == start[0] else None
            rows.extend(segment_queryset(segment, reverse, from_here)[: size + 1 - len(rows)])
            if len(rows) > size:
                return rows[:size], True
        return rows, False

    def position_of(row) -> str:
        value = getattr(row, sort.field) if sort.field else None
        segment = 1 if sort.field and value is None else 0
        return _encode_cursor(segment, value, getattr(row, tiebreak))

    if backwards:
        rows, more_before = fetch(reverse=True, start=position)
        rows.reverse()
        if not more_before:
            # Back at the start: show a full first page, not the remainder of a short one.
            return keyset_page(queryset, sort=sort, tiebreak=tiebreak, size=size, sort_index=sort_index)
        return Page(rows, next_cursor=position_of(rows[-1]) if rows else None,
                    prev_cursor=position_of(rows[0]) if rows else None, first=False)
    rows, more_after = fetch(reverse=False, start=position)
    return Page(rows,
                next_cursor=position_of(rows[-1]) if more_after else None,
                # After a cursor something came before this page; on the first page nothing did.
                prev_cursor=position_of(rows[0]) if position is not None and rows else None,
                first=position is None)


# --- Dashboard --------------------------------------------------------------------------------

@dataclass
class PoolSummary:
    pool: Pool
    node_states: list[tuple[str, str, int]]  # (state value, label, count), most common first
    nodes: int

    @property
    def live(self) -> bool:
        return pool_is_live(self.pool)


@dataclass
class HourBar:
    hour: datetime
    succeeded: int
    failed: int
    height_pct: float = 0.0   # of the chart's scale
    failed_pct: float = 0.0   # of this bar

    @property
    def total(self) -> int:
        return self.succeeded + self.failed

    @property
    def end(self) -> datetime:
        return self.hour + timedelta(hours=1)


def nice_ceiling(value: int) -> int:
    """The smallest round number (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × a power of ten, whole) at or
    above value: a chart's top gridline, close enough to the peak that the bars fill the chart."""
    step = 1
    while True:
        for factor in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8):
            top = step * factor
            if top >= value and top == int(top):
                return int(top)
        step *= 10


@dataclass
class Throughput:
    bars: list[HourBar]
    peak: int

    @property
    def scale(self) -> int:
        return nice_ceiling(max(self.peak, 1))

    @property
    def half_scale(self) -> str:
        half = self.scale / 2
        return f"{half:,.0f}" if half == int(half) else f"{half:,.1f}"

    @property
    def succeeded(self) -> int:
        return sum(bar.succeeded for bar in self.bars)

    @property
    def failed(self) -> int:
        return sum(bar.failed for bar in self.bars)

    @property
    def total(self) -> int:
        return self.succeeded + self.failed


@dataclass
class Dashboard:
    pools: list[PoolSummary]
    node_totals: dict[str, int]
    active_jobs: list[Job]
    active_job_count: int
    tasks_running: int
    tasks_waiting: int
    recent_failures: list[Task]
    throughput: Throughput
    synced_at: datetime | None

    @property
    def nodes(self) -> int:
        return sum(self.node_totals.values())

    @property
    def more_active_jobs(self) -> int:
        return max(self.active_job_count - len(self.active_jobs), 0)


NODE_STATE_LABELS = {state: str(label)[:1].lower() + str(label)[1:] for state, label in NodeState.choices}


def _node_counts(pool_ids: list[int]) -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = {pk: {} for pk in pool_ids}
    if pool_ids:
        rows = (Node.objects.filter(pool_id__in=pool_ids, gone_at__isnull=True)
                .values_list("pool_id", "state").annotate(n=Count("id")).order_by())
        for pool_id, state, n in rows:
            counts[pool_id][state] = n
    return counts


def _pool_summaries(pools: list[Pool]) -> list[PoolSummary]:
    counts = _node_counts([pool.pk for pool in pools])
    summaries = []
    for pool in pools:
        by_state = sorted(counts[pool.pk].items(), key=lambda item: (-item[1], item[0]))
        summaries.append(PoolSummary(
            pool=pool,
            node_states=[(state, NODE_STATE_LABELS.get(state, state), n) for state, n in by_state],
            nodes=sum(counts[pool.pk].values()),
        ))
    return summaries


def tasks_finished_per_hour(*, hours: int = 24, now: datetime | None = None) -> Throughput:
    """Tasks that finished in each of the last `hours` hours (the current one included), split
    into succeeded and failed: two GROUP BYs over the end-time indexes, never a scan of all tasks."""
    now = now or timezone.now()
    current = now.replace(minute=0, second=0, microsecond=0)
    since = current - timedelta(hours=hours - 1)

    def per_hour(queryset) -> dict[datetime, int]:
        rows = (queryset.filter(end_time__gte=since).annotate(hour=TruncHour("end_time"))
                .values_list("hour").annotate(n=Count("*")).order_by())
        return {hour: n for hour, n in rows}

    # Total from the end_time index, failures from the (result, end_time) index: both index-only.
    # Counts per hour across all accounts: no id or name leaves them, and a join would cost the scan.
    total = per_hour(Task.objects.all())
    failed = per_hour(Task.objects.filter(result=TaskResult.FAILURE))
    bars = []
    for step in range(hours):
        hour = since + timedelta(hours=step)
        n_failed = failed.get(hour, 0)
        bars.append(HourBar(hour=hour, succeeded=max(total.get(hour, 0) - n_failed, 0), failed=n_failed))
    throughput = Throughput(bars=bars, peak=max((bar.total for bar in bars), default=0))
    for bar in bars:
        bar.height_pct = round(100 * bar.total / throughput.scale, 2)
        bar.failed_pct = round(100 * bar.failed / bar.total, 2) if bar.total else 0.0
    return throughput


def _live_jobs():
    return Job.objects.filter(gone_at__isnull=True).exclude(state=JobState.COMPLETED)


def dashboard_data(*, user) -> Dashboard:
    now = timezone.now()
    accounts = visible_account_ids(user)
    pools = list(Pool.objects.filter(account_id__in=accounts, gone_at__isnull=True)
                 .select_related("account").order_by("pool_id"))
    summaries = _pool_summaries(pools)
    node_totals: dict[str, int] = {}
    for summary in summaries:
        for state, _, n in summary.node_states:
            node_totals[state] = node_totals.get(state, 0) + n

    live = _live_jobs().filter(account_id__in=accounts)
    active_jobs = list(live.select_related("submitted_by").order_by("-creation_time", "-pk")[:DASHBOARD_JOBS])
    # Jobs are thousands, not millions; one aggregate over the unfinished ones is cheap.
    totals = live.aggregate(jobs=Count("pk"), running=Sum("task_running"), waiting=Sum("task_active"))
    failures = list(Task.objects.filter(result=TaskResult.FAILURE, job__account_id__in=accounts)
                    .select_related("job").order_by("-end_time")[:DASHBOARD_FAILURES])
    synced_at = accounts_synced_at(accounts)
    return Dashboard(
        pools=summaries, node_totals=node_totals, active_jobs=active_jobs, active_job_count=totals["jobs"],
        tasks_running=totals["running"] or 0, tasks_waiting=totals["waiting"] or 0,
        recent_failures=failures, throughput=tasks_finished_per_hour(now=now), synced_at=synced_at,
    )


# --- Pools ------------------------------------------------------------------------------------

def pool_list(*, user) -> list[PoolSummary]:
    """Every pool, those Batch still has first, then the ones it deleted, kept as history."""
    pools = Pool.objects.filter(account_id__in=visible_account_ids(user)).select_related("account")
    return _pool_summaries(list(pools.order_by(F("gone_at").desc(nulls_first=True), "pool_id")))


def pool_get(*, user, pk: int) -> Pool:
    pool = _get_or_404(Pool.objects.select_related("account"), pk=pk)
    return _checked(pool, user, pool.account_id)


GONE_NODES_SHOWN = 50
# Past this many nodes the table lists only the nodes that need a look; the heatmap still shows all.
NODE_TABLE_LIMIT = 200
HEALTHY_NODE_STATES = {NodeState.IDLE, NodeState.RUNNING, NodeState.CREATING, NodeState.STARTING,
                       NodeState.WAITING_FOR_START_TASK}


def node_needs_a_look(node: Node) -> bool:
    return node.state not in HEALTHY_NODE_STATES or node.start_task_result == TaskResult.FAILURE


@dataclass
class PoolDetail:
    pool: Pool
    nodes: list[Node]
    gone_nodes: list[Node]
    node_states: list[tuple[str, str, int]]
    start_task_failures: int
    jobs: list[Job]
    live: bool
    table_nodes: list[Node]

    @property
    def more_gone_nodes(self) -> bool:
        return len(self.gone_nodes) >= GONE_NODES_SHOWN

    @property
    def nodes_not_in_table(self) -> int:
        return len(self.nodes) - len(self.table_nodes)


def pool_detail(*, pool: Pool) -> PoolDetail:
    nodes = list(Node.objects.filter(pool=pool, gone_at__isnull=True).order_by("node_id"))
    # Nodes that left pile up over months of autoscaling; the page keeps the latest as history.
    gone = list(Node.objects.filter(pool=pool, gone_at__isnull=False).order_by("-gone_at", "node_id")[:GONE_NODES_SHOWN])
    counts: dict[str, int] = {}
    for node in nodes:
        counts[node.state] = counts.get(node.state, 0) + 1
    # The legend lists every state in Batch's order, present ones with their count.
    node_states = [(state, NODE_STATE_LABELS[state], counts.get(state, 0)) for state in NodeState.values]
    jobs = list(_live_jobs().filter(account_id=pool.account_id, pool_id=pool.pool_id)
                .order_by("-creation_time", "-pk")[:10])
    return PoolDetail(
        pool=pool, nodes=nodes, gone_nodes=gone, node_states=node_states,
        start_task_failures=sum(1 for node in nodes if node.start_task_result == TaskResult.FAILURE
                                or node.state == NodeState.START_TASK_FAILED),
        jobs=jobs, live=pool_is_live(pool),
        table_nodes=nodes if len(nodes) <= NODE_TABLE_LIMIT else [n for n in nodes if node_needs_a_look(n)],
    )


# --- Jobs -------------------------------------------------------------------------------------

JOB_SORT = Sort("created", "Newest first", "creation_time", descending=True)


@dataclass(frozen=True)
class JobFilters:
    state: str = ""
    pool: str = ""
    submitter: int | None = None
    q: str = ""
    # My / Team / All (portal.access.SCOPES). Not a filter in `active`: it has its own selector and always a value.
    scope: str = access.SCOPE_ALL

    @property
    def active(self) -> bool:
        return bool(self.state or self.pool or self.submitter or self.q)


def scope_from(params, default: str = access.SCOPE_ALL) -> str:
    scope = params.get("scope", "")
    return scope if scope in dict(access.SCOPES) else default


def job_filters_from(params, *, default_scope: str = access.SCOPE_ALL) -> JobFilters:
    state = params.get("state", "")
    submitter = params.get("submitter", "")
    return JobFilters(
        scope=scope_from(params, default_scope),
        state=state if state in {"live", *JobState.values} else "",
        pool=params.get("pool", "").strip()[:64],
        submitter=int(submitter) if submitter.isdigit() else None,
        q=params.get("q", "").strip()[:200],
    )


def job_list(*, user, filters: JobFilters, after: str | None = None, before: str | None = None,
             size: int = PAGE_SIZE) -> Page:
    """Jobs newest first, filtered; `q` matches anywhere in the job id or display name."""
    jobs = Job.objects.filter(account_id__in=visible_account_ids(user)).select_related("submitted_by", "account")
    # Scopes filter on indexed columns (submitted_by, team), so the keyset page below stays one range scan.
    jobs = access.scoped(jobs, user=user, scope=filters.scope)
    if filters.state == "live":
        jobs = jobs.filter(gone_at__isnull=True).exclude(state=JobState.COMPLETED)
    elif filters.state:
        jobs = jobs.filter(state=filters.state)
    if filters.pool:
        jobs = jobs.filter(pool_id=filters.pool)
    if filters.submitter:
        jobs = jobs.filter(submitted_by_id=filters.submitter)
    if filters.q:
        jobs = jobs.filter(Q(job_id__icontains=filters.q) | Q(display_name__icontains=filters.q))
    return keyset_page(jobs, sort=JOB_SORT, tiebreak="id", size=size, after=after, before=before)


def job_filter_choices(*, user) -> dict:
    """The pools and submitters the jobs list can be filtered by."""
    from django.contrib.auth import get_user_model

    User = get_user_model()
    return {
        "states": [("live", "Not finished"), *JobState.choices],
        "pools": list(Pool.objects.filter(account_id__in=visible_account_ids(user)).order_by("pool_id")
                      .values_list("pool_id", flat=True).distinct()),
        "submitters": list(User.objects.filter(submitted_jobs__isnull=False).distinct()
                           .order_by(User.USERNAME_FIELD)),
    }


def job_get(*, user, pk: int) -> Job:
    job = _get_or_404(Job.objects.select_related("account", "submitted_by"), pk=pk)
    return _checked(job, user, job.account_id)


def job_pool(job: Job) -> Pool | None:
    return Pool.objects.filter(account_id=job.account_id, pool_id=job.pool_id).first() if job.pool_id else None


# --- Tasks ------------------------------------------------------------------------------------

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
    exit_code: int | None = None
    q: str = ""
    sort: Sort = DEFAULT_TASK_SORT

    @property
    def active(self) -> bool:
        return bool(self.state or self.failed or self.exit_code is not None or self.q)


def task_filters_from(params) -> TaskFilters:
    state = params.get("state", "")
    exit_code = params.get("exit_code", "").strip()
    try:
        code = int(exit_code) if exit_code else None
    except ValueError:
        code = None
    if code is not None and not -(2**31) <= code < 2**31:
        code = None  # Exit codes are 32-bit; anything else matches nothing and would overflow the column.
    return TaskFilters(
        state=state if state in TaskState.values else "",
        failed=params.get("failed") in {"1", "on", "true"},
        exit_code=code,
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
        tasks = tasks.filter(result=TaskResult.FAILURE)
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
    bounds = []
    if filters.state:
        bounds.append({TaskState.ACTIVE: job.task_active, TaskState.RUNNING: job.task_running,
                       # Batch counts preparing tasks as running.
                       TaskState.PREPARING: job.task_running,
                       TaskState.COMPLETED: job.task_completed}.get(filters.state))
    if filters.failed:
        bounds.append(job.task_failed)
    bounds = [b for b in bounds if b is not None]
    return min(bounds) if bounds else None


def task_get(*, user, pk: int) -> Task:
    task = _get_or_404(Task.objects.select_related("job", "job__account"), pk=pk)
    return _checked(task, user, task.job.account_id)


@dataclass
class TimelineStep:
    state: str
    label: str
    at: datetime | None
    note: str = ""
    after_seconds: float | None = None
    current: bool = False


def task_timeline(task: Task) -> list[TimelineStep]:
    """The task's states in order, with when each began, from the times Batch reports.

    Batch keeps the times of the last attempt only: with retries, `start_time` is the last start."""
    steps = [TimelineStep(TaskState.ACTIVE, "Created, waiting for a node", task.creation_time)]
    if task.previous_state == TaskState.PREPARING or task.state == TaskState.PREPARING:
        at = task.state_transition_time if task.state == TaskState.PREPARING else None
        steps.append(TimelineStep(TaskState.PREPARING, "Preparing (job preparation task)", at))
    if task.start_time or task.state in (TaskState.RUNNING, TaskState.COMPLETED):
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
            previous.after_seconds = max((step.at - previous.at).total_seconds(), 0.0)
        previous = step
    steps[-1].current = True
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


# --- Failure triage -----------------------------------------------------------------------------

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


@dataclass(frozen=True)
class TriageFilters:
    range: str = DEFAULT_TRIAGE_RANGE
    job: int | None = None      # a Job row's pk
    pool: str = ""

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
            params["pool"] = self.pool
        return params


def triage_filters_from(params) -> TriageFilters:
    job = params.get("job", "")
    return TriageFilters(
        range=params.get("range") if params.get("range") in TRIAGE_RANGES else DEFAULT_TRIAGE_RANGE,
        job=int(job) if job.isdigit() and len(job) < 19 else None,
        pool=params.get("pool", "").strip()[:64],
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
        exit_match = {"exit_code__isnull": True} if self.exit_code is None else {"exit_code": self.exit_code}
        return {"failure_code": self.failure_code, "error_line": self.error_line, **exit_match}

    def tasks(self, queryset):
        return queryset.filter(**self.lookup)


def signature_from(params) -> Signature | None:
    """The signature named by a retry link, or None when the parameters cannot name one."""
    if "code" not in params or "exit" not in params or "line" not in params:
        return None
    exit_code = params["exit"].strip()
    try:
        code = int(exit_code) if exit_code else None
    except ValueError:
        return None
    if code is not None and not -(2**31) <= code < 2**31:
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


def _failed_tasks(*, user, filters: TriageFilters, now: datetime):
    """Failed tasks the filters select, in accounts the user reads: the one query every triage read starts from."""
    tasks = Task.objects.filter(result=TaskResult.FAILURE)
    accounts = visible_account_ids(user)
    if set(accounts) != set(BatchAccount.objects.values_list("pk", flat=True)):
        # Only when some account is hidden: the join costs a lookup per failed task.
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


def failure_triage(*, user, filters: TriageFilters, now: datetime | None = None,
                   limit: int = TRIAGE_GROUPS_SHOWN) -> Triage:
    """Failed tasks grouped by signature, largest group first, with the jobs affected and a few examples.

    Usually one GROUP BY, by signature and job, over the failed tasks in the range: each group's count, first and
    last end time and jobs follow from its rows. When that makes more than PAIR_ROWS rows (a signature spread over
    thousands of jobs, or error lines that name a file each), the database ranks the signatures instead and only
    the shown ones are grouped by job. Then the shown groups' examples. Nothing counts all tasks."""
    now = now or timezone.now()
    failed = _failed_tasks(user=user, filters=filters, now=now)
    pairs = list(failed.values_list("failure_code", "exit_code", "error_line", "job_id")
                 .annotate(n=Count("*"), first=Min("end_time"), last=Max("end_time")).order_by()[:PAIR_ROWS + 1])
    if len(pairs) <= PAIR_ROWS:
        rows, per_job = _fold_pairs(pairs)
        more, failures = len(rows) > limit, sum(row[3] for row in rows)
        rows = rows[:limit]
        signatures = [Signature(code, exit_code, line) for code, exit_code, line, *_ in rows]
        top_jobs, job_counts = _rank_jobs(signatures, per_job)
    else:
        rows = list(failed.values_list("failure_code", "exit_code", "error_line")
                    .annotate(n=Count("*"), first=Min("end_time"), last=Max("end_time"))
                    .order_by("-n", F("last").desc(nulls_last=True), "failure_code", "error_line")[:limit + 1])
        more = len(rows) > limit
        rows = rows[:limit]
        signatures = [Signature(code, exit_code, line) for code, exit_code, line, *_ in rows]
        top_jobs, job_counts = _top_jobs(failed, signatures, every=not more)
        failures = failed.count() if more else sum(row[3] for row in rows)
    jobs = Job.objects.only("pk", "job_id").in_bulk({pk for picked in top_jobs.values() for pk, _ in picked})
    examples = _examples(failed, {signature: row[3] for signature, row in zip(signatures, rows, strict=True)})
    groups = [FailureGroup(signature=signature, count=n, first_seen=first, last_seen=last,
                           job_count=job_counts.get(signature, 0),
                           jobs=[(jobs[pk], count) for pk, count in top_jobs.get(signature, []) if pk in jobs],
                           examples=examples.get(signature, []))
              for signature, (_, _, _, n, first, last) in zip(signatures, rows, strict=True)]
    return Triage(groups=groups, more_groups=more, failures=failures, since=filters.since(now))


def _fold_pairs(pairs) -> tuple[list[tuple], dict[tuple, list[tuple[int, int]]]]:
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


def _top_jobs(failed, signatures: list[Signature], *, every: bool) -> tuple[dict, dict]:
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


def _examples(failed, groups: dict[Signature, int]) -> dict[Signature, list[Task]]:
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
    tasks = Task.objects.select_related("job").only("pk", "task_id", "display_name", "end_time", "job__job_id") \
        .in_bulk([pk for picked in chosen.values() for pk in picked])
    return {signature: [tasks[pk] for pk in picked if pk in tasks] for signature, picked in chosen.items()}


def triage_filter_choices(*, user) -> dict:
    return {"ranges": [(key, label) for key, (label, _) in TRIAGE_RANGES.items()],
            "pools": list(Pool.objects.filter(account_id__in=visible_account_ids(user)).order_by("pool_id")
                          .values_list("pool_id", flat=True).distinct())}


def triage_job(*, user, filters: TriageFilters) -> Job | None:
    """The job the triage is narrowed to, if the user may see it (a job they may not see narrows to nothing)."""
    if not filters.job:
        return None
    job = Job.objects.filter(pk=filters.job).first()
    return job if job and user_can_view_account(user=user, account_id=job.account_id) else None


def failure_group_tasks(*, user, filters: TriageFilters, signature: Signature,
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


def failure_group_gone(*, user, filters: TriageFilters, signature: Signature, now: datetime | None = None) -> int:
    """How many of the signature's failed tasks Batch has deleted: they can no longer be retried."""
    now = now or timezone.now()
    return signature.tasks(_failed_tasks(user=user, filters=filters, now=now)).filter(gone_at__isnull=False).count()


# --- Audit history ----------------------------------------------------------------------------
# Reads of portal.models.AuditEvent for the audit pages and the History sections; writes are portal/audit.py's.

AUDIT_NEWEST_FIRST = Sort("new", "Newest first", None, descending=True)
HISTORY_SHOWN = 20


@dataclass(frozen=True)
class AuditFilters:
    who: str = ""
    action: str = ""
    object_type: str = ""
    object_id: str = ""
    since: datetime | None = None     # from, inclusive
    until: datetime | None = None     # to, exclusive (a date alone means the end of that day)
    since_text: str = ""
    until_text: str = ""

    @property
    def active(self) -> bool:
        return bool(self.who or self.action or self.object_type or self.object_id or self.since or self.until)

    def as_params(self) -> dict:
        params = {"who": self.who, "action": self.action, "object_type": self.object_type,
                  "object_id": self.object_id, "from": self.since_text, "to": self.until_text}
        return {key: value for key, value in params.items() if value}


def _audit_time(text: str, *, end: bool) -> datetime | None:
    """A time typed into the from/to fields: a date, or a date and time (the page's datetime-local), in UTC."""
    from datetime import UTC

    from django.utils.dateparse import parse_date, parse_datetime

    text = text.strip()
    try:
        # A date first: parse_datetime would read one as its midnight, and "to" a date means the whole day.
        day = parse_date(text)
        if day is not None:
            moment = datetime(day.year, day.month, day.day) + (timedelta(days=1) if end else timedelta())
        else:
            moment = parse_datetime(text)
        if moment is None:
            return None
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if timezone.is_naive(moment) else moment


def audit_filters_from(params) -> AuditFilters:
    since_text, until_text = params.get("from", "").strip()[:32], params.get("to", "").strip()[:32]
    since, until = _audit_time(since_text, end=False), _audit_time(until_text, end=True)
    return AuditFilters(
        who=params.get("who", "").strip()[:150], action=params.get("action", "").strip()[:64],
        object_type=params.get("object_type", "").strip()[:40], object_id=params.get("object_id", "").strip()[:200],
        since=since, until=until, since_text=since_text if since else "", until_text=until_text if until else "")


def audit_events(filters: AuditFilters):
    """The filtered events, unordered. `action` matches a prefix, so "job." finds every job action; `who`
    matches the start of the name recorded at the time (people renamed or deleted since are still found)."""
    from portal.models import AuditEvent

    events = AuditEvent.objects.all()
    if filters.who:
        events = events.filter(actor_name__istartswith=filters.who)
    if filters.action:
        events = events.filter(action__startswith=filters.action)
    if filters.object_type:
        events = events.filter(object_type=filters.object_type)
    if filters.object_id:
        events = events.filter(object_id=filters.object_id)
    if filters.since:
        events = events.filter(at__gte=filters.since)
    if filters.until:
        events = events.filter(at__lt=filters.until)
    return events


def audit_list(*, filters: AuditFilters, after: str | None = None, before: str | None = None,
               size: int = PAGE_SIZE) -> Page:
    """Newest first by id (the chain's order), keyset-paged: nothing counts the table."""
    return keyset_page(audit_events(filters), sort=AUDIT_NEWEST_FIRST, tiebreak="id", size=size,
                       after=after, before=before)


def audit_for_job(job: Job, limit: int = HISTORY_SHOWN) -> list:
    """The latest events about a job and about the submission that made it, newest first."""
    from django.db.models import CharField
    from django.db.models.functions import Cast

    from portal.models import AuditEvent, Submission

    # One query: the submission's id is looked up inside it (object ids are text).
    made_it = (Submission.objects.filter(job_id=job.job_id, account_id=job.account_id)
               .values(pk_text=Cast("pk", output_field=CharField())))
    about = Q(object_type="job", object_id=str(job.pk)) | Q(object_type="submission", object_id__in=made_it)
    return list(AuditEvent.objects.filter(about).order_by("-id")[:limit])


def audit_for_submission(submission, job: Job | None, limit: int = HISTORY_SHOWN) -> list:
    """The latest events about a submission and, once synced, the job it made, newest first."""
    from portal.models import AuditEvent

    about = Q(object_type="submission", object_id=str(submission.pk))
    if job is not None:
        about |= Q(object_type="job", object_id=str(job.pk))
    return list(AuditEvent.objects.filter(about).order_by("-id")[:limit])


def audit_for_object(object_type: str, object_id, limit: int = HISTORY_SHOWN) -> list:
    from portal.models import AuditEvent

    return list(AuditEvent.objects.filter(object_type=object_type, object_id=str(object_id))
                .order_by("-id")[:limit])


def audit_value_text(value) -> str:
    if value is None or value == "" or value == []:
        return "–"
    if isinstance(value, list) and all(isinstance(item, (str, int, float)) for item in value):
        return ", ".join(str(item) for item in value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def audit_change_lines(event) -> list[tuple[str, str, str]]:
    """(field, before, after) as text, for "field: before → after"."""
    lines = []
    for field, pair in sorted((event.changes or {}).items()):
        before, after = pair if isinstance(pair, list) and len(pair) == 2 else (None, pair)
        lines.append((field, audit_value_text(before), audit_value_text(after)))
    return lines


def audit_object_links(events, *, user) -> dict[tuple[str, str], str]:
    """Links to the objects the events are about that still exist, {(object_type, object_id): url}: one query
    per type on the page, by primary key or Batch id."""
    from django.contrib.auth import get_user_model
    from django.urls import reverse

    from portal.models import JobTemplate, PoolTemplate, Submission

    wanted: dict[str, set[str]] = {}
    for event in events:
        if event.object_type and event.object_id:
            wanted.setdefault(event.object_type, set()).add(event.object_id)

    def pks(ids):
        return [int(i) for i in ids if i.isdigit()]

    links: dict[tuple[str, str], str] = {}
    if "job" in wanted:
        for pk in Job.objects.filter(pk__in=pks(wanted["job"])).values_list("pk", flat=True):
            links[("job", str(pk))] = reverse("job_detail", args=[pk])
    if "task" in wanted:
        for pk in Task.objects.filter(pk__in=pks(wanted["task"])).values_list("pk", flat=True):
            links[("task", str(pk))] = reverse("task_detail", args=[pk])
    if "pool" in wanted:
        for pk, pool_id in (Pool.objects.filter(pool_id__in=wanted["pool"], gone_at__isnull=True)
                            .values_list("pk", "pool_id")):
            links[("pool", pool_id)] = reverse("pool_detail", args=[pk])
    if "submission" in wanted:
        for pk, public_id in Submission.objects.filter(pk__in=pks(wanted["submission"])).values_list("pk",
                                                                                                 "public_id"):
            links[("submission", str(pk))] = reverse("submission_detail", args=[public_id])
    if user.is_staff:
        for object_type, model, admin_name in (("job_template", JobTemplate, "admin:portal_jobtemplate_change"),
                                               ("pool_template", PoolTemplate, "admin:portal_pooltemplate_change"),
                                               ("user", get_user_model(), "admin:auth_user_change")):
            if object_type in wanted:
                for pk in model._default_manager.filter(pk__in=pks(wanted[object_type])).values_list("pk",
                                                                                                     flat=True):
                    links[(object_type, str(pk))] = reverse(admin_name, args=[pk])
    return links


def audit_rows(events, *, user) -> list:
    """The events with what the page shows of them: `link` (or None) and `change_lines`."""
    links = audit_object_links(events, user=user)
    for event in events:
        event.link = links.get((event.object_type, event.object_id))
        event.change_lines = audit_change_lines(event)
    return events


def audit_list_url(object_type: str, object_id) -> str:
    """The audit list filtered to one object."""
    from urllib.parse import urlencode

    from django.urls import reverse

    return reverse("audit_list") + "?" + urlencode({"object_type": object_type, "object_id": object_id})
