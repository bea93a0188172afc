"""Terminating jobs and tasks, deleting tasks and retrying failed tasks from the portal, against localbatch through
the real SDK; what Batch did is read back from Batch, and the pages from the mirror after a real sync.

Personas (tests/personas.py): the owner of the job (`submitter`), an Operator in the owner's team (`operator_a`),
a Viewer, an Operator of another team (`operator_b`) and anonymous."""

import re

import pytest
from django.test import Client
from django.urls import NoReverseMatch, reverse

from batchsync.accounts import default_account
from batchsync.sync import reconcile_job_tasks, sync_account
from localbatch.server import Faults
from portal.actions import ActionError
from portal.jobs import services as job_services
from portal.models import AuditEvent, Job, JobTemplate, Submission, Task
from portal.submit import services as submit_services
from tests.localbatch.helpers import make_job, make_pool, sh, task, wait_for
from tests.personas import client_for

pytestmark = pytest.mark.django_db

POOL = "pool-1"
REASON = "wrong input file"


# --- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture
def pool(batch, batch_client):
    return make_pool(batch_client, POOL, nodes=1, slots=8)


def synced_job(job_id: str, owner, team=None) -> Job:
    """Sync the account as the worker does, then record who submitted the job, as the submission link does."""
    sync_account(default_account())
    Job.objects.filter(job_id=job_id).update(submitted_by=owner, team=team)
    return Job.objects.select_related("account").get(job_id=job_id)


def mirrored_task(job: Job, task_id: str) -> Task:
    return Task.objects.select_related("job", "job__account").get(job=job, task_id=task_id)


def batch_task_state(batch_client, job_id: str, task_id: str) -> str:
    return batch_client.get_task(job_id, task_id).state


def running(batch_client, job_id: str, task_id: str):
    wait_for(lambda: batch_task_state(batch_client, job_id, task_id) == "running", message=f"{task_id} running")


def text(response) -> str:
    return response.content.decode()


@pytest.fixture
def busy_job(pool, batch_client, submitter, team_a):
    """A job (left open: onAllTasksComplete noaction) with one task running for a minute."""
    make_job(batch_client, "busy", POOL)
    batch_client.create_task("busy", task("long", sh("sleep 60")))
    running(batch_client, "busy", "long")
    return synced_job("busy", submitter, team_a)


@pytest.fixture
def failed_job(pool, batch_client, submitter, team_a, tmp_path):
    """A job (left open: onAllTasksComplete noaction) whose tasks f1..f3 failed because a file was missing and whose
    task ok succeeded. Each run of a task appends a line to runs-<id>; creating `fixed` makes them succeed."""
    make_job(batch_client, "failing", POOL)
    for task_id in ("f1", "f2", "f3"):
        batch_client.create_task("failing", task(task_id, sh(
            f"echo run >> {tmp_path}/runs-{task_id}; test -f {tmp_path}/fixed")))
    batch_client.create_task("failing", task("ok", sh("true")))
    for task_id in ("f1", "f2", "f3", "ok"):
        wait_for(lambda t=task_id: batch_task_state(batch_client, "failing", t) == "completed",
                 message=f"{task_id} completed")
    job = synced_job("failing", submitter, team_a)
    assert job.task_failed == 3
    return job


def runs(tmp_path, task_id: str) -> int:
    path = tmp_path / f"runs-{task_id}"
    return len(path.read_text().splitlines()) if path.exists() else 0


# --- who may act --------------------------------------------------------------------------------------------


def action_urls(job: Job, task_obj: Task) -> list[str]:
    return [reverse("job_terminate", args=[job.pk]), reverse("job_retry_failed", args=[job.pk]),
            reverse("task_terminate", args=[task_obj.pk]), reverse("task_delete", args=[task_obj.pk])]


def test_anonymous_is_sent_to_login(busy_job, client):
    for url in action_urls(busy_job, mirrored_task(busy_job, "long")):
        for response in (client.get(url), client.post(url, {"reason": REASON})):
            assert response.status_code == 302 and response.url.startswith(reverse("login"))


@pytest.mark.parametrize("who", ["viewer", "operator_b"])
def test_someone_who_may_not_act_gets_404_and_nothing_changes_in_batch(busy_job, batch_client, request, who):
    client = client_for(request.getfixturevalue(who))
    long_task = mirrored_task(busy_job, "long")

    answers = [(client.get(url).status_code, client.post(url, {"reason": REASON}).status_code)
               for url in action_urls(busy_job, long_task)]

    assert answers == [(404, 404)] * 4
    assert batch_client.get_job("busy").state == "active"
    assert batch_task_state(batch_client, "busy", "long") == "running"
    # The pages are still readable: 404 is about acting, not reading.
    assert client.get(reverse("job_detail", args=[busy_job.pk])).status_code == 200


def test_the_services_refuse_someone_who_may_not_act(busy_job, batch_client, viewer):
    long_task = mirrored_task(busy_job, "long")
    for call in (lambda: job_services.job_terminate(user=viewer, job=busy_job, reason=REASON),
                 lambda: job_services.task_terminate(user=viewer, task=long_task, reason=REASON),
                 lambda: job_services.task_delete(user=viewer, task=long_task, reason=REASON),
                 lambda: job_services.tasks_retry(user=viewer, job=busy_job, dry_run=True)):
        with pytest.raises(job_services.PermissionDenied):
            call()
    assert batch_task_state(batch_client, "busy", "long") == "running"


def test_an_operator_of_the_submitters_team_may_terminate(busy_job, batch_client, operator_a):
    outcome = job_services.job_terminate(user=operator_a, job=busy_job, reason=REASON)

    assert outcome.done
    wait_for(lambda: batch_client.get_job("busy").state == "completed", message="job completed")


def test_get_pages_show_what_would_happen_and_change_nothing(busy_job, failed_job, batch_client, submitter):
    client = client_for(submitter)
    long_task = mirrored_task(busy_job, "long")
    pages = [client.get(reverse("job_terminate", args=[busy_job.pk])),
             client.get(reverse("task_terminate", args=[long_task.pk])),
             client.get(reverse("task_delete", args=[long_task.pk])),
             client.get(reverse("job_retry_failed", args=[failed_job.pk]))]

    assert [page.status_code for page in pages] == [200] * 4
    assert "Terminate job" in text(pages[0]) and "Batch stops the task where it is running" in text(pages[1])
    assert "This retries 3 failed tasks." in text(pages[3])
    assert batch_client.get_job("busy").state == "active"
    assert batch_task_state(batch_client, "busy", "long") == "running"
    assert [batch_task_state(batch_client, "failing", t) for t in ("f1", "f2", "f3")] == ["completed"] * 3


def test_a_missing_reason_is_a_form_error_and_nothing_is_done(busy_job, batch_client, submitter):
    client = client_for(submitter)
    long_task = mirrored_task(busy_job, "long")

    for url in action_urls(busy_job, long_task)[:1] + action_urls(busy_job, long_task)[2:]:
        for data in ({}, {"reason": "   "}):
            response = client.post(url, data)
            assert response.status_code == 200
            assert "Say why, in a few words" in text(response)
            assert response.context["form"].errors["reason"]

    assert batch_client.get_job("busy").state == "active"
    assert batch_task_state(batch_client, "busy", "long") == "running"
    with pytest.raises(ActionError) as caught:
        job_services.job_terminate(user=submitter, job=busy_job, reason=" ")
    assert caught.value.field == "reason"


def test_posts_without_a_csrf_token_are_refused(busy_job, batch_client, submitter):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(submitter)

    response = strict.post(reverse("job_terminate", args=[busy_job.pk]), {"reason": REASON})

    assert response.status_code == 403
    assert batch_client.get_job("busy").state == "active"


def test_the_confirm_form_carries_the_token_that_lets_the_post_through(busy_job, batch_client, submitter):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(submitter)
    page = text(strict.get(reverse("job_terminate", args=[busy_job.pk])))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)

    response = strict.post(reverse("job_terminate", args=[busy_job.pk]),
                           {"reason": REASON, "csrfmiddlewaretoken": token})

    assert response.status_code == 302
    assert batch_client.get_job("busy").state in ("terminating", "completed")


# --- terminate a job ------------------------------------------------------------------------------------------


def test_terminating_a_running_job_stops_it_and_the_page_shows_it_after_a_sync(busy_job, batch_client, submitter):
    client = client_for(submitter)

    response = client.post(reverse("job_terminate", args=[busy_job.pk]), {"reason": REASON}, follow=True)

    assert response.redirect_chain == [(reverse("job_detail", args=[busy_job.pk]), 302)]
    assert "Batch is terminating the job “busy”" in text(response)
    job = wait_for(lambda: (j := batch_client.get_job("busy")).state == "completed" and j, message="job completed")
    assert job.execution_info.termination_reason == REASON
    assert batch_task_state(batch_client, "busy", "long") == "completed"
    # The service wrote nothing to the mirror: the sync brings the change in.
    assert Job.objects.get(pk=busy_job.pk).state == "active"
    sync_account(default_account())
    mirrored = Job.objects.get(pk=busy_job.pk)
    assert (mirrored.state, mirrored.terminate_reason) == ("completed", REASON)
    page = text(client.get(reverse("job_detail", args=[busy_job.pk])))
    assert REASON in page
    assert reverse("job_terminate", args=[busy_job.pk]) not in page   # an ended job offers no terminate


def test_a_long_reason_reaches_batch_shortened_and_stays_whole_in_the_request(busy_job, batch_client, submitter):
    reason = "the input bucket was wrong " * 10

    job_services.job_terminate(user=submitter, job=busy_job, reason=reason)

    job = wait_for(lambda: (j := batch_client.get_job("busy")).state == "completed" and j, message="job completed")
    assert len(job.execution_info.termination_reason) == 64
    assert job.execution_info.termination_reason.endswith("…")


def test_terminating_a_job_that_already_ended_says_so(busy_job, batch_client, submitter):
    job_services.job_terminate(user=submitter, job=busy_job, reason=REASON)
    wait_for(lambda: batch_client.get_job("busy").state == "completed", message="job completed")

    # The mirror still says active (no sync yet): Batch has the last word.
    outcome = job_services.job_terminate(user=submitter, job=busy_job, reason=REASON)

    assert not outcome.done
    assert outcome.message == "The job “busy” had already ended, so there was nothing to terminate."


# --- terminate and delete a task ------------------------------------------------------------------------------


def test_terminating_a_running_task_stops_it_and_the_job_carries_on(busy_job, batch_client, submitter):
    long_task = mirrored_task(busy_job, "long")

    response = client_for(submitter).post(reverse("task_terminate", args=[long_task.pk]), {"reason": REASON},
                                    follow=True)

    assert response.redirect_chain == [(reverse("task_detail", args=[long_task.pk]), 302)]
    assert "Batch is terminating the task “long”" in text(response)
    done = wait_for(lambda: (t := batch_client.get_task("busy", "long")).state == "completed" and t,
                    message="task completed")
    assert done.execution_info.result == "failure"
    assert batch_client.get_job("busy").state == "active"
    sync_account(default_account())
    assert Task.objects.get(pk=long_task.pk).state == "completed"
    page = text(client_for(submitter).get(reverse("task_detail", args=[long_task.pk])))
    assert reverse("task_terminate", args=[long_task.pk]) not in page


def test_terminating_a_task_that_completed_says_so(failed_job, submitter):
    outcome = job_services.task_terminate(user=submitter, task=mirrored_task(failed_job, "ok"), reason=REASON)

    assert not outcome.done and "had already completed" in outcome.message


def test_deleting_a_task_removes_it_from_batch_and_the_mirror_marks_it_gone(busy_job, batch_client, submitter):
    long_task = mirrored_task(busy_job, "long")

    response = client_for(submitter).post(reverse("task_delete", args=[long_task.pk]), {"reason": REASON}, follow=True)

    assert response.redirect_chain == [(reverse("job_detail", args=[busy_job.pk]), 302)]
    assert "Batch deleted the task “long”" in text(response)
    assert [t.id for t in batch_client.list_tasks("busy")] == []
    assert Task.objects.get(pk=long_task.pk).gone_at is None
    reconcile_job_tasks(Job.objects.get(pk=busy_job.pk))
    assert Task.objects.get(pk=long_task.pk).gone_at is not None
    # Gone from Batch: no more actions on it.
    assert client_for(submitter).get(reverse("task_delete", args=[long_task.pk])).status_code == 404


def test_deleting_a_task_batch_no_longer_has_says_so(busy_job, batch_client, submitter):
    long_task = mirrored_task(busy_job, "long")
    batch_client.delete_task("busy", "long")

    outcome = job_services.task_delete(user=submitter, task=long_task, reason=REASON)

    assert not outcome.done and "no longer had the task" in outcome.message


# --- retry failed tasks ---------------------------------------------------------------------------------------


def test_retrying_runs_the_failed_tasks_again(failed_job, batch_client, submitter, tmp_path):
    (tmp_path / "fixed").touch()

    response = client_for(submitter).post(reverse("job_retry_failed", args=[failed_job.pk]), follow=True)

    assert response.redirect_chain == [(reverse("job_detail", args=[failed_job.pk]), 302)]
    assert "Batch is running 3 failed tasks again." in text(response)
    for task_id in ("f1", "f2", "f3"):
        again = wait_for(lambda t=task_id: (x := batch_client.get_task("failing", t)).state == "completed"
                         and x.execution_info.result == "success" and x, message=f"{task_id} succeeded")
        assert again.execution_info.exit_code == 0
        assert runs(tmp_path, task_id) == 2
    assert runs(tmp_path, "ok") == 0   # a task that succeeded is left alone
    sync_account(default_account())
    assert Job.objects.get(pk=failed_job.pk).task_failed == 0
    assert not Task.objects.filter(job=failed_job, result="failure").exists()


def test_a_dry_run_counts_and_changes_nothing(failed_job, batch_client, submitter, tmp_path):
    before = {t: batch_client.get_task("failing", t).state_transition_time for t in ("f1", "f2", "f3")}

    outcome = job_services.tasks_retry(user=submitter, job=failed_job, dry_run=True)

    assert (outcome.dry_run, outcome.candidates, outcome.retried, outcome.limited) == (True, 3, 0, False)
    assert {t: batch_client.get_task("failing", t).state_transition_time for t in before} == before
    assert [runs(tmp_path, t) for t in ("f1", "f2", "f3")] == [1, 1, 1]


def test_retrying_listed_tasks_takes_only_the_failed_ones_among_them(failed_job, batch_client, submitter, tmp_path):
    # The failure triage page's call: explicit Batch task ids of one job.
    listed = ["f2", "ok", "no-such-task"]
    dry = job_services.tasks_retry(user=submitter, job=failed_job, task_ids=listed, dry_run=True)
    real = job_services.tasks_retry(user=submitter, job=failed_job, task_ids=listed, dry_run=False)

    assert (dry.candidates, dry.skipped) == (1, 2)
    assert (real.retried, real.skipped, real.not_retried) == (1, 2, 0)
    wait_for(lambda: runs(tmp_path, "f2") == 2, message="f2 ran again")
    assert [batch_task_state(batch_client, "failing", t) for t in ("f1", "f3")] == ["completed"] * 2
    assert [runs(tmp_path, t) for t in ("f1", "f3")] == [1, 1]


def test_a_task_retried_since_the_last_sync_is_skipped(failed_job, batch_client, submitter, tmp_path):
    (tmp_path / "fixed").touch()
    batch_client.reactivate_task("failing", "f1")   # elsewhere; the mirror still says failed
    wait_for(lambda: batch_client.get_task("failing", "f1").execution_info.result == "success",
             message="f1 succeeded on its own retry")

    outcome = job_services.tasks_retry(user=submitter, job=failed_job, dry_run=False)

    assert (outcome.candidates, outcome.retried, outcome.skipped, outcome.not_retried) == (3, 2, 1, 0)
    assert "1 was skipped because it is no longer failed" in outcome.message


def test_the_tasks_of_an_ended_outside_job_cannot_be_retried_and_the_page_says_why(failed_job, batch_client,
                                                                                    submitter):
    job_services.job_terminate(user=submitter, job=failed_job, reason=REASON)
    wait_for(lambda: batch_client.get_job("failing").state == "completed", message="job completed")

    # The mirror does not know yet: Batch refuses, and the person is told the same thing.
    with pytest.raises(ActionError) as before_sync:
        job_services.tasks_retry(user=submitter, job=failed_job, dry_run=False)
    sync_account(default_account())
    page = client_for(submitter).get(reverse("job_retry_failed", args=[failed_job.pk]))

    assert "not submitted through the portal" in before_sync.value.message
    assert "retrying is not possible" in before_sync.value.message
    assert "has ended, and Batch cannot run the tasks of an ended job again" in text(page)
    assert "It was not submitted through the portal" in text(page)
    job_page = text(client_for(submitter).get(reverse("job_detail", args=[failed_job.pk])))
    assert "Retry not possible: this job was not submitted through the portal" in job_page
    assert reverse("job_retry_failed", args=[failed_job.pk]) not in job_page
    assert f'action="{reverse("job_retry_failed", args=[failed_job.pk])}"' not in text(page)
    assert batch_task_state(batch_client, "failing", "f1") == "completed"


def test_retry_is_bounded(failed_job, submitter, monkeypatch):
    monkeypatch.setattr(job_services, "MAX_RETRY_TASKS", 2)

    outcome = job_services.tasks_retry(user=submitter, job=failed_job, dry_run=True)

    assert (outcome.candidates, outcome.limited) == (2, True)
    assert "as many as one retry takes (2)" in outcome.message


def test_while_batch_is_busy_the_retry_reports_what_it_could_not_do(batch, failed_job, batch_client, submitter,
                                                                     monkeypatch):
    monkeypatch.setattr(job_services, "RETRY_BUDGET_SECONDS", 1.0)
    batch.app.faults = Faults(rate=1.0, status=503, retry_after=0, path_pattern="/reactivate$")
    try:
        outcome = job_services.tasks_retry(user=submitter, job=failed_job, dry_run=False)
    finally:
        batch.app.faults = Faults()

    assert (outcome.retried, outcome.not_retried) == (0, 3)
    assert "3 could not be retried because Batch was busy; retry again in a minute." in outcome.message
    assert [batch_task_state(batch_client, "failing", t) for t in ("f1", "f2", "f3")] == ["completed"] * 3


# --- the buttons ----------------------------------------------------------------------------------------------


def test_the_owner_sees_the_buttons_the_state_allows(busy_job, failed_job, submitter):
    client = client_for(submitter)
    busy_page = text(client.get(reverse("job_detail", args=[busy_job.pk])))
    failed_page = text(client.get(reverse("job_detail", args=[failed_job.pk])))
    running_task = text(client.get(reverse("task_detail", args=[mirrored_task(busy_job, "long").pk])))
    done_task = text(client.get(reverse("task_detail", args=[mirrored_task(failed_job, "f1").pk])))

    assert f'href="{reverse("job_terminate", args=[busy_job.pk])}"' in busy_page
    assert reverse("job_retry_failed", args=[busy_job.pk]) not in busy_page        # nothing failed
    assert f'href="{reverse("job_retry_failed", args=[failed_job.pk])}"' in failed_page
    long_task, f1 = mirrored_task(busy_job, "long"), mirrored_task(failed_job, "f1")
    assert f'href="{reverse("task_terminate", args=[long_task.pk])}"' in running_task
    assert f'href="{reverse("task_delete", args=[long_task.pk])}"' in running_task
    assert reverse("task_terminate", args=[f1.pk]) not in done_task                 # completed already
    assert f'href="{reverse("task_delete", args=[f1.pk])}"' in done_task


def test_others_see_no_buttons(busy_job, viewer):
    client = client_for(viewer)
    long_task = mirrored_task(busy_job, "long")

    job_page = text(client.get(reverse("job_detail", args=[busy_job.pk])))
    task_page = text(client.get(reverse("task_detail", args=[long_task.pk])))

    assert reverse("job_terminate", args=[busy_job.pk]) not in job_page
    assert reverse("task_terminate", args=[long_task.pk]) not in task_page
    assert reverse("task_delete", args=[long_task.pk]) not in task_page


def test_a_job_from_a_submission_offers_a_re_run_once_the_form_exists(pool, batch_client, submitter, team_a):
    template = JobTemplate.objects.get(slug="render-frames")
    submission = submit_services.submission_create(user=submitter, template_version=template.current_version(),
                                                   parameters={"frames": "2", "seconds_per_frame": "0"})
    make_job(batch_client, submission.job_id, POOL)   # as the submit worker would
    job = synced_job(submission.job_id, submitter, team_a)
    Submission.objects.filter(pk=submission.pk).update(team=team_a)

    page = text(client_for(submitter).get(reverse("job_detail", args=[job.pk])))

    try:
        expected = reverse("submit_form", args=["render-frames"]) + f"?rerun={submission.public_id}"
    except NoReverseMatch:   # the submission pages are another change; until then no button
        assert 'id="job-rerun"' not in page
    else:
        assert f'href="{expected}"' in page


# --- the audit history --------------------------------------------------------------------------------------


def test_each_action_done_is_recorded_with_who_and_why_and_nothing_else_is(busy_job, failed_job, submitter):
    client = client_for(submitter)
    long_task = mirrored_task(busy_job, "long")
    client.get(reverse("job_terminate", args=[busy_job.pk]))                       # looking
    client.post(reverse("task_terminate", args=[long_task.pk]), {"reason": ""})     # refused: no reason
    client.post(reverse("task_terminate", args=[long_task.pk]), {"reason": REASON})
    client.post(reverse("job_retry_failed", args=[failed_job.pk]))

    ours = AuditEvent.objects.filter(action__regex=r"^(job|task)\.").order_by("id")   # not sign-ins, role changes
    events = list(ours.values_list("action", "actor_name", "object_id", "reason"))
    assert [(action, actor, reason) for action, actor, _, reason in events] == [
        ("task.terminate", submitter.username, REASON), ("job.retry_failed", submitter.username, "")]
    retried = AuditEvent.objects.get(action="job.retry_failed")
    assert (retried.details["retried"], sorted(retried.details["task_ids"])) == (3, ["f1", "f2", "f3"])
