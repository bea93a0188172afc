"""A task's output when the web process lacks its account's credential: every part of the log viewer says which
account and which setting is missing, answers 200 (or a plain 503 for downloads), and stops polling; nothing is
a 500 and nothing spins on "Reading…" forever."""

import pytest
from django.urls import reverse

from portal.models import TaskState
from tests.factories import BatchAccountFactory, JobFactory, PoolFactory, TaskFactory

pytestmark = pytest.mark.django_db

VARIABLE = "TEAM_B_BATCH_KEY_FOR_TEST"


@pytest.fixture
def task(monkeypatch, local_cache):
    monkeypatch.delenv(VARIABLE, raising=False)
    BatchAccountFactory()   # the default account, so there are several
    team_b = BatchAccountFactory(name="team-b", is_default=False, key_env_var=VARIABLE,
                                 account_url="https://teamb.westeurope.batch.azure.com")
    job = JobFactory(account=team_b, job_id="same-id")
    return TaskFactory(job=job, task_id="t1", state=TaskState.RUNNING)


def says_what_is_missing(html: str) -> None:
    assert "team-b" in html and VARIABLE in html, html
    assert "hx-trigger" not in html, "a missing credential does not come back by itself: no polling"


@pytest.mark.parametrize("name, params", [
    ("task_output", {}),
    ("task_output_window", {"start": "0"}),
    ("task_output_search", {"q": "error"}),
])
def test_each_part_of_the_viewer_names_the_account_and_the_missing_variable(signed_in, task, name, params):
    response = signed_in.get(reverse(name, args=[task.pk]), params)

    assert response.status_code == 200
    says_what_is_missing(response.content.decode())


def test_the_live_tail_stops_with_the_same_message(signed_in, task):
    response = signed_in.get(reverse("task_output_tail", args=[task.pk]), {"after": "0"})

    assert response.status_code == 200
    says_what_is_missing(response.content.decode())


def test_downloads_answer_a_plain_503_naming_what_is_missing(signed_in, task):
    download = signed_in.get(reverse("task_output_download", args=[task.pk]))
    zipped = signed_in.get(reverse("job_logs_zip", args=[task.job.pk]))

    for response in (download, zipped):
        assert response.status_code == 503 and response["Content-Type"].startswith("text/plain")
        assert "team-b" in response.content.decode() and VARIABLE in response.content.decode()


def test_node_files_and_preparation_status_name_it_too(signed_in, task):
    pool = PoolFactory(account=task.job.account, pool_id="demo-pool")

    node_file = signed_in.get(reverse("node_files", args=[pool.pk, "tvm-0001"]))
    preparation = signed_in.get(reverse("job_preparation", args=[task.job.pk]))

    for response in (node_file, preparation):
        assert response.status_code == 200
        assert "team-b" in response.content.decode() and VARIABLE in response.content.decode()
