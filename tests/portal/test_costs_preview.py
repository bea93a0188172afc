"""The preview's cost estimate: from the template's latest finished runs (median time per task × the tasks to
send), else a bound from its time limit, else why there is none; shown to those who may submit."""

import html
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from portal.models import JobState, JobTemplate, Submission, SubmissionState, VmPrice
from portal.submit import services
from tests.factories import BatchAccountFactory, JobFactory, PoolFactory, TaskFactory
from tests.personas import client_for

pytestmark = pytest.mark.django_db

SLUG = "render-frames"   # migration 0005's example: pool demo-pool, a time limit of 300 s per task


def preview(client, **values):
    template = JobTemplate.objects.get(slug=SLUG)
    data = {"template_version": template.current_version().pk, "frames": "240", "seconds_per_frame": "1", **values}
    return client.post(reverse("submit_form", args=[SLUG]), data)


def estimate_on(response) -> str:
    assert response.status_code == 200
    body = response.content.decode()
    start = body.index('id="cost-estimate"')
    return body[start:body.index("</p>", start)].split("</strong> ", 1)[1]


@pytest.fixture
def demo_pool(db):
    return PoolFactory(account=BatchAccountFactory(), pool_id="demo-pool", vm_size="Standard_D2s_v3",
                       task_slots_per_node=1)


@pytest.fixture
def priced(demo_pool):
    return VmPrice.objects.create(vm_size="Standard_D2s_v3", dedicated_per_hour=Decimal("1.52"),
                                  spot_per_hour=Decimal("0.30"), taken_on=date(2026, 12, 1))


def past_run(user, *, seconds_per_task, tasks=4, state=JobState.COMPLETED, slug=SLUG, submitted=True):
    template = JobTemplate.objects.get(slug=SLUG)
    submission = services.submission_create(user=user, template_version=template.current_version(),
                                            parameters={"frames": str(tasks)})
    if slug != SLUG:   # the same run, as if made from another template
        Submission.objects.filter(pk=submission.pk).update(
            template_version=JobTemplate.objects.get(slug=slug).current_version())
    if submitted:
        Submission.objects.filter(pk=submission.pk).update(state=SubmissionState.SUBMITTED)
    job = JobFactory(account=submission.account, job_id=submission.job_id, pool_id="demo-pool", state=state,
                     task_completed=tasks, end_time=timezone.now() - timedelta(hours=1))
    for _ in range(tasks):
        TaskFactory(job=job, duration_seconds=seconds_per_task)
    return job


def test_with_history_the_estimate_is_the_median_time_per_task_times_the_tasks(signed_in, user, priced):
    for seconds in (60, 120, 90):
        past_run(user, seconds_per_task=seconds)
    past_run(user, seconds_per_task=5000, state=JobState.ACTIVE)           # still running: not yet history
    past_run(user, seconds_per_task=5000, submitted=False)                 # never reached Batch
    past_run(user, seconds_per_task=5000, slug="python-script")               # another template

    # 90 s per task × 240 tasks = 6 node-hours at $1.52.
    assert estimate_on(preview(signed_in)) == ("about $9.12 — 6.0 node-hours of Standard_D2s_v3 at $1.52/h; based "
                                               "on the last 3 runs of this template.")


def test_only_the_last_twelve_runs_count(signed_in, user, priced):
    for _ in range(3):
        past_run(user, seconds_per_task=6000)    # older: outvoted by the twelve after
    for _ in range(12):
        past_run(user, seconds_per_task=30)
    assert "2.0 node-hours" in estimate_on(preview(signed_in)) and "the last 12 runs" in estimate_on(
        preview(signed_in))


def test_without_history_it_is_a_range_up_to_the_time_limit(signed_in, priced):
    # 240 tasks × 300 s = 20 node-hours at $1.52.
    assert estimate_on(preview(signed_in)) == (
        "between nothing and $30.40 — up to 20 node-hours of Standard_D2s_v3 at $1.52/h if every task ran its whole "
        "time limit; this template has no finished runs to go by yet.")


def test_a_spot_pool_is_estimated_at_the_spot_price(signed_in, priced, demo_pool):
    demo_pool.target_dedicated_nodes = demo_pool.current_dedicated_nodes = 0
    demo_pool.target_low_priority_nodes = 3
    demo_pool.save()
    assert "of Standard_D2s_v3 (Spot) at $0.30/h" in estimate_on(preview(signed_in))


def test_a_pool_of_both_kinds_is_estimated_at_its_current_mix_and_says_so(signed_in, priced, demo_pool):
    demo_pool.current_dedicated_nodes, demo_pool.current_low_priority_nodes = 1, 3
    demo_pool.save()
    # 20 node-hours, a quarter at $1.52 and three quarters at $0.30: $7.60 + $4.50.
    assert html.unescape(estimate_on(preview(signed_in))) == (
        "between nothing and $12.10 — up to 20 node-hours of Standard_D2s_v3 at $1.52/h dedicated and $0.30/h Spot, "
        "assuming its tasks run on the pool's nodes as they are now (75% Spot) if every task ran its whole time "
        "limit; this template has no finished runs to go by yet.")


def test_without_a_price_or_a_known_pool_it_says_why(signed_in, demo_pool):
    assert estimate_on(preview(signed_in)) == "No cost estimate: the price table has no price for Standard_D2s_v3."
    demo_pool.delete()
    assert estimate_on(preview(signed_in)) == ("No cost estimate: the portal does not know the VM size of pool "
                                               "demo-pool.")


@pytest.mark.parametrize("persona", ["submitter", "operator_a", "portal_admin"])
def test_those_who_may_submit_see_the_estimate(request, persona, priced):
    page = preview(client_for(request.getfixturevalue(persona)))
    assert estimate_on(page).startswith("between nothing and $30.40")


def test_a_viewer_and_anonymous_get_no_preview(client, viewer, priced):
    assert preview(client_for(viewer)).status_code == 403
    response = preview(client)
    assert response.status_code == 302 and "login" in response["Location"]


def spend_this_month(team, demo_pool, hours):
    job = JobFactory(account=demo_pool.account, pool_id=demo_pool.pool_id, team=team)
    TaskFactory(job=job, duration_seconds=hours * 3600)


def test_past_80_percent_of_the_teams_monthly_budget_the_preview_warns(submitter, team_a, demo_pool, priced):
    team_a.monthly_budget = Decimal("40")
    team_a.save()
    spend_this_month(team_a, demo_pool, 5)   # 5 node-hours at $1.52 = $7.60

    body = html.unescape(preview(client_for(submitter)).content.decode())

    month = timezone.localdate().strftime("%B")
    assert (f"Team A has used $7.60 of its $40.00 budget for {month} (19%); with this submission's estimate it "
            "would reach 95%.") in body   # $7.60 + up to $30.40


@pytest.mark.parametrize("budget", [None, "1000"])
def test_no_warning_without_a_budget_or_well_within_it(submitter, team_a, demo_pool, priced, budget):
    team_a.monthly_budget = budget
    team_a.save()
    spend_this_month(team_a, demo_pool, 5)
    assert 'id="budget-warning"' not in preview(client_for(submitter)).content.decode()


def test_a_budget_in_another_currency_counts_only_what_is_in_it(submitter, team_a, demo_pool, priced):
    team_a.monthly_budget, team_a.budget_currency = Decimal("10"), "EUR"
    team_a.save()
    spend_this_month(team_a, demo_pool, 5)
    assert 'id="budget-warning"' not in preview(client_for(submitter)).content.decode()
