"""Completion e-mails: real submissions run on localbatch through the real SDK, the real sync mirrors them, and
batchsync.notify sends through Django's mail framework (pytest-django's in-memory outbox, or a real SMTP
connection that fails)."""

import re
import socket
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from batchsync import notify, submit
from batchsync import tasks as celery_tasks
from batchsync.accounts import default_account
from batchsync.celery import app
from batchsync.gateway import BatchGateway, PoolSpec
from batchsync.sync import sync_account
from portal.jobs import services as job_services
from portal.models import Job, JobTemplate, Submission, SubmissionState
from portal.submit import services as submit_services
from tests.batchsync.test_sync import UBUNTU
from tests.localbatch.helpers import wait_for

pytestmark = pytest.mark.django_db

POOL = "demo-pool"   # the example templates' pool
BASE_URL = "https://portal.example.org"


@pytest.fixture
def batch(localbatch, settings, monkeypatch):
    settings.BATCH_ACCOUNT_URL = localbatch.endpoint
    settings.BATCH_ACCOUNT_NAME = localbatch.account_name
    settings.BATCH_ACCOUNT_KEY = localbatch.account_key
    settings.PORTAL_BASE_URL = BASE_URL
    monkeypatch.delenv("BATCH_ACCOUNT_KEY", raising=False)
    return localbatch


@pytest.fixture
def gateway(batch):
    with BatchGateway(batch.endpoint, batch.account_name, batch.account_key) as gateway:
        yield gateway


@pytest.fixture
def running_pool(gateway):
    gateway.create_pool(PoolSpec(id=POOL, vm_size="standard_d2s_v3", image=UBUNTU, target_dedicated_nodes=1,
                                 task_slots_per_node=8))
    wait_for(lambda: [n.state for n in gateway.list_nodes(POOL)] == ["idle"], timeout=30, message="an idle node")
    return POOL


@pytest.fixture
def idle_pool(gateway):
    """No nodes: the job's tasks wait, so it stays unfinished."""
    gateway.create_pool(PoolSpec(id=POOL, vm_size="standard_d2s_v3", image=UBUNTU))
    return POOL


@pytest.fixture
def owner(submitter):
    """The submitter persona, with the address the e-mails go to."""
    submitter.email = "sue@example.org"
    submitter.save(update_fields=["email"])
    return submitter


def submitted(user, frames: int, seconds: str = "0") -> Submission:
    """A submission of the render-frames example, sent to Batch by the submit step machine as a worker would."""
    version = JobTemplate.objects.get(slug="render-frames").current_version()
    submission = submit_services.submission_create(user=user, template_version=version,
                                                   parameters={"frames": str(frames), "seconds_per_frame": seconds})
    assert submit.submit_submission(submission.pk) == SubmissionState.SUBMITTED
    return submission


def synced() -> None:
    """One pass of the sync and of the submitter link, as beat runs them."""
    sync_account(default_account())
    submit.link_submitted_jobs()


def ended(gateway, job_id: str):
    return wait_for(lambda: (j := gateway.get_job(job_id)).state == "completed" and j, timeout=60,
                    message=f"job {job_id} completed")


# --- finished jobs ------------------------------------------------------------------------------------------


def test_a_finished_job_is_announced_once_with_its_counts_and_a_link(gateway, running_pool, owner, mailoutbox):
    submission = submitted(owner, 3)
    ended(gateway, submission.job_id)
    synced()

    first, second = notify.notify_finished_jobs(), notify.notify_finished_jobs()

    assert (first, second) == (1, 0)
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    job = Job.objects.get(job_id=submission.job_id)
    assert mail.to == ["sue@example.org"]
    # The submission's name (here the default: the template's name and the date) names the job, its id beside.
    assert submission.name.startswith("Render frames 1..N ")
    assert mail.subject == f"Has finished: {submission.name} — 3 succeeded, 0 failed of 3"
    assert f"Your job “{submission.name}” has finished." in mail.body
    assert f"Batch job id: {submission.job_id}" in mail.body
    assert re.search(r"Succeeded: 3\nFailed: +0\nTotal: +3\n", mail.body)
    assert f"{BASE_URL}{reverse('job_detail', args=[job.pk])}" in mail.body
    assert submission.job_id in mail.body
    submission.refresh_from_db()
    assert submission.notified_at is not None


def test_an_unfinished_job_is_not_announced(gateway, idle_pool, owner, mailoutbox):
    submission = submitted(owner, 2)
    synced()
    assert Job.objects.get(job_id=submission.job_id).state == "active"

    assert notify.notify_finished_jobs() == 0

    assert mailoutbox == []
    submission.refresh_from_db()
    assert submission.notified_at is None


def test_a_job_finished_in_batch_but_not_yet_synced_waits_for_the_sync(gateway, running_pool, owner, mailoutbox):
    submission = submitted(owner, 1, seconds="5")
    synced()   # seen while still running
    assert Job.objects.get(job_id=submission.job_id).state == "active"
    ended(gateway, submission.job_id)

    assert notify.notify_finished_jobs() == 0
    synced()
    assert notify.notify_finished_jobs() == 1
    assert len(mailoutbox) == 1


def test_a_terminated_job_says_so_with_the_reason(gateway, running_pool, owner, mailoutbox):
    submission = submitted(owner, 2, seconds="60")
    synced()
    job = Job.objects.get(job_id=submission.job_id)
    job_services.job_terminate(user=owner, job=job, reason="wrong frames")
    ended(gateway, submission.job_id)
    synced()

    assert notify.notify_finished_jobs() == 1

    mail = mailoutbox[0]
    assert mail.subject.startswith(f"Was terminated: {submission.name}")
    assert "Reason given: wrong frames" in mail.body
    assert "Total:     2" in mail.body


def test_a_submission_that_failed_is_announced_with_its_error(gateway, owner, mailoutbox):
    version = JobTemplate.objects.get(slug="render-frames").current_version()
    submission = submit_services.submission_create(user=owner, template_version=version,
                                                   parameters={"frames": "2", "seconds_per_frame": "0"})
    # An id Batch refuses: the job is never made, the submission fails (as in test_submit).
    Submission.objects.filter(pk=submission.pk).update(job_id="bad id with spaces")
    assert submit.submit_submission(submission.pk) == SubmissionState.FAILED

    assert notify.notify_finished_jobs() == 1

    mail = mailoutbox[0]
    assert mail.subject.startswith(f"Could not be submitted: {submission.name}")
    assert "Batch refused to create the job:" in mail.body
    # No job was made: the link is to the submission's page, which holds the reason (it was the job list).
    link = f"{BASE_URL}{reverse('submission_detail', args=[submission.public_id])}"
    assert f"Open it in the portal: {link}\n" in mail.body


# --- exactly once, and never about old or unaddressable work ------------------------------------------------


def test_two_runs_holding_the_same_finished_submission_send_one_e_mail(gateway, running_pool, owner, mailoutbox):
    submission = submitted(owner, 1)
    ended(gateway, submission.job_id)
    synced()
    # Both runs found it before either claimed it: each holds its own stale copy.
    seen_by_first, seen_by_second = list(notify.finished_submissions()), list(notify.finished_submissions())

    results = [notify.notify_submission(seen_by_first[0]), notify.notify_submission(seen_by_second[0])]

    assert results == [True, False]
    assert len(mailoutbox) == 1


def test_the_mark_comes_first_so_an_e_mail_the_server_refused_is_not_sent_twice(gateway, running_pool, owner,
                                                                               mailoutbox, settings, caplog):
    submission = submitted(owner, 1)
    ended(gateway, submission.job_id)
    synced()
    with socket.socket() as closed:   # a port nothing listens on: the SMTP connection is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 2

    assert notify.notify_finished_jobs() == 0
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert notify.notify_finished_jobs() == 0

    assert mailoutbox == []
    submission.refresh_from_db()
    assert submission.notified_at is not None
    assert f"job {submission.job_id}" in caplog.text and "will not be retried" in caplog.text


def test_jobs_that_finished_long_ago_are_not_announced(gateway, running_pool, owner, mailoutbox):
    submission = submitted(owner, 1)
    ended(gateway, submission.job_id)
    synced()
    # As the mirror holds a job that finished before this feature was deployed.
    Job.objects.filter(job_id=submission.job_id).update(
        state_transition_time=timezone.now() - notify.FINISHED_WITHIN - timedelta(minutes=1))

    assert notify.notify_finished_jobs() == 0
    assert mailoutbox == []


def test_someone_without_an_e_mail_address_is_skipped(gateway, running_pool, owner, mailoutbox):
    owner.email = ""
    owner.save()
    submission = submitted(owner, 1)
    ended(gateway, submission.job_id)
    synced()

    assert notify.notify_finished_jobs() == 0
    assert mailoutbox == []


# --- the Celery side ------------------------------------------------------------------------------------------


def test_the_celery_task_sends_and_beat_runs_it(gateway, running_pool, owner, mailoutbox):
    submission = submitted(owner, 1)
    ended(gateway, submission.job_id)
    synced()

    task = celery_tasks.notify_finished_jobs_task
    assert task.name == "batchsync.notify_finished_jobs"   # the name beat and the workers know it by

    task()
    task()

    assert len(mailoutbox) == 1
    schedule = [entry for entry in app.conf.beat_schedule.values() if entry["task"] == task.name]
    assert len(schedule) == 1 and schedule[0]["schedule"] <= 60
