"""The Costs page: each team's cost per month, as a table and a bar chart; Operators see their teams', Admins every
team's and the work outside any team; other roles are refused, anonymous is sent to sign in."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from portal.costs.report import cost_report
from portal.models import VmPrice
from tests.factories import JobFactory, PoolFactory, TaskFactory
from tests.personas import client_for

pytestmark = pytest.mark.django_db

URL = reverse("cost_overview")


def month_ago(months: int):
    """A moment in the month `months` before this one (its 10th, at noon)."""
    today = timezone.localdate()
    year, month = today.year, today.month - months
    while month < 1:
        year, month = year - 1, month + 12
    return timezone.make_aware(timezone.datetime(year, month, 10, 12))


@pytest.fixture
def work(team_a, team_b):
    """Team A: 10 node-hours this month and 5 two months ago; team B: 20 this month; outside work: 1; and 3
    node-hours on a size with no price, for team A."""
    VmPrice.objects.create(vm_size="Standard_D2s_v3", dedicated_per_hour=Decimal("0.10"), taken_on=date(2026, 12, 1))
    pool = PoolFactory(vm_size="standard_d2s_v3", task_slots_per_node=2)
    odd = PoolFactory(account=pool.account, vm_size="Standard_NC6", task_slots_per_node=1)

    def job(team, hours, *, months=0, on=pool):
        made = JobFactory(account=pool.account, pool_id=on.pool_id, team=team, creation_time=month_ago(months))
        TaskFactory(job=made, duration_seconds=hours * 3600 * on.task_slots_per_node)
        return made

    job(team_a, 10)
    job(team_a, 5, months=2)
    job(team_b, 20)
    job(None, 1)
    job(team_a, 3, on=odd)


def row_of(body: str, name: str) -> str:
    start = body.index(f'<th scope="row">{name}</th>')
    return body[start:body.index("</tr>", start)]


def test_an_operator_sees_their_teams_costs_by_month_and_not_other_teams(operator_a, work):
    body = client_for(operator_a).get(URL).content.decode()

    team_a = row_of(body, "Team A")
    assert team_a.count("$1.00") == 1 and team_a.count("$0.50") == 1 and "<strong>$1.50</strong>" in team_a
    assert "Team B" not in body and "No team" not in body and "$2.00" not in body
    assert "3.0 node-hours on <span class=\"mono\">Standard_NC6</span>" in body


def test_an_admin_sees_every_team_and_the_work_outside_any(portal_admin, work):
    body = client_for(portal_admin).get(URL).content.decode()

    assert "<strong>$2.00</strong>" in row_of(body, "Team B")
    assert "<strong>$0.10</strong>" in row_of(body, "No team (outside the portal)")
    assert "<strong>$3.60</strong>" in body   # everyone, every month
    assert 'class="bar" style="height: 100.00%"' in body and 'role="img"' in body


def test_the_months_shown_follow_the_choice_and_bad_values_fall_back(portal_admin, work):
    client = client_for(portal_admin)
    one = client.get(URL, {"months": "1"}).content.decode()
    assert "<strong>$1.00</strong>" in row_of(one, "Team A")   # two months ago is outside the one month shown
    for bad in ("zero", "-3", "99999999999999999999"):
        response = client.get(URL, {"months": bad})
        assert response.status_code == 200


def test_the_report_reads_a_fixed_number_of_queries(django_assert_max_num_queries, team_a, work):
    # The jobs, their run times and their multi-slot tasks' extra, the kinds of node of their pools (and, for jobs on
    # pools of both kinds, their time by node and those nodes), the pools, the prices, the accounts, the teams.
    with django_assert_max_num_queries(10) as few:
        cost_report(team_ids=None)
    for _ in range(20):
        TaskFactory(job=JobFactory(team=team_a, pool_id="pool-x"), duration_seconds=60)
    with django_assert_max_num_queries(len(few)):
        cost_report(team_ids=None)


@pytest.mark.parametrize("persona", ["viewer", "submitter", "no_role"])
def test_other_roles_are_refused(request, persona):
    assert client_for(request.getfixturevalue(persona)).get(URL).status_code == 403


def test_anonymous_is_sent_to_sign_in(client):
    response = client.get(URL)
    assert response.status_code == 302 and "login" in response["Location"]


def test_the_navigation_offers_costs_only_to_those_who_may_read_them(operator_a, viewer):
    assert f'href="{URL}"' in client_for(operator_a).get(reverse("dashboard")).content.decode()
    assert f'href="{URL}"' not in client_for(viewer).get(reverse("dashboard")).content.decode()


def test_work_created_long_ago_is_left_out(portal_admin):
    VmPrice.objects.create(vm_size="standard_d2s_v3", dedicated_per_hour=1, taken_on=date(2026, 12, 1))
    pool = PoolFactory()
    old = JobFactory(account=pool.account, pool_id=pool.pool_id, creation_time=timezone.now() - timedelta(days=900))
    TaskFactory(job=old, duration_seconds=3600)
    assert cost_report(team_ids=None).total.amounts == {}
