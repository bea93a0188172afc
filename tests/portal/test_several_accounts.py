"""Pages over several Batch accounts: rows name their account only when there are several, `?account=` filters
each list, and the same job or pool id in two accounts is two rows and two filter choices."""

import re

import pytest
from django.urls import reverse

from tests.factories import BatchAccountFactory, JobFactory, NodeFactory, PoolFactory, TaskFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def default():
    return BatchAccountFactory()


@pytest.fixture
def prod(default):
    return BatchAccountFactory(name="prod", is_default=False, account_url="https://prod.westeurope.batch.azure.com")


@pytest.fixture
def twins(default, prod):
    """The same pool id and job id (with a failed task) in both accounts."""
    jobs = {}
    for account in (default, prod):
        pool = PoolFactory(account=account, pool_id="demo-pool")
        NodeFactory(pool=pool)
        jobs[account.name] = JobFactory(account=account, job_id="same-id", pool_id="demo-pool")
        TaskFactory(job=jobs[account.name], task_id="t1", failed=True)
    return jobs


def rows(html: str, marker: str) -> list[str]:
    return [row for row in re.findall(r"<tr[^>]*>.*?</tr>", html, re.S) if marker in row]


def test_one_account_names_no_account_and_offers_no_account_filter(signed_in, default):
    PoolFactory(account=default, pool_id="demo-pool")
    JobFactory(account=default, job_id="same-id", pool_id="demo-pool")

    html = signed_in.get(reverse("job_list")).content.decode()

    assert 'name="account"' not in html and ">Account<" not in html
    assert '<option value="demo-pool"' in html


def test_the_same_job_id_in_two_accounts_is_two_rows_that_say_which(signed_in, twins):
    html = signed_in.get(reverse("job_list")).content.decode()

    same = rows(html, "same-id")
    assert len(same) == 2
    assert sorted(re.search(r"<td>(default|prod)</td>", row).group(1) for row in same) == ["default", "prod"]
    assert 'name="account"' in html


def test_the_pool_filter_offers_each_accounts_pool_and_filters_by_it(signed_in, twins):
    html = signed_in.get(reverse("job_list")).content.decode()
    assert '<option value="default/demo-pool">demo-pool (default)</option>' in html
    assert '<option value="prod/demo-pool">demo-pool (prod)</option>' in html

    only_prod = signed_in.get(reverse("job_list"), {"pool": "prod/demo-pool"}).content.decode()
    assert [str(twins["prod"].pk)] == re.findall(r'id="job-(\d+)"', only_prod)
    assert '<option value="prod/demo-pool" selected>' in only_prod


def test_the_job_list_filters_by_account(signed_in, twins):
    html = signed_in.get(reverse("job_list"), {"account": "prod"}).content.decode()

    assert re.findall(r'id="job-(\d+)"', html) == [str(twins["prod"].pk)]
    assert '<option value="prod" selected>' in html


def test_an_unknown_account_filters_nothing_and_never_fails(signed_in, twins):
    for value in ("nope", "x" * 2000, "prod/demo-pool"):
        response = signed_in.get(reverse("job_list"), {"account": value})
        assert response.status_code == 200
        assert len(rows(response.content.decode(), "same-id")) == 2
    # Bytes no database column holds are refused before any query (portal.request_guard).
    assert signed_in.get(reverse("job_list"), {"account": "prod\x00"}).status_code == 400


def test_the_dashboard_names_accounts_and_filters_by_one(signed_in, twins):
    both = signed_in.get(reverse("dashboard")).content.decode()
    assert f'id="d-job-{twins["default"].pk}"' in both and f'id="d-job-{twins["prod"].pk}"' in both
    assert '<span class="chip" title="Batch account">prod</span>' in both
    assert 'name="account"' in both

    prod = signed_in.get(reverse("dashboard"), {"account": "prod"}).content.decode()
    assert f'id="d-job-{twins["prod"].pk}"' in prod and f'id="d-job-{twins["default"].pk}"' not in prod
    assert len(re.findall(r'id="d-pool-\d+"', prod)) == 1
    assert len(re.findall(r'id="d-task-\d+"', prod)) == 1
    assert 'hx-get="/?account=prod"' in prod, "the poll keeps the account"


def test_the_failure_page_filters_by_account_and_by_each_accounts_pool(signed_in, twins):
    url = reverse("failure_triage")

    both = signed_in.get(url, {"range": "all"}).content.decode()
    prod = signed_in.get(url, {"range": "all", "account": "prod"}).content.decode()
    prod_pool = signed_in.get(url, {"range": "all", "pool": "prod/demo-pool"}).content.decode()

    job_links = re.compile(r'href="/jobs/(\d+)/\?failed=1"')
    assert sorted(job_links.findall(both)) == sorted(str(job.pk) for job in twins.values())
    assert job_links.findall(prod) == [str(twins["prod"].pk)]
    assert job_links.findall(prod_pool) == [str(twins["prod"].pk)]
    assert '<option value="default/demo-pool">demo-pool (default)</option>' in both
    assert "prod, 1" in both, "each job says its account"


def test_the_pool_list_names_accounts_and_filters_by_one(signed_in, twins):
    both = signed_in.get(reverse("pool_list")).content.decode()
    prod = signed_in.get(reverse("pool_list"), {"account": "prod"}).content.decode()

    assert len(rows(both, "demo-pool")) == 2 and "<td>prod</td>" in both and "<td>default</td>" in both
    assert len(rows(prod, "demo-pool")) == 1 and "<td>prod</td>" in prod


def test_a_disabled_account_never_synced_adds_no_filter_and_no_column(signed_in, default):
    BatchAccountFactory(name="spare", is_default=False, enabled=False, last_synced_at=None)
    JobFactory(account=default, job_id="only-one")

    html = signed_in.get(reverse("job_list")).content.decode()

    assert 'name="account"' not in html and ">Account<" not in html


def test_job_task_and_pool_pages_name_their_account_when_there_are_several(signed_in, twins):
    job = twins["prod"]
    task = job.tasks.get()
    pool = job.account.pools.get()

    assert '<dd id="job-account">prod</dd>' in signed_in.get(reverse("job_detail", args=[job.pk])).content.decode()
    assert '<dd id="task-account">prod</dd>' in signed_in.get(reverse("task_detail", args=[task.pk])).content.decode()
    assert '<dd id="pool-account">prod</dd>' in signed_in.get(reverse("pool_detail", args=[pool.pk])).content.decode()


def test_with_one_account_detail_pages_do_not_name_it(signed_in, default):
    job = JobFactory(account=default)

    assert 'id="job-account"' not in signed_in.get(reverse("job_detail", args=[job.pk])).content.decode()
