"""A job's cost after (and while) it runs: its tasks' run times on its pool's VM size, as its share of the pool, on
the job page and the submission page; readers see it, an account without a role and anonymous do not."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from portal.costs.report import cost_report
from portal.costs.selectors import hourly, job_cost, money, price_for
from portal.models import JobState, JobTemplate, Submission, SubmissionState, VmPrice
from portal.submit import services
from tests.factories import BatchAccountFactory, JobFactory, NodeFactory, PoolFactory, TaskFactory
from tests.personas import client_for

pytestmark = pytest.mark.django_db


def price(size="Standard_D2s_v3", dedicated="0.096", spot=None, region="", currency="USD"):
    return VmPrice.objects.create(vm_size=size, region=region, dedicated_per_hour=Decimal(dedicated),
                                  spot_per_hour=Decimal(spot) if spot else None, currency=currency,
                                  taken_on=date(2026, 12, 1))


def job_with_tasks(*durations, slots_per_node=1, **pool_fields):
    pool = PoolFactory(task_slots_per_node=slots_per_node, **pool_fields)
    job = JobFactory(account=pool.account, pool_id=pool.pool_id)
    for seconds in durations:
        TaskFactory(job=job, duration_seconds=seconds)
    TaskFactory(job=job, state="active")   # not run yet: no time counted
    return job


def test_node_hours_are_the_tasks_run_time_shared_by_the_slots_of_a_node():
    price()
    job = job_with_tasks(3600, 3600, 2400, slots_per_node=4)

    cost = job_cost(job)

    assert cost.node_hours == pytest.approx(9600 / 4 / 3600)
    assert cost.cost == Decimal("0.064000")
    assert cost.sentence == "Its tasks ran 0.67 node-hours on standard_d2s_v3 at $0.096/h: about $0.06."
    assert "A node runs 4 tasks at once, so an hour of one task is 1/4 of a node-hour" in cost.share
    assert f"share of pool {job.pool_id}" in cost.share


def test_a_spot_pool_costs_the_spot_price_and_says_so():
    price(spot="0.0192")
    job = job_with_tasks(36000, target_dedicated_nodes=0, current_dedicated_nodes=0, target_low_priority_nodes=2)

    assert job_cost(job).sentence == ("Its tasks ran 10 node-hours on standard_d2s_v3 (Spot) at $0.0192/h: "
                                      "about $0.19.")


def test_the_regions_own_price_wins_over_one_for_any_region():
    price(dedicated="1")
    price(dedicated="2", region="westeurope")
    price(dedicated="3", region="eastus")
    assert price_for("STANDARD_D2S_V3", region="westeurope").dedicated_per_hour == 2
    assert price_for("standard_d2s_v3", region="northeurope").dedicated_per_hour == 1
    account = BatchAccountFactory(name="eu", account_url="https://acct.westeurope.batch.azure.com")
    pool = PoolFactory(account=account)
    job = JobFactory(account=account, pool_id=pool.pool_id)
    TaskFactory(job=job, duration_seconds=3600)
    assert job_cost(job).per_hour == 2


def test_without_a_price_or_a_pool_it_says_why_there_is_no_cost():
    job = job_with_tasks(7200)
    assert job_cost(job).sentence == ("Its tasks ran 2.0 node-hours on standard_d2s_v3; no cost: the price table "
                                      "has no price for standard_d2s_v3.")
    assert job_cost(JobFactory(pool_id="nowhere")).sentence.startswith("No cost: the portal does not know")


def test_a_jobs_sum_is_kept_until_its_tasks_sync_again():
    price()
    job = job_with_tasks(3600)
    job.state = JobState.COMPLETED
    first = job_cost(job).node_hours
    TaskFactory(job=job, duration_seconds=3600)   # as if written without a new task sync: the kept sum answers
    assert job_cost(job).node_hours == first == pytest.approx(1.0)
    job.tasks_synced_at += timedelta(seconds=1)    # the sync's next pass: summed again
    assert job_cost(job).node_hours == pytest.approx(2.0)


def test_amounts_read_as_people_write_them():
    assert money(Decimal("3.204"), "USD") == "$3.20"
    assert money(Decimal("1234.5"), "EUR") == "€1,234.50"
    assert money(Decimal("0.001"), "USD") == "less than $0.01"
    assert money(Decimal("2"), "CHF") == "2.00 CHF"
    assert hourly(Decimal("1.52"), "USD") == "$1.52/h"
    assert hourly(Decimal("0.0192"), "USD") == "$0.0192/h"
    assert hourly(Decimal("2"), "SEK") == "2.00 SEK/h"


@pytest.mark.parametrize("persona", ["viewer", "submitter", "operator_a", "portal_admin"])
def test_readers_see_the_cost_on_the_job_page(request, persona):
    price()
    job = job_with_tasks(7200)
    page = client_for(request.getfixturevalue(persona)).get(reverse("job_detail", args=[job.pk]))
    body = page.content.decode()
    assert page.status_code == 200
    assert "Its tasks ran 2.0 node-hours on standard_d2s_v3 at $0.096/h: about $0.19." in body
    assert 'id="job-cost-share"' in body


def test_an_account_without_a_role_and_anonymous_do_not(client, no_role):
    price()
    job = job_with_tasks(7200)
    assert client_for(no_role).get(reverse("job_detail", args=[job.pk])).status_code in (403, 404)
    response = client.get(reverse("job_detail", args=[job.pk]))
    assert response.status_code == 302 and "login" in response["Location"]


def test_the_submission_page_shows_its_jobs_cost(submitter, operator_a, other_submitter):
    price()
    template = JobTemplate.objects.get(slug="render-frames")
    submission = services.submission_create(user=submitter, template_version=template.current_version(),
                                            parameters={"frames": "3"})
    Submission.objects.filter(pk=submission.pk).update(state=SubmissionState.SUBMITTED)
    pool = PoolFactory(account=submission.account)
    job = JobFactory(account=submission.account, job_id=submission.job_id, pool_id=pool.pool_id)
    TaskFactory(job=job, duration_seconds=1800)
    url = reverse("submission_detail", args=[submission.public_id])

    for person in (submitter, operator_a):
        body = client_for(person).get(url).content.decode()
        assert "Its tasks ran 0.50 node-hours on standard_d2s_v3 at $0.096/h: about $0.05." in body
    assert client_for(other_submitter).get(url).status_code in (403, 404)


def test_a_task_that_needs_several_slots_counts_each_of_them():
    price(dedicated="1")
    pool = PoolFactory(task_slots_per_node=4)
    job = JobFactory(account=pool.account, pool_id=pool.pool_id)
    TaskFactory(job=job, duration_seconds=3600, required_slots=2)   # half of a node for an hour
    TaskFactory(job=job, duration_seconds=3600)                     # a quarter

    cost = job_cost(job)

    assert cost.node_hours == pytest.approx(0.75)
    assert cost.cost == Decimal("0.750000")
    assert "a task that needs several slots counts that many" in cost.share


def mixed_pool_job():
    """A pool of 1 dedicated and 3 Spot nodes now: an hour on its dedicated node, two on a Spot node, and an hour on a
    node that has left the mirror."""
    price(dedicated="1", spot="0.2")
    pool = PoolFactory(current_dedicated_nodes=1, target_dedicated_nodes=1, current_low_priority_nodes=3,
                       target_low_priority_nodes=3)
    NodeFactory(pool=pool, node_id="dedicated-1", is_dedicated=True)
    NodeFactory(pool=pool, node_id="spot-1", is_dedicated=False)
    job = JobFactory(account=pool.account, pool_id=pool.pool_id)
    TaskFactory(job=job, duration_seconds=3600, node_id="dedicated-1")
    TaskFactory(job=job, duration_seconds=7200, node_id="spot-1")
    TaskFactory(job=job, duration_seconds=3600, node_id="gone-1")
    return job


def test_a_pool_of_dedicated_and_spot_nodes_prices_each_at_its_own_rate_and_says_what_it_assumed():
    job = mixed_pool_job()

    cost = job_cost(job)

    # The unknown node's hour is split as the pool is now (75 % Spot): 1.25 h dedicated at $1, 2.75 h Spot at $0.20.
    assert cost.dedicated_hours == pytest.approx(1.25) and cost.spot_hours == pytest.approx(2.75)
    assert cost.cost == Decimal("1.800000")
    assert cost.sentence == ("Its tasks ran 4.0 node-hours on standard_d2s_v3: 1.2 on dedicated nodes at $1.00/h and "
                             "2.8 on Spot nodes at $0.20/h: about $1.80.")
    assert ("1.0 node-hours ran on nodes the portal no longer knows; they are counted as the pool's nodes are now: "
            "75% Spot.") in cost.share


def test_the_costs_page_prices_a_mixed_pool_as_the_job_page_does():
    job = mixed_pool_job()
    job.team = None
    job.creation_time = job.creation_time or timezone.now()
    job.save()

    report = cost_report(team_ids=None, months=1)

    assert report.total.amounts["USD"] == pytest.approx(Decimal("1.8"))
