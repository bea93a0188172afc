"""The dashboard's reads: pools and their nodes by state, unfinished jobs, recent failures, and tasks finished per
hour, each from an index of the mirror; nothing counts the task table."""

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db.models import Count, Sum
from django.utils import timezone

from portal.accounts.selectors import AccountScope, account_scope, freshness_of, synced_at_of
from portal.dashboard import rollups
from portal.models import BatchAccount, Job, Pool, Task
from portal.pools.selectors import PoolSummary, pool_summaries

DASHBOARD_JOBS = 12
DASHBOARD_FAILURES = 8


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
    accounts: list[tuple[str, datetime | None]] = field(default_factory=list)   # (name, last pass) of each
    scope: AccountScope = field(default_factory=lambda: AccountScope(accounts=()))   # which accounts it covers

    @property
    def nodes(self) -> int:
        return sum(self.node_totals.values())

    @property
    def more_active_jobs(self) -> int:
        return max(self.active_job_count - len(self.active_jobs), 0)


def tasks_finished_per_hour(*, hours: int = rollups.HOURS, now: datetime | None = None) -> Throughput:
    """Tasks that succeeded or failed in each of the last `hours` hours (the current one included), from the
    counts beat keeps for every viewer (portal/dashboard/rollups.py); counts across all accounts: no id or name
    leaves them."""
    since, counts = rollups.finished_per_hour(now=now)
    bars = []
    for step in range(hours):
        hour = since + timedelta(hours=step)
        succeeded, failed = counts.get(hour, (0, 0))
        bars.append(HourBar(hour=hour, succeeded=succeeded, failed=failed))
    throughput = Throughput(bars=bars, peak=max((bar.total for bar in bars), default=0))
    for bar in bars:
        bar.height_pct = round(100 * bar.total / throughput.scale, 2)
        bar.failed_pct = round(100 * bar.failed / bar.total, 2) if bar.total else 0.0
    return throughput


def dashboard_data(*, user: User, scope: AccountScope | None = None) -> Dashboard:
    """The dashboard over the accounts of `scope` (portal.accounts.selectors.account_scope; every account `user`
    reads when not given). The chart of tasks finished per hour counts every account either way (rollups).

    What it shows depends on the accounts alone, so it is read once per DASHBOARD_SHARED_SECONDS for everyone who
    sees the same accounts (a hundred open dashboards poll every 5 s; the mirror itself moves every 5 s)."""
    scope = scope or account_scope(user=user)
    seconds = settings.DASHBOARD_SHARED_SECONDS
    covered = [scope.chosen] if scope.chosen else list(scope.accounts)
    if seconds <= 0:
        return replace(_dashboard_over(covered), scope=scope)
    key = "dashboard:data:v1:" + ",".join(str(pk) for pk in sorted(scope.ids))
    data = cache.get(key)
    if data is None:
        data = _dashboard_over(covered)
        cache.set(key, data, timeout=seconds)
    return replace(data, scope=scope)


def _dashboard_over(covered: list[BatchAccount]) -> Dashboard:
    """`covered`: the account rows as the page's scope read them (at most PAGE_SHARED_SECONDS old, as the rest)."""
    now = timezone.now()
    accounts = [account.pk for account in covered]
    pools = list(Pool.objects.filter(account_id__in=accounts, gone_at__isnull=True)
                 .select_related("account").order_by("pool_id"))
    summaries = pool_summaries(pools)
    node_totals: dict[str, int] = {}
    for summary in summaries:
        for state, _, n in summary.node_states:
            node_totals[state] = node_totals.get(state, 0) + n

    live = Job.objects.live().filter(account_id__in=accounts)
    # Kept in the shared cache: the submitter's name, not their password hash.
    active_jobs = list(live.select_related("submitted_by", "account").defer("submitted_by__password")
                       .order_by("-creation_time", "-pk")[:DASHBOARD_JOBS])
    Job.read_task_terminated(active_jobs)   # read now, in one query, so the shared copy holds it
    # Jobs are thousands, not millions; one aggregate over the unfinished ones is cheap.
    totals = live.aggregate(jobs=Count("pk"), running=Sum("task_running"), waiting=Sum("task_active"))
    failures = list(Task.objects.failed().filter(job__account_id__in=accounts)
                    .select_related("job", "job__account").order_by("-end_time")[:DASHBOARD_FAILURES])
    synced_at = synced_at_of(covered)
    return Dashboard(accounts=freshness_of(covered) if len(covered) > 1 else [],
        pools=summaries, node_totals=node_totals, active_jobs=active_jobs, active_job_count=totals["jobs"],
        tasks_running=totals["running"] or 0, tasks_waiting=totals["waiting"] or 0,
        recent_failures=failures, throughput=tasks_finished_per_hour(now=now), synced_at=synced_at,
    )
