"""Reads of the cost domain: which price applies to a pool, what a job's tasks cost, in words people read.

A job's cost is its share of its pool: the node-hours its tasks held (each task's run time ÷ the slots a node
has) at the node-hour price of the pool's VM size. Batch bills whole nodes, idle ones included;
that remainder belongs to whoever keeps the pool, so the sentence says so rather than hiding it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.core.cache import cache
from django.db.models import Sum

from portal.models import BatchAccount, Job, Pool, VmPrice

SECONDS_PER_HOUR = 3600
# https://<account>.<region>.batch.azure.com: the region the account's pools (and prices) are in.
_REGION_IN_URL = re.compile(r"^https?://[^./]+\.([a-z0-9]+)\.batch\.azure\.com", re.IGNORECASE)
_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}
# How long a job's sum of task times is kept, under a key naming its last task sync (see task_seconds).
ENDED_CACHE_SECONDS = 24 * SECONDS_PER_HOUR
LIVE_CACHE_SECONDS = 10 * 60


def region_of(account: BatchAccount) -> str:
    """The Azure region of a Batch account, from its URL; empty when the URL does not say (localbatch)."""
    match = _REGION_IN_URL.match(account.account_url or "")
    return match.group(1).lower() if match else ""


def price_for(vm_size: str, *, region: str = "") -> VmPrice | None:
    """The price row for `vm_size` (without regard to case); see `choose_price`."""
    if not vm_size:
        return None
    return choose_price(list(VmPrice.objects.filter(vm_size__iexact=vm_size)), region=region)


def choose_price(rows: list[VmPrice], *, region: str) -> VmPrice | None:
    """Of one VM size's price rows: the region's own, else one for any region, else any region's (prices differ by
    a few percent between regions; some price beats none)."""
    def rank(row: VmPrice) -> tuple[int, str]:
        return (0 if region and row.region == region else 1 if not row.region else 2, row.region)

    return min(rows, key=rank, default=None)


def money(amount: Decimal, currency: str) -> str:
    """"$0.20", "€1.52", "12.40 CHF": amounts to the cent, and anything under a cent said so."""
    cents = amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    symbol = _SYMBOLS.get(currency.upper())
    if 0 < amount < Decimal("0.005"):
        return f"less than {symbol}0.01" if symbol else f"less than 0.01 {currency}"
    return f"{symbol}{cents:,}" if symbol else f"{cents:,} {currency}"


def hourly(amount: Decimal, currency: str) -> str:
    """A node-hour price as Azure's list gives it: "$0.096/h", "$1.52/h" (at least two decimals, at most four)."""
    text = f"{amount.quantize(Decimal('0.0001'), rounding=ROUND_HALF_UP):f}".rstrip("0")
    whole, _, decimals = text.partition(".")
    text = f"{whole}.{decimals.ljust(2, '0')}"
    symbol = _SYMBOLS.get(currency.upper())
    return f"{symbol}{text}/h" if symbol else f"{text} {currency}/h"


def node_hours_text(hours: float) -> str:
    if hours >= 10:
        return f"{hours:,.0f}"
    if hours >= 1:
        return f"{hours:.1f}"
    return f"{hours:.2f}" if hours >= 0.005 else "less than 0.01"


def pool_is_spot(pool: Pool) -> bool:
    """A pool of Spot (low-priority) nodes only: its node-hours cost the Spot price."""
    return (pool.target_dedicated_nodes == 0 and pool.current_dedicated_nodes == 0
            and (pool.target_low_priority_nodes > 0 or pool.current_low_priority_nodes > 0))


@dataclass(frozen=True)
class JobCost:
    """What one job's tasks cost, or why the portal cannot say (`problem`)."""
    node_hours: float
    vm_size: str = ""
    slots_per_node: int = 1
    pool_id: str = ""
    spot: bool = False
    per_hour: Decimal | None = None
    currency: str = ""
    cost: Decimal | None = None
    problem: str = ""

    @property
    def sentence(self) -> str:
        """"Its tasks ran 2.1 node-hours on Standard_D2s_v3 at $0.096/h: about $0.20." """
        if self.problem:
            return self.problem
        assert self.per_hour is not None and self.cost is not None
        kind = " (Spot)" if self.spot else ""
        return (f"Its tasks ran {node_hours_text(self.node_hours)} node-hours on {self.vm_size}{kind} at "
                f"{hourly(self.per_hour, self.currency)}: about {money(self.cost, self.currency)}.")

    @property
    def share(self) -> str:
        """How the figure is this job's share of its pool, in words."""
        if not self.pool_id:
            return ""
        slots = (f" A node runs {self.slots_per_node} tasks at once, so an hour of one task is 1/{self.slots_per_node}"
                 " of a node-hour." if self.slots_per_node > 1 else "")
        return (f"This is the job's share of pool {self.pool_id}: the time its own tasks ran.{slots} Idle nodes and "
                "other jobs' tasks on the pool are not counted here.")


def task_seconds(job: Job) -> float:
    """Σ run time over the job's tasks: one aggregate read from the index task_job_duration alone (a task that
    needs several slots counts as one, which keeps it index-only). The sum changes only when the sync writes the
    job's tasks, which moves `tasks_synced_at`: it is kept in the cache under a key naming that time, so a page
    polled every few seconds sums once per sync (a day once the job has ended, minutes while it runs)."""
    key = None
    if job.tasks_synced_at is not None:
        key = f"costs:job-task-seconds:{job.pk}:{job.tasks_synced_at.timestamp()}"
        cached = cache.get(key)
        if cached is not None:
            return float(cached)
    total = job.tasks.aggregate(total=Sum("duration_seconds"))["total"] or 0.0
    if key is not None:
        cache.set(key, total, ENDED_CACHE_SECONDS if job.has_ended else LIVE_CACHE_SECONDS)
    return float(total)


def job_cost(job: Job, *, pool: Pool | None = None, pool_known: bool = False) -> JobCost:
    """The job's node-hours and cost from its tasks' run times so far, on its pool's VM size. With `pool_known`,
    `pool` is the job's pool row as the page already read it (None: the mirror has none), saving the lookup."""
    if not pool_known and job.pool_id:
        pool = Pool.objects.filter(account_id=job.account_id, pool_id=job.pool_id).first()
    if pool is None or not pool.vm_size:
        return JobCost(0.0, problem="No cost: the portal does not know the VM size of this job's pool.")
    slots = max(pool.task_slots_per_node or 1, 1)
    hours = task_seconds(job) / slots / SECONDS_PER_HOUR
    spot = pool_is_spot(pool)
    price = price_for(pool.vm_size, region=region_of(job.account))
    per_hour = None if price is None else (price.spot_per_hour if spot else price.dedicated_per_hour)
    if price is None or per_hour is None:
        kind = "Spot " if spot and price is not None else ""
        return JobCost(hours, vm_size=pool.vm_size, slots_per_node=slots, pool_id=pool.pool_id, spot=spot,
                       problem=f"Its tasks ran {node_hours_text(hours)} node-hours on {pool.vm_size}; no cost: the "
                               f"price table has no {kind}price for {pool.vm_size}.")
    cost = (Decimal(str(hours)) * per_hour).quantize(Decimal("0.000001"))
    return JobCost(hours, vm_size=pool.vm_size, slots_per_node=slots, pool_id=pool.pool_id, spot=spot,
                   per_hour=per_hour, currency=price.currency, cost=cost)
