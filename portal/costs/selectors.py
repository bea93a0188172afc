"""Reads of the cost domain: which price applies to a pool, what a job's tasks cost, in words people read.

A job's cost is its share of its pool: the node-hours its tasks held (each task's run time × the slots it needed ÷
the slots a node has) at the node-hour price of the pool's VM size, dedicated or Spot by the node each task ran on.
Batch bills whole nodes, idle ones included; that remainder belongs to whoever keeps the pool, so the sentence says
so rather than hiding it."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal

from django.core.cache import cache
from django.db.models import F, Sum

from portal.models import BatchAccount, Job, Node, Pool, Task, VmPrice

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


def spot_share(pool: Pool) -> float:
    """The share of the pool's nodes that are Spot now (else as targeted; 0 with none): what is assumed for run time
    on nodes the mirror does not know."""
    for dedicated, spot in ((pool.current_dedicated_nodes, pool.current_low_priority_nodes),
                            (pool.target_dedicated_nodes, pool.target_low_priority_nodes)):
        if dedicated + spot > 0:
            return spot / (dedicated + spot)
    return 0.0


@dataclass(frozen=True)
class SlotTime:
    """Slot-seconds a job's tasks held (run time × the slots each needed, Batch's requiredSlots), by the kind of node
    they ran on; `unknown`: on nodes the mirror has no row for (gone before a sync saw them)."""
    dedicated: float = 0.0
    spot: float = 0.0
    unknown: float = 0.0
    multi_slot: bool = False   # some of its tasks needed more than one slot

    @property
    def total(self) -> float:
        return self.dedicated + self.spot + self.unknown


def _slot_seconds(job_ids: list[int]) -> tuple[dict[int, float], set[int]]:
    """Σ run time × required slots per job, and the jobs with a task that needed several slots: the run times from
    the index task_job_duration alone, plus the extra slots of the tasks that need more than one from the partial
    index task_multi_slot (a few rows, or none)."""
    if not job_ids:
        return {}, set()
    tasks = Task.objects.filter(job_id__in=job_ids, duration_seconds__isnull=False).order_by().values("job_id")
    totals = dict(tasks.annotate(total=Sum("duration_seconds")).values_list("job_id", "total"))
    extra = (tasks.filter(required_slots__gt=1)
             .annotate(extra=Sum(F("duration_seconds") * (F("required_slots") - 1))).values_list("job_id", "extra"))
    multi = set()
    for job_id, more in extra:
        totals[job_id] = (totals.get(job_id) or 0.0) + (more or 0.0)
        multi.add(job_id)
    return {job_id: float(total or 0.0) for job_id, total in totals.items()}, multi


def slot_times(jobs: list[tuple[int, Pool | None]]) -> dict[int, SlotTime]:
    """Each job's SlotTime, by pk, for (job pk, its pool or None) pairs. A fixed number of queries: the sums (see
    _slot_seconds), the kinds of node each pool has had; only for jobs on a pool that has had both kinds, their time
    grouped by node (a read of their task rows)."""
    totals, multi = _slot_seconds([pk for pk, _ in jobs])
    pools = {pool.pk: pool for _, pool in jobs if pool is not None}
    kinds: dict[int, set[bool]] = {}
    for pool_pk, dedicated in (Node.objects.filter(pool_id__in=pools).order_by()
                               .values_list("pool_id", "is_dedicated").distinct()):
        kinds.setdefault(pool_pk, set()).add(dedicated)
    mixed = [pk for pk, pool in jobs if pool is not None and len(kinds.get(pool.pk, ())) == 2 and totals.get(pk)]
    by_node: dict[int, dict[str, float]] = {}
    if mixed:
        rows = (Task.objects.filter(job_id__in=mixed, duration_seconds__isnull=False).order_by()
                .values("job_id", "node_id").annotate(total=Sum(F("duration_seconds") * F("required_slots")))
                .values_list("job_id", "node_id", "total"))
        for job_id, node_id, total in rows:
            by_node.setdefault(job_id, {})[node_id] = float(total or 0.0)
    node_kinds: dict[tuple[int, str], bool] = {}
    if by_node:
        node_kinds = {(pool_pk, node_id): dedicated for pool_pk, node_id, dedicated in Node.objects.filter(
            pool_id__in={pool.pk for pk, pool in jobs if pk in by_node and pool is not None})
            .values_list("pool_id", "node_id", "is_dedicated")}
    result: dict[int, SlotTime] = {}
    for pk, pool in jobs:
        total = totals.get(pk, 0.0)
        had = kinds.get(pool.pk, set()) if pool is not None else set()
        if pk in by_node and pool is not None:
            parts: dict[bool | None, float] = {True: 0.0, False: 0.0, None: 0.0}
            for node_id, seconds in by_node[pk].items():
                parts[node_kinds.get((pool.pk, node_id))] += seconds
            result[pk] = SlotTime(dedicated=parts[True], spot=parts[False], unknown=parts[None],
                                  multi_slot=pk in multi)
        elif had == {True}:
            result[pk] = SlotTime(dedicated=total, multi_slot=pk in multi)
        elif had == {False}:
            result[pk] = SlotTime(spot=total, multi_slot=pk in multi)
        else:
            result[pk] = SlotTime(unknown=total, multi_slot=pk in multi)
    return result


def task_slot_time(job: Job, pool: Pool | None) -> SlotTime:
    """The job's SlotTime (see slot_times). It changes only when the sync writes the job's tasks, which moves
    `tasks_synced_at`: it is kept in the cache under a key naming that time, so a page polled every few seconds
    sums once per sync (a day once the job has ended, minutes while it runs)."""
    key = None
    if job.tasks_synced_at is not None:
        key = f"costs:job-slot-time:{job.pk}:{pool.pk if pool else 0}:{job.tasks_synced_at.timestamp()}"
        cached = cache.get(key)
        if cached is not None:
            return SlotTime(*cached)
    time = slot_times([(job.pk, pool)])[job.pk]
    if key is not None:
        cache.set(key, (time.dedicated, time.spot, time.unknown, time.multi_slot),
                  ENDED_CACHE_SECONDS if job.has_ended else LIVE_CACHE_SECONDS)
    return time


def task_seconds(job: Job) -> float:
    """Σ run time × required slots over the job's tasks (the preview's history: time per task), whatever the nodes
    were; cached as task_slot_time is."""
    return task_slot_time(job, None).total


@dataclass(frozen=True)
class Priced:
    """Node-hours split by kind and what they cost: dedicated at the dedicated price, Spot at the Spot price, and
    time on unknown nodes split by the pool's current mix (`assumed_spot`, its Spot share)."""
    dedicated_hours: float
    spot_hours: float
    unknown_hours: float
    assumed_spot: float
    cost: Decimal | None           # None: a price needed is missing
    missing: str = ""              # "", "dedicated" or "Spot": the kind of price missing

    @property
    def hours(self) -> float:
        return self.dedicated_hours + self.spot_hours + self.unknown_hours


def price_time(time: SlotTime, *, slots_per_node: int, pool: Pool | None, price: VmPrice | None) -> Priced:
    """SlotTime in node-hours (slot-seconds ÷ slots per node) at each kind's price."""
    per_node = max(slots_per_node, 1) * SECONDS_PER_HOUR
    share = spot_share(pool) if pool is not None else 0.0
    dedicated = time.dedicated / per_node
    spot = time.spot / per_node
    unknown = time.unknown / per_node
    at_dedicated, at_spot = dedicated + unknown * (1 - share), spot + unknown * share
    if price is None:
        return Priced(dedicated, spot, unknown, share, None, "dedicated" if at_dedicated else "")
    cost = Decimal(0)
    if at_dedicated > 0:
        cost += Decimal(str(at_dedicated)) * price.dedicated_per_hour
    if at_spot > 0:
        if price.spot_per_hour is None:
            return Priced(dedicated, spot, unknown, share, None, "Spot")
        cost += Decimal(str(at_spot)) * price.spot_per_hour
    return Priced(dedicated, spot, unknown, share, cost)


@dataclass(frozen=True)
class JobCost:
    """What one job's tasks cost, or why the portal cannot say (`problem`)."""
    node_hours: float
    vm_size: str = ""
    slots_per_node: int = 1
    pool_id: str = ""
    spot: bool = False              # all of it on Spot nodes
    per_hour: Decimal | None = None
    currency: str = ""
    cost: Decimal | None = None
    problem: str = ""
    # Both kinds: node-hours on dedicated and on Spot nodes (unknown ones split as assumed), and the Spot price.
    dedicated_hours: float = 0.0
    spot_hours: float = 0.0
    spot_per_hour: Decimal | None = None
    assumed: str = ""               # what was assumed for time on nodes the portal does not know, in words
    multi_slot: bool = False

    @property
    def mixed(self) -> bool:
        return self.dedicated_hours > 0 and self.spot_hours > 0

    @property
    def sentence(self) -> str:
        """"Its tasks ran 2.1 node-hours on Standard_D2s_v3 at $0.096/h: about $0.20." """
        if self.problem:
            return self.problem
        assert self.per_hour is not None and self.cost is not None
        if self.mixed:
            assert self.spot_per_hour is not None
            return (f"Its tasks ran {node_hours_text(self.node_hours)} node-hours on {self.vm_size}: "
                    f"{node_hours_text(self.dedicated_hours)} on dedicated nodes at "
                    f"{hourly(self.per_hour, self.currency)} and {node_hours_text(self.spot_hours)} on Spot nodes at "
                    f"{hourly(self.spot_per_hour, self.currency)}: about {money(self.cost, self.currency)}.")
        kind = " (Spot)" if self.spot else ""
        per_hour = self.spot_per_hour if self.spot and self.spot_per_hour is not None else self.per_hour
        return (f"Its tasks ran {node_hours_text(self.node_hours)} node-hours on {self.vm_size}{kind} at "
                f"{hourly(per_hour, self.currency)}: about {money(self.cost, self.currency)}.")

    @property
    def share(self) -> str:
        """How the figure is this job's share of its pool, in words."""
        if not self.pool_id:
            return ""
        slots = (f" A node runs {self.slots_per_node} tasks at once, so an hour of one task is 1/{self.slots_per_node}"
                 " of a node-hour" if self.slots_per_node > 1 else "")
        if slots and self.multi_slot:
            slots += ", and a task that needs several slots counts that many"
        slots += "." if slots else ""
        assumed = f" {self.assumed}" if self.assumed else ""
        return (f"This is the job's share of pool {self.pool_id}: the time its own tasks ran.{slots}{assumed} Idle "
                "nodes and other jobs' tasks on the pool are not counted here.")


def _assumed(priced: Priced) -> str:
    if not priced.unknown_hours:
        return ""
    return (f"{node_hours_text(priced.unknown_hours)} node-hours ran on nodes the portal no longer knows; they are "
            f"counted as the pool's nodes are now: {priced.assumed_spot:.0%} Spot.")


def job_cost(job: Job, *, pool: Pool | None = None, pool_known: bool = False) -> JobCost:
    """The job's node-hours and cost from its tasks' run times so far, on its pool's VM size. With `pool_known`,
    `pool` is the job's pool row as the page already read it (None: the mirror has none), saving the lookup."""
    if not pool_known and job.pool_id:
        pool = Pool.objects.filter(account_id=job.account_id, pool_id=job.pool_id).first()
    if pool is None or not pool.vm_size:
        return JobCost(0.0, problem="No cost: the portal does not know the VM size of this job's pool.")
    slots = max(pool.task_slots_per_node or 1, 1)
    time = task_slot_time(job, pool)
    price = price_for(pool.vm_size, region=region_of(job.account))
    priced = price_time(time, slots_per_node=slots, pool=pool, price=price)
    hours = priced.hours
    dedicated = priced.dedicated_hours + priced.unknown_hours * (1 - priced.assumed_spot)
    spot_hours = priced.spot_hours + priced.unknown_hours * priced.assumed_spot
    base = JobCost(hours, vm_size=pool.vm_size, slots_per_node=slots, pool_id=pool.pool_id,
                   spot=(spot_hours > 0 and not dedicated) or (not hours and pool_is_spot(pool)),
                   dedicated_hours=dedicated, spot_hours=spot_hours, assumed=_assumed(priced),
                   multi_slot=time.multi_slot)
    if price is None or priced.cost is None:
        kind = "Spot " if priced.missing == "Spot" else ""
        return replace(base, problem=f"Its tasks ran {node_hours_text(hours)} node-hours on {pool.vm_size}; no cost: "
                                     f"the price table has no {kind}price for {pool.vm_size}.")
    return replace(base, per_hour=price.dedicated_per_hour, spot_per_hour=price.spot_per_hour,
                   currency=price.currency, cost=priced.cost.quantize(Decimal("0.000001")))
