"""When a process lacks an account's credential: every part of the log viewer says which account and which setting
is missing, answers 200 (or a plain 503 for downloads), and stops polling; nothing is a 500 and nothing spins on
"Reading…" forever. Actions are refused in the same words, and a submission waits with them as its error."""

import pytest
from django.urls import reverse

from batchsync.submit import submit_submission
from portal.actions import ActionError
from portal.jobs import services as job_services
from portal.models import AuditEvent, JobTemplate, SubmissionState, TaskState
from portal.submit import services as submit_services
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


def test_an_action_on_that_accounts_job_is_refused_in_words_naming_what_is_missing(task, operator_a, team_a):
    job = task.job
    job.team = team_a
    job.save(update_fields=["team"])

    with pytest.raises(ActionError) as refused:
        job_services.job_terminate(user=operator_a, job=job, reason="stuck for hours")

    assert "team-b" in refused.value.message and VARIABLE in refused.value.message
    assert not AuditEvent.objects.filter(action="job.terminate").exists()


def test_a_submission_to_that_account_waits_and_says_what_the_worker_lacks(task, submitter):
    template = JobTemplate.objects.get(slug="render-frames")
    template.account = task.job.account
    template.save(update_fields=["account"])
    submission = submit_services.submission_create(user=submitter, template_version=template.current_version(),
                                                   parameters={"frames": "2", "seconds_per_frame": "0"})

    submit_submission(submission.pk)

    submission.refresh_from_db()
    assert submission.state == SubmissionState.PENDING and submission.next_attempt_at is not None
    assert "team-b" in submission.error_message and VARIABLE in submission.error_message
