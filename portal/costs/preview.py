"""What a submission will cost, said on the preview before anything runs: from the template's own finished runs when
it has some (median time per task × the number of tasks), else an upper bound from its time limit per task."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from portal.costs.selectors import (
    SECONDS_PER_HOUR,
    hourly,
    money,
    node_hours_text,
    pool_is_spot,
    price_for,
    region_of,
    spot_share,
    task_seconds,
)
from portal.models import BatchAccount, Job, JobState, JobTemplate, Pool, Submission, SubmissionState

if TYPE_CHECKING:   # the annotation only: the spec parser loads the gateway
    from portal.submit.spec import TemplateSpec

# How many of the template's latest finished runs the estimate reads.
HISTORY_RUNS = 12
# Submissions looked at to find them: runs that never started or still run are skipped.
_CANDIDATES = 4 * HISTORY_RUNS


@dataclass(frozen=True)
class CostEstimate:
    """`text` is the sentence the preview shows (without its full stop); `high` the most it expects to cost
    (None: no estimate)."""
    text: str
    high: Decimal | None = None
    currency: str = ""


@dataclass(frozen=True)
class _Machine:
    vm_size: str
    slots_per_node: int
    spot: bool
    spot_share: float = 0.0   # a pool of both kinds: the share of Spot nodes its tasks are assumed to run on


def _machine(spec: TemplateSpec, account: BatchAccount | None) -> _Machine | None:
    if spec.auto_pool:
        slots = spec.auto_pool.get("task_slots_per_node") or 1
        return _Machine(str(spec.auto_pool.get("vm_size", "")), max(int(slots), 1), spot=False)
    pool = (Pool.objects.filter(account=account, pool_id=spec.pool_id).first()
            if account is not None and spec.pool_id else None)
    if pool is None or not pool.vm_size:
        return None
    share = spot_share(pool)
    return _Machine(pool.vm_size, max(pool.task_slots_per_node, 1), spot=pool_is_spot(pool),
                    spot_share=share if 0 < share < 1 else 0.0)


def history_seconds_per_task(template: JobTemplate) -> list[float]:
    """Mean run time per task of each of the template's latest finished runs (at most HISTORY_RUNS), newest first.
    Each job's sum is one index-only aggregate, cached per job (selectors.task_seconds); its task count is Batch's
    own count of completed tasks, so nothing counts the task table."""
    runs = list(Submission.objects.filter(template_version__template=template, state=SubmissionState.SUBMITTED)
                .order_by("-created_at").values_list("account_id", "job_id")[:_CANDIDATES])
    if not runs:
        return []
    wanted = {job_id: account_id for account_id, job_id in runs}
    jobs = [job for job in Job.objects.filter(job_id__in=wanted, state__in=JobState.ENDED, task_completed__gt=0)
            .order_by("-end_time", "-pk") if wanted.get(job.job_id) == job.account_id][:HISTORY_RUNS]
    per_task = []
    for job in jobs:
        seconds = task_seconds(job)
        if seconds > 0:
            per_task.append(seconds / job.task_completed)
    return per_task


def estimate_for_preview(*, template: JobTemplate, spec: TemplateSpec, task_count: int,
                         account: BatchAccount | None = None) -> CostEstimate:
    """The preview's sentence: "about $3.20 — 2.1 node-hours of Standard_D2s_v3 at $1.52/h; based on the last 12
    runs of this template", a bound from the time limit without history, or why there is no estimate.

    `account`: the account the template runs on, where the caller has it already (else it is looked up)."""
    account = account or template.account or BatchAccount.objects.filter(is_default=True).order_by("pk").first()
    machine = _machine(spec, account)
    if machine is None:
        return CostEstimate(f"No cost estimate: the portal does not know the VM size of {spec.pool_label}")
    price = price_for(machine.vm_size, region=region_of(account) if account else "")
    spot = machine.spot or machine.spot_share > 0
    per_hour = None if price is None else (price.spot_per_hour if spot else price.dedicated_per_hour)
    if price is None or per_hour is None:
        kind = "Spot " if spot and price is not None else ""
        return CostEstimate(f"No cost estimate: the price table has no {kind}price for {machine.vm_size}")
    on = f"of {machine.vm_size}{' (Spot)' if machine.spot else ''} at {hourly(per_hour, price.currency)}"
    if machine.spot_share:
        # Which kind of node each task will get is not known before it runs: the pool's mix as it is now.
        share = Decimal(str(machine.spot_share))
        on = (f"of {machine.vm_size} at {hourly(price.dedicated_per_hour, price.currency)} dedicated and "
              f"{hourly(per_hour, price.currency)} Spot, assuming its tasks run on the pool's nodes as they are now "
              f"({machine.spot_share:.0%} Spot)")
        per_hour = price.dedicated_per_hour * (1 - share) + per_hour * share
    history = history_seconds_per_task(template)
    if history:
        hours = statistics.median(history) * task_count / machine.slots_per_node / SECONDS_PER_HOUR
        cost = Decimal(str(hours)) * per_hour
        runs = "the last run" if len(history) == 1 else f"the last {len(history)} runs"
        return CostEstimate(f"about {money(cost, price.currency)} — {node_hours_text(hours)} node-hours {on}; "
                            f"based on {runs} of this template", high=cost, currency=price.currency)
    if spec.max_wall_clock_seconds:
        hours = spec.max_wall_clock_seconds * task_count / machine.slots_per_node / SECONDS_PER_HOUR
        cost = Decimal(str(hours)) * per_hour
        return CostEstimate(f"between nothing and {money(cost, price.currency)} — up to {node_hours_text(hours)} "
                            f"node-hours {on} if every task ran its whole time limit; this template has no finished "
                            "runs to go by yet", high=cost, currency=price.currency)
    return CostEstimate(f"No cost estimate: this template has no finished runs to go by yet and no time limit per "
                        f"task; its tasks run {on}")
