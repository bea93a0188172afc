"""The Costs page: what each team's work cost, month by month (Operators: their teams; Admins: every team)."""

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from portal import access
from portal.access import SignedInRequest
from portal.costs.report import MAX_MONTHS, cost_report, months_from
from portal.models import VmPrice


@require_safe
@login_required
def cost_overview(request: SignedInRequest) -> HttpResponse:
    if not access.can_view_costs(request.user):
        raise access.refusal(request.user, access.OPERATE_TEAM_WORK)
    team_ids = access.cost_team_ids(request.user)
    months = months_from(request.GET.get("months"))
    report = cost_report(team_ids=team_ids, months=months)
    latest = VmPrice.objects.order_by("-taken_on").values_list("taken_on", flat=True).first()
    return render(request, "costs/index.html", {
        "report": report, "months": months, "month_choices": [3, 6, 12, MAX_MONTHS], "all_teams": team_ids is None,
        "prices_taken_on": latest, "columns": len(report.months)})
