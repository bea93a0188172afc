"""The Costs page's figures: what each team's jobs cost, month by month, from their tasks' run times.

A job counts in the month it was created, at the price its pool's VM size has in the price table today (the table
keeps one price per size and region). Work on sizes without a price is named, with its node-hours, not guessed."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from django.utils import timezone

from portal.costs.selectors import choose_price, money, node_hours_text, price_time, region_of, slot_times
from portal.models import BatchAccount, Job, Pool, Team, VmPrice

DEFAULT_MONTHS = 6
MAX_MONTHS = 24
NO_TEAM = "No team (outside the portal)"


@dataclass
class Cell:
    """One team's (or everyone's) cost in one month: amounts per currency, and node-hours."""
    node_hours: float = 0.0
    amounts: dict[str, Decimal] = field(default_factory=dict)

    def add(self, hours: float, amount: Decimal | None, currency: str) -> None:
        self.node_hours += hours
        if amount is not None:
            self.amounts[currency] = self.amounts.get(currency, Decimal(0)) + amount

    @property
    def text(self) -> str:
        if not self.amounts:
            return "–"
        return " + ".join(money(amount, currency) for currency, amount in sorted(self.amounts.items()))

    @property
    def hours_text(self) -> str:
        return f"{node_hours_text(self.node_hours)} node-hours" if self.node_hours else ""


@dataclass
class TeamRow:
    name: str
    cells: list[Cell]
    total: Cell


@dataclass
class Bar:
    month: date
    label: str
    height_pct: float


@dataclass
class CostReport:
    months: list[date]
    rows: list[TeamRow]
    totals: list[Cell]
    total: Cell
    bars: list[Bar]
    currency: str                 # what the chart is drawn in: the currency most of the cost is in
    scale: str                    # the chart's top, in words
    unpriced: dict[str, float]    # VM size → node-hours on it the price table has no price for
    other_currencies: list[str]   # amounts in these are in the table, not the chart


def months_from(raw: str | None) -> int:
    """The number of months to show, from ?months=: bad or missing values give the default, never an error."""
    try:
        wanted = int(raw or DEFAULT_MONTHS)
    except ValueError:
        return DEFAULT_MONTHS
    return min(max(wanted, 1), MAX_MONTHS)


def _month_starts(count: int, today: date) -> list[date]:
    year, month = today.year, today.month
    starts = []
    for _ in range(count):
        starts.append(date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return starts[::-1]


def cost_report(*, team_ids: list[int] | None, months: int = DEFAULT_MONTHS) -> CostReport:
    """Costs per team and month over the last `months` months, of the teams in `team_ids` (None: every team and
    work outside any team). A fixed number of queries: the jobs, one grouped sum of their task times (read from the
    index task_job_duration; see selectors.slot_times), the pools, the prices, the accounts and the teams."""
    month_list = _month_starts(months, timezone.localdate())
    start = timezone.make_aware(datetime.combine(month_list[0], datetime.min.time()))
    jobs = Job.objects.filter(creation_time__gte=start)
    if team_ids is not None:
        jobs = jobs.filter(team_id__in=team_ids)
    rows = list(jobs.order_by().values_list("pk", "account_id", "pool_id", "team_id", "creation_time"))
    pools = {(pool.account_id, pool.pool_id): pool for pool in Pool.objects.filter(
        account_id__in={row[1] for row in rows}, pool_id__in={row[2] for row in rows})}
    times = slot_times([(pk, pools.get((account_id, pool_id))) for pk, account_id, pool_id, _, _ in rows])
    regions = {account.pk: region_of(account) for account in BatchAccount.objects.all()}
    prices: dict[str, list[VmPrice]] = defaultdict(list)
    for row in VmPrice.objects.all():
        prices[row.vm_size.lower()].append(row)

    index = {month: i for i, month in enumerate(month_list)}
    cells: dict[int | None, list[Cell]] = defaultdict(lambda: [Cell() for _ in month_list])
    if team_ids is not None:
        for team_id in team_ids:
            cells[team_id]   # noqa: B018 (a team with no work still gets its row of dashes)
    totals = [Cell() for _ in month_list]
    unpriced: defaultdict[str, float] = defaultdict(float)
    for pk, account_id, pool_id, job_team_id, created in rows:
        pool = pools.get((account_id, pool_id))
        if pool is None or not pool.vm_size or not times[pk].total:
            continue
        price = choose_price(prices.get(pool.vm_size.lower(), []), region=regions.get(account_id, ""))
        priced = price_time(times[pk], slots_per_node=pool.task_slots_per_node, pool=pool, price=price)
        hours, amount = priced.hours, priced.cost
        currency = price.currency if price is not None else ""
        i = index.get(timezone.localtime(created).date().replace(day=1))
        if i is None:   # created after this month began by a clock ahead of ours: not in any column
            continue
        if amount is None:
            unpriced[pool.vm_size] += hours
        cells[job_team_id][i].add(hours, amount, currency)
        totals[i].add(hours, amount, currency)

    names = dict(Team.objects.filter(pk__in=[key for key in cells if key is not None]).values_list("pk", "name"))
    team_rows = []
    for row_team, team_cells in cells.items():
        total = Cell()
        for cell in team_cells:
            for currency, amount in cell.amounts.items():
                total.add(0.0, amount, currency)
            total.node_hours += cell.node_hours
        team_rows.append(TeamRow(names.get(row_team, NO_TEAM) if row_team is not None else NO_TEAM, team_cells,
                                 total))
    team_rows.sort(key=lambda row: (row.name == NO_TEAM, row.name.lower()))
    grand = Cell()
    for cell in totals:
        for currency, amount in cell.amounts.items():
            grand.add(0.0, amount, currency)
        grand.node_hours += cell.node_hours

    currency = max(grand.amounts, key=lambda c: grand.amounts[c], default="USD")
    peak = max((cell.amounts.get(currency, Decimal(0)) for cell in totals), default=Decimal(0))
    bars = [Bar(month, f"{month:%B %Y}: {cell.text}",
                float(cell.amounts.get(currency, Decimal(0)) / peak * 100) if peak else 0.0)
            for month, cell in zip(month_list, totals, strict=True)]
    return CostReport(months=month_list, rows=team_rows, totals=totals, total=grand, bars=bars, currency=currency,
                      scale=money(peak, currency), unpriced=dict(unpriced),
                      other_currencies=sorted(c for c in grand.amounts if c != currency))
