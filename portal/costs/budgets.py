"""Team budgets: how much of this month's budget a team has used, and the preview's warning past 80 % of it."""

from __future__ import annotations

from decimal import Decimal

from django.utils import timezone

from portal.costs.preview import CostEstimate
from portal.costs.report import cost_report
from portal.costs.selectors import money
from portal.models import Team

WARN_AT = Decimal("0.8")


def spent_this_month(team: Team) -> Decimal:
    """What the team's jobs created this month cost so far, in the team's budget currency."""
    report = cost_report(team_ids=[team.pk], months=1)
    cell = report.rows[0].cells[0] if report.rows else None
    return cell.amounts.get((team.budget_currency or "USD").upper(), Decimal(0)) if cell else Decimal(0)


def budget_warning(*, team: Team | None, estimate: CostEstimate) -> str:
    """The preview's warning when the team's month, with this submission's estimate (its upper end), passes 80 % of
    the team's budget; empty otherwise (no team, no budget, or an estimate in another currency is left out)."""
    if team is None or not team.monthly_budget:
        return ""
    currency = (team.budget_currency or "USD").upper()
    spent = spent_this_month(team)
    extra = estimate.high if estimate.high is not None and estimate.currency.upper() == currency else Decimal(0)
    budget = team.monthly_budget
    if spent + extra <= budget * WARN_AT:
        return ""
    month = timezone.localdate().strftime("%B")
    used = f"{team.name} has used {money(spent, currency)} of its {money(budget, currency)} budget for {month} " \
           f"({spent / budget:.0%})"
    if extra:
        return f"{used}; with this submission's estimate it would reach {(spent + extra) / budget:.0%}."
    return f"{used}."


def approval_reason(*, team: Team | None, estimate: CostEstimate) -> str:
    """Why a submission must wait for approval: its estimate (the upper end) is over its team's per-submission limit;
    empty when it need not (no team, no limit, no estimate, or an estimate in another currency)."""
    if team is None or team.approval_limit is None or estimate.high is None:
        return ""
    currency = (team.budget_currency or "USD").upper()
    if estimate.currency.upper() != currency or estimate.high <= team.approval_limit:
        return ""
    return (f"it is estimated at up to {money(estimate.high, currency)}, over {team.name}'s limit of "
            f"{money(team.approval_limit, currency)} per submission")
