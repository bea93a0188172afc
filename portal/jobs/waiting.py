"""Why is it waiting? The reasons a job's (or a task's) waiting tasks do not start, in plain words, each with what
would change it and who can do that, reasoned from the mirror alone: one function per reason.

Cheap by design, so the job page of a 100,000-task job can show it on every render: the job page reads the pool
with its node counts, the pool's other busy jobs and the job's first blocking failure in the one statement that
reads the pool anyway (pool_of); a list of jobs (the dashboard) reads its pools and their busy jobs in two queries;
never a query per task. Who can act comes from portal.access (its role names), never from roles written here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.db.models import Count, F, Q, QuerySet, Sum, Window
from django.db.models.functions import RowNumber
from django.urls import reverse

from portal import access

if TYPE_CHECKING:
    from batchsync.gateway.records import PrepTaskRecord
from portal.models import AllocationState, Job, JobState, Node, NodeState, Pool, Task, TaskDependency, TaskState

# How long a real Batch node takes from "resizing" to taking tasks: what the resize reason tells people to expect.
NODE_START_MINUTES = "3–8 minutes"
# Node states that will take tasks once they are through: counted as "starting".
STARTING_STATES = frozenset({NodeState.CREATING, NodeState.STARTING, NodeState.WAITING_FOR_START_TASK,
                             NodeState.REBOOTING, NodeState.REIMAGING})
USABLE_STATES = frozenset({NodeState.IDLE, NodeState.RUNNING})
# Batch's resize error codes that mean the account's quota, not the pool, stops more nodes.
QUOTA_CODES = ("AccountCoreQuotaReached", "AccountLowPriorityCoreQuotaReached", "AccountSpotCoreQuotaReached",
               "AccountVMSeriesCoreQuotaReached")
# A task page lists this many of the tasks a task waits for by name, then "N more".
NAMED_PARENTS = 1
# Range dependencies are looked up by id only this far; a wider range is described, not counted.
MAX_RANGE_LOOKUP = 1000


@dataclass(frozen=True)
class Reason:
    """One reason work waits: the sentence, what would change it, who can do that, and where to do it."""

    code: str
    sentence: str
    change: str
    who: str
    link: str | None = None
    # How many of the job's tasks wait for this reason, when it is known (the job page groups by it).
    tasks: int | None = None

    @property
    def grouped(self) -> str:
        """The sentence led by the number of tasks it holds back: '812 tasks wait: all 16 slots are busy …'."""
        if not self.tasks:
            return self.sentence
        return f"{self.tasks:,} task{'s' if self.tasks != 1 else ''} wait{'s' if self.tasks == 1 else ''}: " \
               f"{self.sentence}"


@dataclass(frozen=True)
class NodeSummary:
    """The pool's nodes, counted by what matters here, from one aggregate query."""

    total: int = 0
    usable: int = 0
    starting: int = 0
    start_task_failed: int = 0
    busy_slots: int = 0
    failed_exit_code: int | None = None
    failed_code: str = ""


@dataclass(frozen=True)
class BusyJob:
    """Another job with tasks running on the pool: what the slots reason names."""

    pk: int
    job_id: str
    priority: int


@dataclass(frozen=True)
class Situation:
    """What the reasons of one job read, gathered once: the job, its pool, its pool's nodes."""

    job: Job
    pool: Pool | None
    nodes: NodeSummary = field(default_factory=NodeSummary)
    # Read with the pool when pool_of gave it (None: not read yet): the pool's busy jobs ahead of this one (the
    # first of them, and how many in all), and the job's first failed task whose failure blocks its dependents.
    ahead: tuple[BusyJob, int] | None = None
    blocker: tuple[str | None] | None = None

    @property
    def slots(self) -> int:
        return self.nodes.usable * (self.pool.task_slots_per_node if self.pool else 1)

    @property
    def free_slots(self) -> int:
        return max(0, self.slots - self.nodes.busy_slots)


# --- the reasons, one function each (None: this reason does not hold) ---------------------------------------

def job_disabled(s: Situation) -> Reason | None:
    if s.job.state not in (JobState.DISABLED, JobState.DISABLING):
        return None
    return Reason("job_disabled", f"the job {s.job.job_id} is disabled: Batch starts none of its tasks until it "
                  "is enabled again", "enable the job in Batch",
                  f"its submitter, or {access.role_for(access.OPERATE_TEAM_WORK)} of its team, can enable it",
                  tasks=s.job.task_active)


def max_parallel_reached(s: Situation) -> Reason | None:
    limit = s.job.max_parallel_tasks
    if limit < 0 or s.job.task_running < limit:
        return None
    running = s.job.task_running
    return Reason("max_parallel", f"the job runs at most {limit:,} task{'s' if limit != 1 else ''} at once (its "
                  f"maxParallelTasks) and {running:,} {'is' if running == 1 else 'are'} running",
                  "raise the job's maxParallelTasks, or wait for running tasks to finish",
                  f"its submitter, or {access.role_for(access.OPERATE_TEAM_WORK)} of its team, can raise it",
                  tasks=s.job.task_active)


def pool_missing(s: Situation) -> Reason | None:
    if s.pool is not None and s.pool.gone_at is None:
        return None
    if not s.job.pool_id:
        # A job with a pool of its own (an auto pool): Batch names the pool once it has made it.
        return Reason("pool_missing", "Batch is still making the job's own pool", "wait: its nodes start once the "
                      f"pool exists, in {NODE_START_MINUTES}", "nobody needs to act", tasks=s.job.task_active)
    name = s.job.pool_id
    return Reason("pool_missing", f"the pool {name} does not exist (any more), so nothing can run the tasks",
                  f"create a pool named {name}", _pool_who("create", name), reverse("pool_list"),
                  tasks=s.job.task_active)


def autoscale_at_zero(s: Situation) -> Reason | None:
    pool = s.pool
    if pool is None or not pool.enable_auto_scale or pool.target_dedicated_nodes + pool.target_low_priority_nodes:
        return None
    why = f" (its last run failed: {pool.auto_scale_error})" if pool.auto_scale_error else ""
    return Reason("autoscale_zero", f"the autoscale formula of pool {pool.pool_id} keeps it at zero nodes{why}",
                  "change the formula (or turn autoscale off and resize)", _pool_who("change", pool.pool_id),
                  _pool_link(pool), tasks=s.job.task_active)


def quota_reached(s: Situation) -> Reason | None:
    pool = s.pool
    if pool is None or not pool.resize_error_code.startswith(QUOTA_CODES):
        return None
    return Reason("quota", f"the account's core quota is used up: pool {pool.pool_id} could not get more nodes "
                  f"({pool.resize_error_code})", "free cores in other pools, or raise the account's quota in Azure",
                  f"{access.role_for(access.MANAGE_POOLS)} can shrink other pools; the Azure subscription's owner "
                  "can raise the quota", _pool_link(pool), tasks=s.job.task_active)


def pool_has_no_nodes(s: Situation) -> Reason | None:
    pool = s.pool
    if pool is None or pool.enable_auto_scale or s.nodes.total or _target(pool):
        return None
    return Reason("no_nodes", f"the pool {pool.pool_id} has no nodes", f"resize {pool.pool_id}",
                  _pool_who("resize", pool.pool_id), _pool_link(pool), tasks=s.job.task_active)


def pool_resizing(s: Situation) -> Reason | None:
    pool = s.pool
    if pool is None or s.nodes.usable or not (s.nodes.starting or (
            pool.allocation_state == AllocationState.RESIZING and _target(pool))):
        return None
    have = s.nodes.starting
    return Reason("resizing", f"the pool {pool.pool_id} is still starting its nodes ({have:,} of {_target(pool):,} "
                  f"on their way); a new node takes {NODE_START_MINUTES} to start", "wait: the tasks start as the "
                  "nodes become ready", "nobody needs to act", _pool_link(pool), tasks=s.job.task_active)


def start_task_failed(s: Situation) -> Reason | None:
    pool, nodes = s.pool, s.nodes
    if pool is None or not nodes.start_task_failed or nodes.usable or nodes.starting:
        return None
    exit_code = f" (exit code {nodes.failed_exit_code})" if nodes.failed_exit_code is not None else \
        (f" ({nodes.failed_code})" if nodes.failed_code else "")
    every = "every node's" if nodes.start_task_failed == nodes.total else \
        f"{nodes.start_task_failed:,} of {nodes.total:,} nodes'"
    return Reason("start_task_failed", f"{every} start task failed{exit_code}, so no node of pool {pool.pool_id} "
                  "takes tasks", f"fix the start task of {pool.pool_id}, then reboot or recreate its nodes",
                  _pool_who("fix", pool.pool_id), _pool_link(pool), tasks=s.job.task_active)


def slots_busy(s: Situation, ahead: Sequence[BusyJob | Job] = (), count: int | None = None) -> Reason | None:
    """`ahead`: the pool's other busy jobs, highest priority first (or the first of them, with `count` of all)."""
    if s.pool is None or not s.nodes.usable or s.free_slots:
        return None
    slots = f"all {s.slots:,} slots are" if s.slots != 1 else "the only slot is"
    others = [job for job in ahead if job.pk != s.job.pk]
    if not others:
        return Reason("slots_busy", f"{slots} busy with this job's own tasks (pool {s.pool.pool_id})",
                      f"more nodes in {s.pool.pool_id}, or wait", _pool_who("resize", s.pool.pool_id),
                      _pool_link(s.pool), tasks=s.job.task_active)
    first = others[0]
    more = (len(others) if count is None else count) - 1
    rest = f" and {more} other job{'s' if more > 1 else ''}" if more > 0 else ""
    order = ">" if first.priority > s.job.priority else ("=" if first.priority == s.job.priority else "<")
    return Reason("slots_busy", f"{slots} busy with job {first.job_id}{rest} (priority {first.priority} "
                  f"{order} yours {s.job.priority})", f"wait for job {first.job_id}, or more nodes in "
                  f"{s.pool.pool_id}", f"the job {first.job_id} is ahead of yours; "
                  f"{_pool_who('resize', s.pool.pool_id)}", reverse("job_detail", args=[first.pk]),
                  tasks=s.job.task_active)


def preparation_failing(job: Job, statuses: Sequence[PrepTaskRecord]) -> Reason | None:
    """From Batch's own answer (the job page asks it for the preparation task's status on each node): the job's
    preparation task failed on nodes, and Batch runs none of the job's tasks on a node where it failed."""
    failed = [status for status in statuses if status.result == "failure"]
    if not failed or not job.task_active or job.has_ended:
        return None
    code = f" (exit code {failed[0].exit_code})" if failed[0].exit_code is not None else ""
    where = "every node it ran on" if len(failed) == len(statuses) else f"{len(failed)} of {len(statuses)} nodes"
    return Reason("preparation_failed", f"the job's preparation task failed on {where}{code}, and Batch runs none "
                  "of the job's tasks on a node where it failed", "fix the preparation task and submit again (Batch "
                  "cannot change a job's preparation task), or give the pool new nodes",
                  f"its submitter, or {access.role_for(access.OPERATE_TEAM_WORK)} of its team, can submit again; "
                  f"{access.role_for(access.MANAGE_POOLS)} can replace the nodes", tasks=job.task_active)


def dependencies_blocked(s: Situation) -> Reason | None:
    """Tasks that will never start: a task they depend on failed, and its failure blocks them."""
    if not s.job.uses_task_dependencies or not s.job.task_active:
        return None
    blocker = s.blocker[0] if s.blocker is not None else _blockers(s.job.pk).first()
    if blocker is None:
        return None
    return Reason("dependency_blocked", f"task {blocker} failed, and the tasks that depend on it will not start "
                  "until it succeeds", f"retry {blocker} (or its failed tasks)",
                  f"its submitter, or {access.role_for(access.OPERATE_TEAM_WORK)} of its team, can retry it")


def dependencies_waiting(s: Situation) -> Reason | None:
    """Slots are free, yet tasks wait: with dependencies, they wait for the tasks they depend on."""
    if not s.job.uses_task_dependencies or not s.job.task_active or not s.free_slots:
        return None
    return Reason("dependencies", "some tasks wait for the tasks they depend on to finish", "nothing: they start "
                  "when those succeed", "nobody needs to act", tasks=None)


# --- reasons of a job, of a task ---------------------------------------------------------------------------

POOL_REASONS = (pool_missing, autoscale_at_zero, quota_reached, pool_has_no_nodes, pool_resizing,
                start_task_failed)


def reasons_for_job(job: Job, *, pool: Pool | None = None) -> list[Reason]:
    """Why the job's waiting tasks wait, most telling first; empty when none wait or the job has ended. `pool` (from
    pool_of, with its nodes counted) saves the queries of the pool and its nodes."""
    if not _waits(job):
        return []
    return _reasons(situation_of(job, pool=pool), dependencies=True)


def first_reasons(jobs: Iterable[Job]) -> dict[int, Reason]:
    """The leading reason of each of these jobs that has one, for a list of jobs (the dashboard), in a fixed number
    of queries however many jobs and pools: their pools with node counts in one; in another, each pool's two
    highest-priority busy jobs and how many it has (enough to name the first one other than the job itself).
    Dependencies are left to the job's own page (they need a look at the job's tasks)."""
    waiting = [job for job in jobs if _waits(job)]
    keys = {(job.account_id, job.pool_id) for job in waiting if job.pool_id}
    if not keys:
        return {}
    # Filtered on both columns, then to the exact pairs here: a long OR of pairs costs more to build than to read.
    accounts, pool_ids = {account for account, _ in keys}, {pool_id for _, pool_id in keys}
    pools = {(pool.account_id, pool.pool_id): pool
             for pool in _with_node_counts(Pool.objects.filter(account_id__in=accounts, pool_id__in=pool_ids))
             if (pool.account_id, pool.pool_id) in keys}
    on_pool = [F("account_id"), F("pool_id")]
    leading = (_busy(Job.objects.filter(account_id__in=accounts, pool_id__in=pool_ids))
               .annotate(rank=Window(RowNumber(), partition_by=on_pool,
                                     order_by=[F("priority").desc(), F("creation_time").asc()]),
                         busy_on_pool=Window(Count("*"), partition_by=on_pool))
               .filter(rank__lte=2).order_by("rank")
               .values_list("account_id", "pool_id", "pk", "job_id", "priority", "busy_on_pool"))
    busy: dict[tuple[int, str], tuple[list[BusyJob], int]] = {}
    for account_id, pool_id, pk, job_id, priority, count in leading:
        busy.setdefault((account_id, pool_id), ([], count))[0].append(BusyJob(pk, job_id, priority))
    found: dict[int, Reason] = {}
    for job in waiting:
        key = (job.account_id, job.pool_id)
        pool = pools.get(key)
        nodes = node_summary(pool) if pool is not None and pool.gone_at is None else NodeSummary()
        first_two, count = busy.get(key, ([], 0))
        others = [other for other in first_two if other.pk != job.pk]
        ahead = (others[0], count - _is_busy(job)) if others else (BusyJob(0, "", 0), 0)
        reasons = _reasons(Situation(job, pool, nodes, ahead), dependencies=False)
        if reasons:
            found[job.pk] = reasons[0]
    return found


def _is_busy(job: Job) -> bool:
    """Whether _busy would list the job (it counts among its pool's busy jobs)."""
    return job.gone_at is None and job.task_running > 0 and job.state not in JobState.ENDED


def _waits(job: Job) -> bool:
    return job.is_live and not job.has_ended and job.task_active > 0


def _reasons(situation: Situation, *, dependencies: bool) -> list[Reason]:
    reasons = [reason for check in (job_disabled, max_parallel_reached) if (reason := check(situation))]
    pool_reasons = [reason for check in POOL_REASONS if (reason := check(situation))]
    reasons += pool_reasons
    if pool_reasons:
        return reasons
    if not situation.free_slots:
        if situation.ahead is not None:
            first, count = situation.ahead
            busy = slots_busy(situation, [first] if count else [], count)
        else:
            busy_jobs = list(_busy(Job.objects.filter(account_id=situation.job.account_id,
                                                      pool_id=situation.job.pool_id))[:6])
            busy = slots_busy(situation, [other for other in busy_jobs if other.pk != situation.job.pk])
        reasons += [busy] if busy else []
    if dependencies:
        reasons += [reason for reason in (dependencies_blocked(situation), dependencies_waiting(situation)) if reason]
    return reasons


def reasons_for_task(task: Task, *, pool: Pool | None = None) -> list[Reason]:
    """Why this task waits: its own dependencies first, then its job's reasons (without their task counts)."""
    if task.state != TaskState.ACTIVE or not task.is_live:
        return []
    own = task_dependency_reasons(task)
    job_reasons = [r for r in reasons_for_job(task.job, pool=pool) if r.code not in ("dependencies",
                                                                                     "dependency_blocked")]
    return own + [Reason(r.code, r.sentence, r.change, r.who, r.link) for r in job_reasons]


def task_dependency_reasons(task: Task) -> list[Reason]:
    deps = Dependencies.of(task)
    if deps.blocked:
        blocker = deps.blocked[0]
        return [Reason("dependency_blocked", f"it waits for task {blocker}, which failed: it will not start until "
                       f"{blocker} succeeds", f"retry task {blocker}",
                       f"its submitter, or {access.role_for(access.OPERATE_TEAM_WORK)} of its team, can retry it",
                       _task_link(task.job, blocker))]
    if deps.unfinished:
        return [Reason("dependencies", f"it waits for tasks it depends on to finish: {deps.unfinished_words}",
                       "nothing: it starts when "
                       "they succeed", "nobody needs to act")]
    return []


@dataclass(frozen=True)
class Dependencies:
    """A task's dependencies both ways, for its page: what it waits for (and which of those have not finished or
    failed in a way that blocks it) and how many tasks need it. A few indexed queries."""

    ids: tuple[str, ...] = ()
    ranges: tuple[tuple[int, int], ...] = ()
    unfinished: tuple[str, ...] = ()
    blocked: tuple[str, ...] = ()
    needed_by: int = 0

    @classmethod
    def of(cls, task: Task) -> Dependencies:
        if not task.job.uses_task_dependencies:
            return cls()    # Batch refuses dependencies in such a job: no query needed either way
        depends = task.depends_on or {}
        ids = tuple(depends.get("taskIds") or ())
        ranges = tuple((int(a), int(b)) for a, b in depends.get("taskIdRanges") or ())
        unfinished: list[str] = []
        blocked: list[str] = []
        if ids or ranges:
            wanted = list(ids) + [str(n) for start, end in ranges for n in range(start, min(end, start +
                                                                                               MAX_RANGE_LOOKUP) + 1)]
            stored = dict(Task.objects.filter(job_id=task.job_id, task_id__in=wanted[:MAX_RANGE_LOOKUP * 2])
                          .values_list("task_id", "dependency_action"))
            for parent in wanted:
                action = stored.get(parent)
                if action == "block":
                    blocked.append(parent)
                elif action != "satisfy" and (parent in ids or parent in stored):
                    # A range names ids that need not exist; a named id that is missing has not finished.
                    unfinished.append(parent)
        return cls(ids, ranges, tuple(unfinished), tuple(blocked), needed_by_count(task))

    @property
    def any(self) -> bool:
        return bool(self.ids or self.ranges or self.needed_by)

    @property
    def waits_for_words(self) -> str:
        """'first, 3 more': the first parent by name, then how many more (a range counted by its width)."""
        return _first_and_more(list(self.ids) + [f"{a}–{b}" for a, b in self.ranges],
                               sum(b - a + 1 for a, b in self.ranges) - len(self.ranges))

    @property
    def unfinished_words(self) -> str:
        return _first_and_more(list(self.unfinished), 0)


def needed_by_count(task: Task) -> int:
    """How many tasks of the job wait for this one, by id or within a range: two indexed counts."""
    by_id = TaskDependency.objects.filter(job_id=task.job_id, parent_task_id=task.task_id).count()
    if not task.task_id.isdigit():
        return by_id
    number = int(task.task_id)
    return by_id + TaskDependency.objects.filter(job_id=task.job_id, parent_task_id="", range_start__lte=number,
                                                 range_end__gte=number).count()


# --- reading the situation ------------------------------------------------------------------------------------

def situation_of(job: Job, *, pool: Pool | None = None) -> Situation:
    if pool is None and job.pool_id:
        pool = pool_of(job)
    nodes = node_summary(pool) if pool is not None and pool.gone_at is None else NodeSummary()
    ahead: tuple[BusyJob, int] | None = None
    blocker: tuple[str | None] | None = None
    if pool is not None and hasattr(pool, "waiting_ahead_count"):
        extra = pool.__dict__
        ahead = (BusyJob(extra["waiting_ahead_pk"] or 0, extra["waiting_ahead_job_id"] or "",
                         extra["waiting_ahead_priority"] or 0), extra["waiting_ahead_count"] or 0)
        if "waiting_blocker" in extra:
            blocker = (extra["waiting_blocker"],)
    return Situation(job, pool, nodes, ahead, blocker)


def pool_of(job: Job) -> Pool | None:
    """The job's pool, with what the reasons need read in the same statement: its live nodes counted, the pool's
    other busy jobs (the first and how many) and the job's first blocking failure. The job page shows this same row,
    so the reasons cost it no round trip of their own; plain SQL, as the ORM's building of these ten subqueries
    cost ten times the database's time to run them."""
    if not job.pool_id:
        return None
    ended = sorted(JobState.ENDED)
    params = [*USABLE_LIST, *STARTING_LIST, NodeState.START_TASK_FAILED, *USABLE_LIST,
              *([job.pk, *ended] * 4), job.pk, job.account_id, job.pool_id]
    return next(iter(Pool.objects.raw(_POOL_OF_SQL, params)), None)


USABLE_LIST = sorted(USABLE_STATES)
STARTING_LIST = sorted(STARTING_STATES)


def _pool_of_sql() -> str:
    pool, node, other = Pool._meta.db_table, Node._meta.db_table, Job._meta.db_table
    task = Task._meta.db_table

    def marks(values: list) -> str:
        return ", ".join(["%s"] * len(values))

    def nodes(select: str, condition: str = "") -> str:
        return f"(SELECT {select} FROM {node} n WHERE n.pool_id = p.id AND n.gone_at IS NULL{condition})"

    busy_others = (f"FROM {other} j WHERE j.account_id = p.account_id AND j.pool_id = p.pool_id AND j.id <> %s "
                   f"AND j.gone_at IS NULL AND j.task_running > 0 AND j.state NOT IN ({marks(sorted(JobState.ENDED))})")
    first = "ORDER BY j.priority DESC, j.creation_time LIMIT 1"
    return (
        f"SELECT p.*, {nodes('COUNT(*)')} AS waiting_nodes_total, "
        f"{nodes('COUNT(*)', f' AND n.state IN ({marks(USABLE_LIST)})')} AS waiting_nodes_usable, "
        f"{nodes('COUNT(*)', f' AND n.state IN ({marks(STARTING_LIST)})')} AS waiting_nodes_starting, "
        f"{nodes('COUNT(*)', ' AND n.state = %s')} AS waiting_nodes_failed, "
        f"{nodes('SUM(n.running_task_slots_count)', f' AND n.state IN ({marks(USABLE_LIST)})')} "
        "AS waiting_busy_slots, "
        f"(SELECT j.id {busy_others} {first}) AS waiting_ahead_pk, "
        f"(SELECT j.job_id {busy_others} {first}) AS waiting_ahead_job_id, "
        f"(SELECT j.priority {busy_others} {first}) AS waiting_ahead_priority, "
        f"(SELECT COUNT(*) {busy_others}) AS waiting_ahead_count, "
        f"(SELECT t.task_id FROM {task} t WHERE t.job_id = %s AND t.dependency_action = 'block' "
        "AND t.result = 'failure' ORDER BY t.task_id LIMIT 1) AS waiting_blocker "
        f"FROM {pool} p WHERE p.account_id = %s AND p.pool_id = %s"
    )


_POOL_OF_SQL = _pool_of_sql()


def _blockers(job_pk: int) -> QuerySet[Task, str]:
    """The job's failed tasks whose failure blocks their dependents, by id (partial index task_dependency_blocks)."""
    return Task.objects.filter(job_id=job_pk, dependency_action="block", result="failure").order_by("task_id") \
        .values_list("task_id", flat=True)


def _with_node_counts(pools: QuerySet[Pool]) -> QuerySet[Pool]:
    live = Q(nodes__gone_at__isnull=True)
    return pools.annotate(
        waiting_nodes_total=Count("nodes", filter=live),
        waiting_nodes_usable=Count("nodes", filter=live & Q(nodes__state__in=USABLE_STATES)),
        waiting_nodes_starting=Count("nodes", filter=live & Q(nodes__state__in=STARTING_STATES)),
        waiting_nodes_failed=Count("nodes", filter=live & Q(nodes__state=NodeState.START_TASK_FAILED)),
        waiting_busy_slots=Sum("nodes__running_task_slots_count", filter=live & Q(nodes__state__in=USABLE_STATES)),
    )


def node_summary(pool: Pool) -> NodeSummary:
    """The pool's live nodes counted by state, with their busy slots: from pool_of's counts, else one aggregate."""
    counts = getattr(pool, "waiting_nodes_total", None)
    if counts is not None:
        total, usable, starting, failed, busy = (
            counts, pool.waiting_nodes_usable, pool.waiting_nodes_starting,  # type: ignore[attr-defined]
            pool.waiting_nodes_failed, pool.waiting_busy_slots or 0)  # type: ignore[attr-defined]
    else:
        rows = Node.objects.filter(pool=pool, gone_at__isnull=True).values("state").annotate(
            n=Count("pk"), slots=Sum("running_task_slots_count"))
        by_state = {row["state"]: (row["n"], row["slots"] or 0) for row in rows}
        total = sum(n for n, _ in by_state.values())
        usable = sum(by_state.get(state, (0, 0))[0] for state in USABLE_STATES)
        starting = sum(by_state.get(state, (0, 0))[0] for state in STARTING_STATES)
        failed = by_state.get(NodeState.START_TASK_FAILED, (0, 0))[0]
        busy = sum(by_state.get(state, (0, 0))[1] for state in USABLE_STATES)
    first_failed = None
    if failed and not (usable or starting):
        # Only when the failure is the reason: which exit code to name.
        first_failed = Node.objects.filter(pool=pool, gone_at__isnull=True, state=NodeState.START_TASK_FAILED) \
            .values_list("start_task_exit_code", "start_task_failure_code").first()
    return NodeSummary(total=total, usable=usable, starting=starting, start_task_failed=failed, busy_slots=busy,
                       failed_exit_code=first_failed[0] if first_failed else None,
                       failed_code=(first_failed[1] or "") if first_failed else "")


def _busy(jobs: QuerySet[Job]) -> QuerySet[Job]:
    """Of these jobs, those with running tasks, highest priority first (from the job_pool_created index)."""
    return jobs.filter(gone_at__isnull=True, task_running__gt=0).exclude(state__in=JobState.ENDED) \
        .order_by("-priority", "creation_time")


def _target(pool: Pool) -> int:
    return pool.target_dedicated_nodes + pool.target_low_priority_nodes


def _pool_who(verb: str, pool_id: str) -> str:
    return f"{access.role_for(access.MANAGE_POOLS)} can {verb} {pool_id}"


def _pool_link(pool: Pool) -> str:
    return reverse("pool_detail", args=[pool.pk])


def _task_link(job: Job, task_id: str) -> str | None:
    pk = Task.objects.filter(job=job, task_id=task_id).values_list("pk", flat=True).first()
    return reverse("task_detail", args=[pk]) if pk else None


def _first_and_more(names: Iterable[str], extra: int) -> str:
    names = list(names)
    if not names:
        return ""
    more = len(names) - NAMED_PARENTS + extra
    shown = ", ".join(names[:NAMED_PARENTS])
    return f"{shown}, {more:,} more" if more > 0 else shown

