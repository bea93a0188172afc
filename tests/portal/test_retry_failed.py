"""Retrying the failed tasks of a job that has ended: a new submission of only those tasks, with the parent's
values and task ids, linked to it; against localbatch through the real SDK, the mirror filled by a real sync.

The template fails its odd frames on their first run only (a marker file in the test's folder says a frame has
run), so the retry succeeds and each run is counted."""

import uuid

import pytest
from azure.batch import models
from django.urls import reverse

from batchsync import submit
from batchsync.accounts import default_account
from batchsync.sync import sync_account
from portal.jobs import services as job_services
from portal.models import AuditEvent, Job, JobState, JobTemplate, JobTemplateVersion, Submission, SubmissionState
from portal.submit import services
from portal.submit.render import task_index
from portal.submit.services import SubmissionError
from tests.localbatch.helpers import make_job, make_pool, sh, task, wait_for
from tests.personas import client_for

pytestmark = pytest.mark.django_db

POOL = "demo-pool"   # the shipped examples' pool


def text(response) -> str:
    return response.content.decode()


def flaky_frames_version(marks) -> JobTemplateVersion:
    """render-frames, changed so that an odd frame fails (exit 3) the first time it runs, and Batch does not
    retry it by itself; every run of frame n appends a line to runs-n."""
    template = JobTemplate.objects.get(slug="render-frames")
    version = template.current_version()
    command = (f"echo run >> {marks}/runs-{{frame}}; if [ $(( {{frame}} % 2 )) -eq 1 ] && [ ! -e {marks}/f{{frame}} ]; "
               f"then touch {marks}/f{{frame}}; echo frame {{frame}} failed >&2; exit 3; fi; echo frame {{frame}} ok")
    return JobTemplateVersion.objects.create(
        template=template, number=version.number + 1,
        spec={**version.spec, "command_line": command, "constraints": {"max_task_retry_count": 0}})


def runs(marks, frame: int) -> int:
    path = marks / f"runs-{frame}"
    return len(path.read_text().splitlines()) if path.exists() else 0


def run_and_end(submission: Submission, batch_client) -> Job:
    """Send the submission as the worker does, wait for its job to end by itself, and sync as beat does."""
    assert submit.submit_submission(submission.pk) == SubmissionState.SUBMITTED
    wait_for(lambda: batch_client.get_job(submission.job_id).state == "completed", timeout=60,
             message=f"{submission.job_id} to end")
    sync_account(default_account())
    return Job.objects.select_related("account").get(job_id=submission.job_id)


@pytest.fixture
def pool(batch, batch_client):
    return make_pool(batch_client, POOL, nodes=1, slots=8)


@pytest.fixture
def ended(pool, batch_client, submitter, tmp_path):
    """A submission of six frames by the Submitter (team A) whose job has ended: frames 1, 3, 5 failed."""
    version = flaky_frames_version(tmp_path)
    parent = services.submission_create(user=submitter, template_version=version,
                                        parameters={"frames": "6", "seconds_per_frame": "0"})
    job = run_and_end(parent, batch_client)
    assert (job.state, job.task_failed, job.task_succeeded) == (JobState.COMPLETED, 3, 3)
    return parent, job


# --- the service ----------------------------------------------------------------------------------------------


def test_the_count_comes_first_and_names_what_is_not_re_run(ended, submitter):
    parent, job = ended

    plan = services.submission_retry_failed_plan(user=submitter, job=job)

    assert plan.parent == parent and plan.task_indexes == (1, 3, 5)
    assert plan.message == "This runs 3 tasks again; 3 succeeded and are not re-run."
    assert Submission.objects.count() == 1, "counting writes nothing"


def test_the_retry_sends_only_the_failed_tasks_with_their_ids_and_commands(ended, submitter, batch_client,
                                                                         tmp_path):
    parent, job = ended

    retry = services.submission_retry_failed(user=submitter, job=job, key=uuid.uuid4())

    assert (retry.retry_of, retry.task_indexes, retry.total_tasks) == (parent, [1, 3, 5], 3)
    assert (retry.template_version_id, retry.parameters) == (parent.template_version_id, parent.parameters)
    assert retry.job_id != parent.job_id and retry.submitted_by == submitter
    retried_job = run_and_end(retry, batch_client)
    in_batch = {t.id: t for t in batch_client.list_tasks(retry.job_id)}
    assert sorted(in_batch) == ["t00001", "t00003", "t00005"]
    for task_id, sent in in_batch.items():
        assert sent.command_line == batch_client.get_task(parent.job_id, task_id).command_line
        assert sent.execution_info.result == "success"
    assert (retried_job.task_succeeded, retried_job.task_failed) == (3, 0)
    assert [runs(tmp_path, frame) for frame in range(1, 7)] == [2, 1, 2, 1, 2, 1]
    event = AuditEvent.objects.get(action="submission.retry_failed")
    assert event.object_id == str(retry.pk)
    assert event.details["retry_of"] == parent.job_id and event.details["tasks"] == 3
    assert event.details["task_ids"] == ["t00001", "t00003", "t00005"]


def test_a_resumed_retry_adds_the_rest_of_its_tasks_once(ended, submitter, batch_client, settings):
    settings.SUBMISSION_CHUNK_SIZE = 1
    parent, job = ended
    # No node left: the retry's tasks wait, so its job stays open whatever is re-run.
    batch_client.begin_resize_pool(POOL, models.BatchPoolResizeOptions(target_dedicated_nodes=0)).result()
    wait_for(lambda: not list(batch_client.list_nodes(POOL)), message="the pool's node removed")
    retry = services.submission_retry_failed(user=submitter, job=job, key=uuid.uuid4())
    # As if the worker had died after adding the first task, before recording the next chunk.
    submit.submit_submission(retry.pk)
    Submission.objects.filter(pk=retry.pk).update(state=SubmissionState.ADDING_TASKS, tasks_added=1,
                                                  lease_expires_at=None)

    assert submit.submit_submission(retry.pk) == SubmissionState.SUBMITTED
    ids = [t.id for t in batch_client.list_tasks(retry.job_id)]
    assert sorted(ids) == ["t00001", "t00003", "t00005"]


def test_posting_twice_with_one_key_makes_one_submission(ended, submitter):
    _, job = ended
    key = uuid.uuid4()

    first = services.submission_retry_failed(user=submitter, job=job, key=key)
    second = services.submission_retry_failed(user=submitter, job=job, key=key)

    assert first.pk == second.pk
    assert Submission.objects.filter(retry_of__isnull=False).count() == 1
    assert AuditEvent.objects.filter(action="submission.retry_failed").count() == 1


def test_someone_elses_key_is_refused(ended, submitter, operator_a):
    _, job = ended
    key = uuid.uuid4()
    services.submission_retry_failed(user=submitter, job=job, key=key)

    with pytest.raises(SubmissionError, match="cannot be submitted again"):
        services.submission_retry_failed(user=operator_a, job=job, key=key)


def test_a_retry_of_a_retry_takes_only_its_own_failures(ended, submitter, batch_client, tmp_path):
    _, job = ended
    for frame in (3, 5):   # frames 3 and 5 will fail again; 1 succeeds
        (tmp_path / f"f{frame}").unlink()
    retry = services.submission_retry_failed(user=submitter, job=job, key=uuid.uuid4())
    retried_job = run_and_end(retry, batch_client)

    again = services.submission_retry_failed(user=submitter, job=retried_job, key=uuid.uuid4())

    assert (again.retry_of, again.task_indexes) == (retry, [3, 5])
    assert services.submission_retry_failed_plan(user=submitter, job=retried_job).message == (
        "This runs 2 tasks again; 1 succeeded and is not re-run.")


@pytest.mark.parametrize("change, words", [
    ({"state": JobState.ACTIVE}, "has not ended: Batch runs its failed tasks again in the job itself"),
    ({"state": JobState.TERMINATING}, "is still ending"),
    ({"state": JobState.DELETING}, "was deleted in Batch"),
    ({"gone": True}, "was deleted in Batch"),
    ({"no_failures": True}, "has no failed tasks to retry"),
    ({"template_withdrawn": True}, "is not offered any more"),
])
def test_bad_input_is_refused_in_plain_words_and_changes_nothing(ended, submitter, change, words):
    parent, job = ended
    if "state" in change:
        Job.objects.filter(pk=job.pk).update(state=change["state"])
    if change.get("gone"):
        Job.objects.filter(pk=job.pk).update(gone_at=job.end_time)
    if change.get("no_failures"):
        job.tasks.update(result="success", exit_code=0)
    if change.get("template_withdrawn"):
        JobTemplate.objects.filter(pk=parent.template_version.template_id).update(is_active=False)
    job.refresh_from_db()

    with pytest.raises(SubmissionError, match=words):
        services.submission_retry_failed(user=submitter, job=job, key=uuid.uuid4())
    assert Submission.objects.count() == 1 and not AuditEvent.objects.filter(action="submission.retry_failed")


def test_an_ended_job_from_outside_the_portal_says_retry_is_not_possible_and_why(pool, batch_client, submitter,
                                                                                team_a):
    make_job(batch_client, "outside", POOL)
    batch_client.create_task("outside", task("bad", sh("exit 1")))
    wait_for(lambda: batch_client.get_task("outside", "bad").state == "completed", message="the task to fail")
    sync_account(default_account())
    Job.objects.filter(job_id="outside").update(submitted_by=submitter, team=team_a)
    job_services.job_terminate(user=submitter, job=Job.objects.get(job_id="outside"), reason="done with it")
    wait_for(lambda: batch_client.get_job("outside").state == "completed", message="the outside job to end")
    sync_account(default_account())
    job = Job.objects.get(job_id="outside")
    assert job.has_ended and job.task_failed == 1

    with pytest.raises(SubmissionError) as refused:
        services.submission_retry_failed_plan(user=submitter, job=job)

    assert "was not submitted through the portal" in refused.value.message
    assert "retrying its failed tasks is not possible" in refused.value.message
    page = text(client_for(submitter).get(reverse("job_detail", args=[job.pk])))
    assert "Retry not possible: this job was not submitted through the portal" in page
    assert 'id="job-retry-failed"' not in page


def test_the_task_index_is_read_back_only_from_ids_the_portal_makes():
    assert [task_index(i) for i in ("t00001", "t00037", "t123456", "t0001", "x00001", "t00000", "t-0001")] == [
        1, 37, 123456, None, None, None, None]


# --- the pages --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["submitter", "operator_a", "portal_admin"])
def test_the_owner_an_operator_of_their_team_and_an_admin_may_retry(ended, request, who):
    parent, job = ended
    person = request.getfixturevalue(who)
    client = client_for(person)
    url = reverse("submission_retry_failed", args=[parent.public_id])

    confirm = text(client.get(url))
    assert "This runs 3 tasks again; 3 succeeded and are not re-run." in confirm
    assert 'id="retry-confirm"' in confirm
    key = confirm.split('name="key" value="')[1].split('"')[0]
    response = client.post(url, {"key": key})
    again = client.post(url, {"key": key})

    retry = Submission.objects.get(retry_of=parent)
    assert response.status_code == again.status_code == 302
    assert response.url == again.url == reverse("submission_detail", args=[retry.public_id])
    assert retry.submitted_by == person and retry.task_indexes == [1, 3, 5]
    page = text(client.get(response.url))
    assert f'id="retry-of"><a href="{reverse("submission_detail", args=[parent.public_id])}">' in page
    assert retry.name == f"Retry of {parent.title}"
    assert "its 3 failed tasks only" in page
    parent_page = text(client.get(reverse("submission_detail", args=[parent.public_id])))
    assert retry.job_id in parent_page[parent_page.index('id="retries"'):]


@pytest.mark.parametrize("who", ["viewer", "other_submitter", "operator_b"])
def test_someone_who_may_not_act_gets_404_and_nothing_is_submitted(ended, request, who):
    parent, job = ended
    client = client_for(request.getfixturevalue(who))
    url = reverse("submission_retry_failed", args=[parent.public_id])

    assert client.get(url).status_code == 404
    assert client.post(url, {"key": str(uuid.uuid4())}).status_code == 404
    assert 'id="job-retry-failed"' not in text(client.get(reverse("job_detail", args=[job.pk])))
    assert Submission.objects.count() == 1


def test_anonymous_is_sent_to_login(ended, client):
    parent, _ = ended
    url = reverse("submission_retry_failed", args=[parent.public_id])
    for response in (client.get(url), client.post(url, {"key": str(uuid.uuid4())})):
        assert response.status_code == 302 and response.url.startswith(reverse("login"))
    assert Submission.objects.count() == 1


def test_the_job_and_submission_pages_offer_it_and_the_job_retry_leads_there(ended, submitter):
    parent, job = ended
    client = client_for(submitter)
    confirm_url = reverse("submission_retry_failed", args=[parent.public_id])

    job_page = text(client.get(reverse("job_detail", args=[job.pk])))
    submission_page = text(client.get(reverse("submission_detail", args=[parent.public_id])))
    old_link = client.get(reverse("job_retry_failed", args=[job.pk]))

    assert f'id="job-retry-failed" href="{confirm_url}"' in job_page
    assert f'id="submission-retry-failed" href="{confirm_url}"' in submission_page
    assert old_link.status_code == 302 and old_link.url == confirm_url


def test_a_post_without_its_key_submits_nothing(ended, submitter):
    parent, _ = ended
    page = text(client_for(submitter).post(reverse("submission_retry_failed", args=[parent.public_id]),
                                           {"key": "not-a-key"}))
    assert "This form was changed or is incomplete; nothing was submitted." in page
    assert Submission.objects.count() == 1


def test_a_refusal_is_shown_on_the_confirm_page(ended, submitter):
    parent, job = ended
    job.tasks.update(result="success", exit_code=0)
    page = text(client_for(submitter).get(reverse("submission_retry_failed", args=[parent.public_id])))
    assert 'id="retry-refusal"' in page and "has no failed tasks to retry" in page
    assert 'id="retry-confirm"' not in page


def test_a_failure_group_of_an_ended_job_is_submitted_again(ended, submitter):
    parent, job = ended
    client = client_for(submitter)
    query = {"range": "all", "job": str(job.pk), "code": "FailureExitCode", "exit": "3", "line": ""}

    confirm = text(client.get(reverse("failure_retry"), query))
    assert "This retries 3 failed tasks in 1 job." in confirm
    assert "run again as new jobs" in confirm and "3, as a new job" in confirm
    key = confirm.split('name="key" value="')[1].split('"')[0]
    client.post(reverse("failure_retry"), {**query, "key": key})
    client.post(reverse("failure_retry"), {**query, "key": key})

    retry = Submission.objects.get(retry_of=parent)   # the second post made none
    assert retry.task_indexes == [1, 3, 5]
    followed = text(client.get(reverse("failure_triage"), {"range": "all"}))
    assert f"3 failed tasks of 1 ended job were submitted again as a new job: {retry.job_id}." in followed


def test_a_task_someone_terminated_did_not_fail_and_is_not_run_again(pool, batch_client, submitter):
    """Frame 1 fails, frame 2 succeeds, frame 3 runs long and its owner terminates it: the job then ends, and a
    retry runs frame 1 only."""
    template = JobTemplate.objects.get(slug="render-frames")
    version = JobTemplateVersion.objects.create(
        template=template, number=template.current_version().number + 1,
        spec={**template.current_version().spec, "constraints": {"max_task_retry_count": 0},
              "command_line": "if [ {frame} -eq 3 ]; then sleep 60; fi; test $(( {frame} % 2 )) -eq 0"})
    parent = services.submission_create(user=submitter, template_version=version,
                                        parameters={"frames": "3", "seconds_per_frame": "0"})
    assert submit.submit_submission(parent.pk) == SubmissionState.SUBMITTED
    wait_for(lambda: batch_client.get_task(parent.job_id, "t00003").state == "running", message="frame 3 running")
    sync_account(default_account())
    long_task = Job.objects.get(job_id=parent.job_id).tasks.get(task_id="t00003")
    job_services.task_terminate(user=submitter, task=long_task, reason="taking too long")
    wait_for(lambda: batch_client.get_job(parent.job_id).state == "completed", timeout=30, message="the job to end")
    sync_account(default_account())
    job = Job.objects.get(job_id=parent.job_id)

    plan = services.submission_retry_failed_plan(user=submitter, job=job)

    assert plan.task_indexes == (1,)
    assert plan.message == ("This runs 1 task again; 1 succeeded and is not re-run; 1 other neither succeeded nor "
                            "failed (stopped, or never added) and is not re-run either.")


def test_reactivating_a_running_job_leaves_out_a_task_someone_terminated(pool, batch_client, submitter, team_a):
    make_job(batch_client, "open", POOL)   # onAllTasksComplete noaction: the job stays open
    batch_client.create_task("open", task("bad", sh("exit 1")))
    batch_client.create_task("open", task("long", sh("sleep 60")))
    wait_for(lambda: batch_client.get_task("open", "long").state == "running", message="long running")
    wait_for(lambda: batch_client.get_task("open", "bad").state == "completed", message="bad failed")
    sync_account(default_account())
    Job.objects.filter(job_id="open").update(submitted_by=submitter, team=team_a)
    job = Job.objects.get(job_id="open")
    job_services.task_terminate(user=submitter, task=job.tasks.get(task_id="long"), reason="not needed")
    wait_for(lambda: batch_client.get_task("open", "long").state == "completed", message="long terminated")
    sync_account(default_account())
    job.refresh_from_db()

    outcome = job_services.tasks_retry(user=submitter, job=job, dry_run=True)

    assert job.task_failed == 2 and outcome.candidates == 1
