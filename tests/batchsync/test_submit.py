"""batchsync.submit against a real localbatch through the real SDK: one job, every task exactly once, whatever is
re-run, however often Batch answers 503; plain failures; the re-driver; the shipped example templates."""

import html
import re
from datetime import datetime, timedelta
from datetime import timezone as tz

import kombu.pools
import pytest
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContainerSasPermissions,
    generate_blob_sas,
    generate_container_sas,
)
from django.urls import reverse
from django.utils import timezone

from batchsync import submit
from batchsync.accounts import default_account
from batchsync.celery import app
from batchsync.gateway import BatchGateway, PoolSpec
from batchsync.sync import sync_jobs
from localbatch.server import Faults
from portal.models import Job, JobTemplate, JobTemplateVersion, Submission, SubmissionState
from portal.submit import limits, services
from portal.submit.render import job_spec
from portal.submit.values import InputFile
from tests.batchsync.test_sync import UBUNTU
from tests.localbatch.helpers import wait_for

pytestmark = pytest.mark.django_db

POOL = "demo-pool"


@pytest.fixture
def gateway(batch):
    with BatchGateway(batch.endpoint, batch.account_name, batch.account_key) as gateway:
        yield gateway


@pytest.fixture
def idle_pool(gateway):
    """The examples' pool with no nodes: tasks wait, so the job stays active whatever the test re-runs."""
    gateway.create_pool(PoolSpec(id=POOL, vm_size="standard_d2s_v3", image=UBUNTU))
    return POOL


@pytest.fixture
def running_pool(gateway):
    gateway.create_pool(PoolSpec(id=POOL, vm_size="standard_d2s_v3", image=UBUNTU, target_dedicated_nodes=2,
                                 task_slots_per_node=4))
    wait_for(lambda: [n for n in gateway.list_nodes(POOL) if n.state == "idle"].__len__() == 2, timeout=30,
             message="two idle nodes")
    return POOL


@pytest.fixture
def eager():
    """What submit enqueues (retries, hand-overs, re-drives) runs at once in this process, as a worker would."""
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = False, False


def frames_version(spec_changes=None):
    template = JobTemplate.objects.get(slug="render-frames")
    version = template.current_version()
    if spec_changes:
        version = JobTemplateVersion.objects.create(template=template, number=version.number + 1,
                                                    spec={**version.spec, **spec_changes})
    return version


def create(user, frames, seconds="0", version=None) -> Submission:
    return services.submission_create(user=user, template_version=version or frames_version(),
                                      parameters={"frames": str(frames), "seconds_per_frame": seconds})


def run_to_the_end(submission: Submission, timeout: float = 60) -> Submission:
    """Run the submission as the worker and re-driver would, waiting out retries, until it is final."""
    def step():
        submission.refresh_from_db()
        if submission.is_final:
            return True
        if submission.next_attempt_at is None or submission.next_attempt_at <= timezone.now():
            submit.submit_submission(submission.pk)
        return False

    wait_for(step, timeout=timeout, interval=0.2, message=f"submission {submission.job_id} to end")
    submission.refresh_from_db()
    return submission


def jobs_in_batch(gateway):
    return [job.id for job in gateway.list_jobs()]


def task_ids_in_batch(gateway, job_id):
    return [task.id for task in gateway.list_tasks(job_id)]


def expected_ids(count):
    return [f"t{n:05d}" for n in range(1, count + 1)]


# --- the pipeline -----------------------------------------------------------------------------------------


def test_a_submission_becomes_one_job_whose_tasks_all_run_once_and_which_then_ends(gateway, running_pool, user):
    submission = create(user, 12)

    assert submit.submit_submission(submission.pk) == SubmissionState.SUBMITTED

    submission.refresh_from_db()
    assert (submission.state, submission.tasks_added, submission.total_tasks) == ("submitted", 12, 12)
    assert submission.submitted_at is not None and submission.error_message == ""
    assert jobs_in_batch(gateway) == [submission.job_id]
    assert sorted(task_ids_in_batch(gateway, submission.job_id)) == expected_ids(12)
    job = wait_for(lambda: (j := gateway.get_job(submission.job_id)).state == "completed" and j, timeout=60,
                   message="the job to end by itself")
    assert job.terminate_reason == "AllTasksComplete" and job.pool_id == POOL
    counts = gateway.get_task_counts(submission.job_id)
    assert (counts.completed, counts.succeeded) == (12, 12)
    stdout = gateway.read_task_file(submission.job_id, "t00007", "stdout.txt").decode()
    assert stdout == "rendering frame 7\nframe 7 done\n"


def test_the_job_waits_with_noaction_until_every_task_is_added(batch, gateway, idle_pool, user, settings):
    settings.SUBMISSION_CHUNK_BUDGET_SECONDS = 1
    submission = create(user, 250)
    # Batch accepts the job but no tasks: a job created with terminatejob would now end at once, with no tasks.
    batch.app.faults = Faults(rate=1.0, status=503, retry_after=0, path_pattern="addtaskcollection")
    try:
        assert submit.submit_submission(submission.pk) == SubmissionState.ADDING_TASKS
        job = gateway.get_job(submission.job_id)
        assert (job.state, job.on_all_tasks_complete) == ("active", "noaction")
        assert task_ids_in_batch(gateway, submission.job_id) == []
    finally:
        batch.app.faults = Faults()

    Submission.objects.filter(pk=submission.pk).update(next_attempt_at=timezone.now())
    assert run_to_the_end(submission).state == SubmissionState.SUBMITTED
    assert gateway.get_job(submission.job_id).on_all_tasks_complete == "terminatejob"


@pytest.mark.parametrize("state, tasks_added", [
    (SubmissionState.PENDING, 0),
    (SubmissionState.CREATING_JOB, 0),
    (SubmissionState.ADDING_TASKS, 0),
    (SubmissionState.ADDING_TASKS, 100),
    (SubmissionState.ADDING_TASKS, 200),
    (SubmissionState.FINALIZING, 250),
])
def test_re_running_any_step_is_harmless(gateway, idle_pool, user, settings, state, tasks_added):
    settings.SUBMISSION_CHUNK_SIZE = 100
    submission = create(user, 250)
    assert submit.submit_submission(submission.pk) == SubmissionState.SUBMITTED

    # As if the worker had died right after this step reached Batch but before the row recorded the next one.
    Submission.objects.filter(pk=submission.pk).update(state=state, tasks_added=tasks_added, lease_expires_at=None)
    assert submit.submit_submission(submission.pk) == SubmissionState.SUBMITTED
    assert submit.submit_submission(submission.pk) is None, "a final submission is left alone"

    submission.refresh_from_db()
    assert (submission.state, submission.tasks_added) == ("submitted", 250)
    assert jobs_in_batch(gateway) == [submission.job_id]
    ids = task_ids_in_batch(gateway, submission.job_id)
    assert sorted(ids) == expected_ids(250) and len(ids) == len(set(ids))


def test_a_run_out_of_time_stops_at_a_chunk_boundary_and_fresh_runs_carry_on(gateway, idle_pool, user, settings,
                                                                              eager, monkeypatch):
    settings.SUBMISSION_CHUNK_SIZE = 100
    monkeypatch.setattr(submit, "RUN_BUDGET_SECONDS", 0)   # every run stops after its first chunk
    submission = create(user, 450)

    assert submit.submit_submission(submission.pk) == SubmissionState.ADDING_TASKS, "this run handed over"

    submission.refresh_from_db()
    # 100, 200, 300, 400, then the last 50 and the finishing steps: one run each.
    assert (submission.state, submission.tasks_added, submission.attempts) == ("submitted", 450, 5)
    ids = task_ids_in_batch(gateway, submission.job_id)
    assert sorted(ids) == expected_ids(450) and len(ids) == len(set(ids))


def test_with_a_fifth_of_batch_calls_answered_503_there_is_still_one_job_and_every_task_once(
        batch, gateway, idle_pool, user, settings):
    settings.SUBMISSION_CHUNK_SIZE = 300
    submissions = [create(user, 1000), create(user, 7)]
    batch.app.faults = Faults(rate=0.2, status=503, retry_after=0)
    try:
        for submission in submissions:
            run_to_the_end(submission)
    finally:
        batch.app.faults = Faults()

    for submission in submissions:
        assert submission.state == SubmissionState.SUBMITTED, submission.error_message
    assert sorted(jobs_in_batch(gateway)) == sorted(s.job_id for s in submissions)
    for submission in submissions:
        ids = task_ids_in_batch(gateway, submission.job_id)
        assert sorted(ids) == expected_ids(submission.total_tasks) and len(ids) == len(set(ids))
        assert gateway.get_job(submission.job_id).on_all_tasks_complete == "terminatejob"


def test_while_batch_is_unreachable_the_submission_waits_for_its_retry_and_says_why(batch, idle_pool, user):
    submission = create(user, 3)
    batch.app.faults = Faults(rate=1.0, status=503, retry_after=0)
    try:
        assert submit.submit_submission(submission.pk) == SubmissionState.CREATING_JOB
        submission.refresh_from_db()
        assert submission.next_attempt_at > timezone.now() and submission.lease_expires_at is None
        assert "Batch is busy or could not be reached; trying again shortly" in submission.error_message
        assert submit.submit_submission(submission.pk) is None, "not before its retry is due"
    finally:
        batch.app.faults = Faults()

    Submission.objects.filter(pk=submission.pk).update(next_attempt_at=timezone.now())
    assert run_to_the_end(submission).state == SubmissionState.SUBMITTED
    assert submission.error_message == ""


def test_when_the_retry_budget_is_spent_the_submission_fails_in_plain_words(batch, gateway, idle_pool, user):
    submission = create(user, 3)
    Submission.objects.filter(pk=submission.pk).update(attempts=submit.MAX_ATTEMPTS - 1)
    batch.app.faults = Faults(rate=1.0, status=503, retry_after=0)
    try:
        assert submit.submit_submission(submission.pk) == SubmissionState.FAILED
    finally:
        batch.app.faults = Faults()

    submission.refresh_from_db()
    assert submission.error_message.startswith("Batch could not be reached for a long time (15 attempts); "
                                               "0 of 3 tasks added.")


def test_a_pending_submission_whose_attempts_are_spent_fails_without_creating_or_stopping_a_job(gateway, idle_pool,
                                                                                                 user):
    submission = create(user, 3)
    Submission.objects.filter(pk=submission.pk).update(attempts=submit.MAX_ATTEMPTS)

    assert submit.submit_submission(submission.pk) == SubmissionState.FAILED

    submission.refresh_from_db()
    assert submission.error_message == ("Batch could not be reached for a long time (15 attempts); "
                                        "0 of 3 tasks added.")
    assert jobs_in_batch(gateway) == []


def test_when_batch_refuses_the_first_tasks_of_a_job_it_just_created_the_job_is_owned_stopped_and_said_so(
        batch, gateway, idle_pool, submitter, team_a):
    # The job is created while the first tasks are expanded, and its owner and the adding state are written as
    # those tasks' requests leave: a refusal of them must find the submission adding, not still creating its job.
    submission = create(submitter, 250)
    batch.app.faults = Faults(rate=1.0, status=400, path_pattern="addtaskcollection")
    try:
        assert submit.submit_submission(submission.pk) == SubmissionState.FAILED
    finally:
        batch.app.faults = Faults()

    submission.refresh_from_db()
    assert submission.error_message.startswith("Batch refused the submission: ")
    assert f"The job {submission.job_id} was stopped, so none of it runs" in submission.error_message
    job = gateway.get_job(submission.job_id)
    assert job.state in ("terminating", "completed") and job.terminate_reason == submit.FAILED_TERMINATE_REASON
    mirrored = Job.objects.get(job_id=submission.job_id)
    assert (mirrored.submitted_by, mirrored.team) == (submitter, team_a)


def test_a_task_over_1_mb_fails_the_submission_with_a_clear_message_and_stops_the_job(gateway, idle_pool, user,
                                                                                      monkeypatch):
    version = frames_version({"parameters": [
        {"name": "frames", "type": "integer", "max": 10},
        {"name": "seconds_per_frame", "type": "string", "max_length": 2_000_000}]})
    # The preview refuses such a task (portal/submit/limits.py); this is Batch's own refusal, for what the preview
    # cannot foresee, so that check is widened here.
    monkeypatch.setattr(limits, "COMMAND_LINE_MAX_CHARS", 10**9)
    monkeypatch.setattr(limits, "TASK_MAX_BYTES", 10**9)
    submission = create(user, 3, seconds="9" * 1_100_000, version=version)

    assert submit.submit_submission(submission.pk) == SubmissionState.FAILED

    submission.refresh_from_db()
    assert submission.error_message.startswith("Task t00001 is too large for Batch: one task may be at most 1 MB")
    assert f"The job {submission.job_id} was stopped, so none of it runs" in submission.error_message
    job = gateway.get_job(submission.job_id)
    assert job.state in ("terminating", "completed") and job.terminate_reason == submit.FAILED_TERMINATE_REASON


def test_a_job_batch_refuses_to_create_fails_the_submission_and_names_the_template(gateway, user, client):
    submission = create(user, 2)
    # An id Batch refuses stands for any job Batch will not take (a bad auto-pool spec, a quota).
    Submission.objects.filter(pk=submission.pk).update(job_id="bad id with spaces")

    assert submit.submit_submission(submission.pk) == SubmissionState.FAILED

    submission.refresh_from_db()
    assert submission.error_message.startswith("Batch refused to create the job:")
    # What Batch refused, from its error's values: the property and the value.
    assert "id = 'bad id with spaces'" in submission.error_message
    assert "“Render frames 1..N”" in submission.error_message
    client.force_login(user)
    page = html.unescape(client.get(reverse("submission_detail", args=[submission.public_id])).content.decode())
    assert "Batch refused to create the job: " in page and "id = 'bad id with spaces'" in page
    assert jobs_in_batch(gateway) == []
    assert not Job.objects.exists(), "no job, so no row for one"


def test_a_job_deleted_before_its_tasks_were_added_fails_the_submission(gateway, idle_pool, user):
    submission = create(user, 5)
    Submission.objects.filter(pk=submission.pk).update(state=SubmissionState.ADDING_TASKS)

    assert submit.submit_submission(submission.pk) == SubmissionState.FAILED

    submission.refresh_from_db()
    assert "was ended or deleted in Batch before all its tasks were added (0 of 5 tasks added)" in (
        submission.error_message)


def test_submission_create_sends_it_through_celery_once_committed(gateway, idle_pool, user, eager,
                                                                 django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        submission = create(user, 5)

    submission.refresh_from_db()
    assert submission.state == SubmissionState.SUBMITTED and submission.attempts == 1
    assert sorted(task_ids_in_batch(gateway, submission.job_id)) == expected_ids(5)


def test_a_broker_that_cannot_be_reached_does_not_lose_the_submission(gateway, idle_pool, user, caplog,
                                                                       django_capture_on_commit_callbacks):
    previous = app.conf.broker_url, app.conf.broker_connection_retry, app.conf.broker_connection_max_retries
    app.conf.broker_url = "redis://127.0.0.1:9/0"   # the discard port: nothing answers
    app.conf.broker_connection_retry, app.conf.broker_connection_max_retries = False, 0
    kombu.pools.reset()
    app._pool, app.amqp._producer_pool = None, None
    try:
        with django_capture_on_commit_callbacks(execute=True):
            submission = create(user, 3)   # the enqueue fails after the commit; no error reaches the person
    finally:
        app.conf.broker_url, app.conf.broker_connection_retry, app.conf.broker_connection_max_retries = previous
        kombu.pools.reset()
        app._pool, app.amqp._producer_pool = None, None

    submission.refresh_from_db()
    assert submission.state == SubmissionState.PENDING
    assert f"could not enqueue submission {submission.pk}; the re-driver will pick it up" in caplog.text
    # The re-driver finds it once it has been quiet for a while, and the pipeline does the rest.
    Submission.objects.filter(pk=submission.pk).update(updated_at=timezone.now() - timedelta(minutes=1))
    app.conf.task_always_eager = True
    try:
        assert submit.redrive_submissions() == [submission.pk]
    finally:
        app.conf.task_always_eager = False
    submission.refresh_from_db()
    assert submission.state == SubmissionState.SUBMITTED


def test_stdout_and_stderr_are_saved_to_the_logs_container(gateway, running_pool, user, azurite, settings):
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = service.create_container("task-logs")
    sas = generate_container_sas(azurite.account_name, "task-logs", account_key=azurite.account_key,
                                 permission=ContainerSasPermissions(read=True, write=True, create=True),
                                 expiry=datetime.now(tz.utc) + timedelta(hours=1))
    settings.SUBMISSION_LOGS_CONTAINER_URL = f"{container.url}?{sas}"
    submission = create(user, 2)

    assert submit.submit_submission(submission.pk) == SubmissionState.SUBMITTED
    wait_for(lambda: gateway.get_job(submission.job_id).state == "completed", timeout=60, message="the job to end")

    names = sorted(blob.name for blob in container.list_blobs())
    assert names == [f"{submission.job_id}/t0000{n}/logs/{kind}.txt" for n in (1, 2) for kind in ("stderr", "stdout")]
    saved = container.download_blob(f"{submission.job_id}/t00002/logs/stdout.txt").readall().decode()
    assert saved == "rendering frame 2\nframe 2 done\n"


# --- the re-driver ----------------------------------------------------------------------------------------


def test_the_re_driver_finishes_a_submission_stuck_in_adding_tasks(gateway, idle_pool, user, settings, eager):
    settings.SUBMISSION_CHUNK_SIZE = 100
    stuck = create(user, 300)
    # A worker created the job, added 150 tasks (the last chunk only half-way) and recorded 100, then died
    # holding its lease.
    gateway.create_job(job_spec(stuck.template_version.parsed, job_id=stuck.job_id, display_name="x"))
    gateway.add_tasks(stuck.job_id, list(submit.expand(stuck))[:150])
    long_ago = timezone.now() - timedelta(minutes=10)
    Submission.objects.filter(pk=stuck.pk).update(state=SubmissionState.ADDING_TASKS, tasks_added=100,
                                                  lease_expires_at=long_ago, updated_at=long_ago, attempts=1)
    # Neither of these is the re-driver's: one is held by a live run, the other waits for its retry.
    held, waiting = create(user, 2), create(user, 2)
    Submission.objects.filter(pk=held.pk).update(lease_expires_at=timezone.now() + timedelta(minutes=5),
                                                 updated_at=long_ago)
    Submission.objects.filter(pk=waiting.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=5))

    assert submit.redrive_submissions() == [stuck.pk]

    stuck.refresh_from_db()
    assert (stuck.state, stuck.tasks_added, stuck.attempts) == ("submitted", 300, 2)
    ids = task_ids_in_batch(gateway, stuck.job_id)
    assert sorted(ids) == expected_ids(300) and len(ids) == len(set(ids))
    assert jobs_in_batch(gateway) == [stuck.job_id]
    assert submit.redrive_submissions() == [], "nothing else is due: the fresh ones are not stale yet"


def test_the_re_driver_picks_up_a_pending_submission_whose_message_was_lost(gateway, idle_pool, user, eager):
    submission = create(user, 4)   # on_commit never fires in this test's transaction: the doorbell is lost
    assert submit.redrive_submissions() == [], "not before it has been quiet for a while"

    Submission.objects.filter(pk=submission.pk).update(updated_at=timezone.now() - timedelta(minutes=1))
    assert submit.redrive_submissions() == [submission.pk]

    submission.refresh_from_db()
    assert submission.state == SubmissionState.SUBMITTED
    assert sorted(task_ids_in_batch(gateway, submission.job_id)) == expected_ids(4)


def test_the_job_is_its_submitters_before_any_sync_and_they_can_terminate_it_at_once(gateway, idle_pool, submitter,
                                                                                        team_a, client):
    submission = create(submitter, 3)

    assert submit.submit_submission(submission.pk) == SubmissionState.SUBMITTED

    job = Job.objects.get(job_id=submission.job_id)
    assert job.last_synced_at is None, "no sync pass has run: the submit driver made the row"
    assert (job.submitted_by, job.team) == (submitter, team_a)
    client.force_login(submitter)
    page = client.get(reverse("job_detail", args=[job.pk])).content.decode()
    assert re.search(r"<dt>Submitted by</dt><dd>sue-submitter</dd>", page)
    assert reverse("job_terminate", args=[job.pk]) in page

    response = client.post(reverse("job_terminate", args=[job.pk]), {"reason": "submitted by mistake"})

    assert response.status_code == 302
    ended = wait_for(lambda: (j := gateway.get_job(submission.job_id)).state == "completed" and j, timeout=30,
                     message="the job to end")
    assert ended.terminate_reason == "submitted by mistake"


def test_the_sync_fills_the_row_the_submit_driver_made_and_keeps_its_owner(gateway, idle_pool, submitter, team_a):
    submission = create(submitter, 2)
    submit.submit_submission(submission.pk)

    sync_jobs(default_account())

    job = Job.objects.get(job_id=submission.job_id)
    assert (job.state, job.pool_id, job.submitted_by, job.team) == ("active", POOL, submitter, team_a)
    assert job.display_name.startswith("Render frames 1..N")
    assert submit.link_submitted_jobs() == 0, "nothing was left to link"


def test_a_job_mirrored_without_its_owner_is_linked_by_the_periodic_step(gateway, idle_pool, user):
    submission = create(user, 2)
    submit.submit_submission(submission.pk)
    # As a job sent before the submit driver recorded its owner would be.
    Job.objects.filter(job_id=submission.job_id).update(submitted_by=None, team=None)
    sync_jobs(default_account())

    assert submit.link_submitted_jobs() == 1
    assert Job.objects.get(job_id=submission.job_id).submitted_by == user


def test_an_auto_pool_template_submits_its_pool_appears_the_job_completes_and_the_pool_goes(gateway, user):
    image = {"publisher": UBUNTU.publisher, "offer": UBUNTU.offer, "sku": UBUNTU.sku,
             "node_agent_sku_id": UBUNTU.node_agent_sku_id}
    version = frames_version({"pool": {"auto_pool": {"vm_size": "standard_d2s_v3", "node_count": 1, "image": image,
                                                     "task_slots_per_node": 4}}})
    submission = create(user, 3, seconds="4", version=version)   # long enough to see the pool while they run

    assert submit.submit_submission(submission.pk) == SubmissionState.SUBMITTED

    pool_id = gateway.get_job(submission.job_id).pool_id
    # Batch names the pool after the prefix it was given: the job id's first 20 characters.
    assert pool_id.startswith(submission.job_id[:20]) and pool_id in [pool.id for pool in gateway.list_pools()]
    ended = wait_for(lambda: (j := gateway.get_job(submission.job_id)).state == "completed" and j, timeout=60,
                     message="the job to end by itself")
    assert ended.terminate_reason == "AllTasksComplete"
    counts = gateway.get_task_counts(submission.job_id)
    assert (counts.completed, counts.succeeded) == (3, 3)
    wait_for(lambda: pool_id not in [pool.id for pool in gateway.list_pools()], timeout=60,
             message="the job's own pool to be deleted with it")


# --- the shipped examples ------------------------------------------------------------------------------------


def run_example(gateway, submission) -> dict[str, str]:
    assert submit.submit_submission(submission.pk) == SubmissionState.SUBMITTED
    wait_for(lambda: gateway.get_job(submission.job_id).state == "completed", timeout=60,
             message="the example's job to end")
    outputs = {}
    for task in gateway.list_tasks(submission.job_id):
        assert task.exit_code == 0, (task.id, task.failure_message)
        outputs[task.id] = gateway.read_task_file(submission.job_id, task.id, "stdout.txt").decode()
    return outputs


def test_the_python_script_example_runs_with_its_parameters(gateway, running_pool, user):
    version = JobTemplate.objects.get(slug="python-script").current_version()
    submission = services.submission_create(user=user, template_version=version,
                                            parameters={"count": "2", "mode": "thorough", "label": "it's $(x)"})

    assert run_example(gateway, submission) == {
        "t00001": "it's $(x): step 1 of 2 (thorough)\nit's $(x): step 2 of 2 (thorough)\n"}


def test_the_count_words_example_counts_each_uploaded_file(gateway, running_pool, user, azurite):
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = service.create_container("inputs")
    files = []
    for name, text in [("one.txt", "a b c"), ("two words.txt", "hello world\n")]:
        container.upload_blob(name, text.encode())
        sas = generate_blob_sas(azurite.account_name, "inputs", name, account_key=azurite.account_key,
                                permission=BlobSasPermissions(read=True),
                                expiry=datetime.now(tz.utc) + timedelta(hours=1))
        url = f"{container.get_blob_client(name).url}?{sas}"
        files.append(InputFile(name=name, url=url, size=len(text)))
    version = JobTemplate.objects.get(slug="count-words").current_version()
    submission = services.submission_create(user=user, template_version=version, parameters={},
                                            uploaded_files={"texts": files})

    assert run_example(gateway, submission) == {"t00001": "3 inputs/one.txt\n", "t00002": "2 inputs/two words.txt\n"}
