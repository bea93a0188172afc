"""Why is it waiting? Each reason built on localbatch through the real SDK, mirrored by a real sync, and its
sentence read back from the job and task pages (portal/jobs/waiting.py); dependencies shown both ways."""

import html
import re

import pytest
from azure.batch import BatchClient, models
from azure.core.credentials import AzureNamedKeyCredential
from django.urls import reverse

from batchsync.accounts import default_account
from batchsync.sync import sync_account
from localbatch.server import start
from portal.jobs import waiting
from portal.models import Job, JobTemplate, NodeState, Pool, Submission, SubmissionState, Task
from portal.submit import services
from tests.factories import JobFactory, NodeFactory, PoolFactory
from tests.localbatch.helpers import make_job, make_pool, sh, task, wait_for

pytestmark = pytest.mark.django_db

POOL = "render-pool"


def page_text(response) -> str:
    """The page's words, tags out and whitespace collapsed, as a person reads them."""
    assert response.status_code == 200, response.status_code
    words = re.sub(r"<[^>]+>", " ", response.content.decode())
    return re.sub(r"\s+", " ", html.unescape(words))


def synced(job_id: str) -> Job:
    sync_account(default_account())
    return Job.objects.get(job_id=job_id)


def job_page(client, job: Job) -> str:
    return page_text(client.get(reverse("job_detail", args=[job.pk])))


def task_page(client, job: Job, task_id: str) -> str:
    return page_text(client.get(reverse("task_detail", args=[Task.objects.get(job=job, task_id=task_id).pk])))


def batch_state(batch_client, job_id, task_id) -> str:
    return batch_client.get_task(job_id, task_id).state


# --- the pool -------------------------------------------------------------------------------------------------

def test_a_pool_without_nodes_says_so_and_who_can_resize_it(batch, batch_client, signed_in):
    make_pool(batch_client, POOL, nodes=0)
    make_job(batch_client, "frames", POOL)
    batch_client.create_task("frames", task("t1", "/bin/true"))

    page = job_page(signed_in, synced("frames"))

    assert "1 task waits: the pool render-pool has no nodes." in page
    assert "Who can: an Operator can resize render-pool." in page
    assert "Waiting: the pool render-pool has no nodes." in task_page(signed_in, Job.objects.get(job_id="frames"),
                                                                      "t1")


def test_a_deleted_pool_says_it_no_longer_exists(batch, batch_client, signed_in):
    make_pool(batch_client, POOL, nodes=0)
    make_job(batch_client, "frames", POOL)
    batch_client.create_task("frames", task("t1", "/bin/true"))
    batch_client.begin_delete_pool(POOL).result()
    wait_for(lambda: POOL not in {pool.id for pool in batch_client.list_pools()}, message="pool deleted")

    page = job_page(signed_in, synced("frames"))

    assert "1 task waits: the pool render-pool does not exist (any more), so nothing can run the tasks." in page
    assert "Who can: an Operator can create render-pool." in page


@pytest.fixture
def slow_batch(tmp_path, settings, monkeypatch):
    """A localbatch whose nodes take two minutes to start, like real ones take minutes."""
    running = start(str(tmp_path / "slow"), node_start_seconds=120)
    settings.BATCH_ACCOUNT_URL = running.endpoint
    settings.BATCH_ACCOUNT_NAME = running.account_name
    settings.BATCH_ACCOUNT_KEY = running.account_key
    monkeypatch.delenv("BATCH_ACCOUNT_KEY", raising=False)
    try:
        yield running
    finally:
        running.stop()


def test_a_pool_still_starting_its_nodes_says_how_long_that_takes(slow_batch, signed_in):
    with BatchClient(slow_batch.endpoint,
                     AzureNamedKeyCredential(slow_batch.account_name, slow_batch.account_key)) as client:
        client.create_pool(models.BatchPoolCreateOptions(id=POOL, vm_size="standard_d2s_v3", target_dedicated_nodes=2))
        wait_for(lambda: len(list(client.list_nodes(POOL))) == 2, message="two nodes on their way")
        make_job(client, "frames", POOL)
        client.create_task("frames", task("t1", "/bin/true"))

        page = job_page(signed_in, synced("frames"))

    assert ("1 task waits: the pool render-pool is still starting its nodes (2 of 2 on their way); "
            "a new node takes 3–8 minutes to start.") in page
    assert "Who can: nobody needs to act." in page


def test_every_nodes_start_task_failed(batch, batch_client, signed_in):
    make_pool(batch_client, POOL, nodes=2, start_task=models.BatchStartTask(command_line=sh("exit 3"),
                                                                           wait_for_success=True))
    wait_for(lambda: all(n.state == "starttaskfailed" for n in batch_client.list_nodes(POOL)),
             message="start tasks failed")
    make_job(batch_client, "frames", POOL)
    batch_client.create_task("frames", task("t1", "/bin/true"))

    page = job_page(signed_in, synced("frames"))

    assert ("1 task waits: every node's start task failed (exit code 3), so no node of pool render-pool takes "
            "tasks.") in page
    assert "Who can: an Operator can fix render-pool." in page


def test_an_autoscale_formula_at_zero(batch, batch_client, signed_in):
    batch_client.create_pool(models.BatchPoolCreateOptions(
        id=POOL, vm_size="standard_d2s_v3", enable_auto_scale=True,
        auto_scale_formula="$TargetDedicatedNodes = 0;"))
    wait_for(lambda: batch_client.get_pool(POOL).allocation_state == "steady", message="pool steady")
    make_job(batch_client, "frames", POOL)
    batch_client.create_task("frames", task("t1", "/bin/true"))

    page = job_page(signed_in, synced("frames"))

    assert Pool.objects.get(pool_id=POOL).enable_auto_scale
    assert "1 task waits: the autoscale formula of pool render-pool keeps it at zero nodes." in page
    assert "Who can: an Operator can change render-pool." in page


def test_a_used_up_core_quota_is_named_from_the_pools_resize_error(signed_in):
    # localbatch has no core quota (it never answers AccountCoreQuotaReached): this one reason is built in the
    # mirror, as the sync stores Batch's resizeErrors.
    pool = PoolFactory(pool_id=POOL, target_dedicated_nodes=4, resize_error_code="AccountCoreQuotaReached",
                       resize_error_message="The specified account has reached VM core quota.")
    job = JobFactory(job_id="frames", account=pool.account, pool_id=POOL, task_active=3)

    page = job_page(signed_in, job)

    assert ("3 tasks wait: the account's core quota is used up: pool render-pool could not get more nodes "
            "(AccountCoreQuotaReached).") in page


# --- slots, limits, the job's state ---------------------------------------------------------------------------

def test_all_slots_busy_with_a_higher_priority_job(batch, batch_client, signed_in):
    make_pool(batch_client, POOL, nodes=1, slots=2)
    make_job(batch_client, "render-0412", POOL, priority=100)
    for n in range(2):
        batch_client.create_task("render-0412", task(f"long{n}", sh("sleep 60")))
    wait_for(lambda: all(batch_state(batch_client, "render-0412", f"long{n}") == "running" for n in range(2)),
             message="the other job's tasks running")
    make_job(batch_client, "mine", POOL, priority=0)
    for n in range(3):
        batch_client.create_task("mine", task(f"t{n}", "/bin/true"))

    mine = synced("mine")
    page = job_page(signed_in, mine)

    assert "3 tasks wait: all 2 slots are busy with job render-0412 (priority 100 > yours 0)." in page
    assert "Who can: the job render-0412 is ahead of yours; an Operator can resize render-pool." in page
    assert "Waiting: all 2 slots are busy with job render-0412" in task_page(signed_in, mine, "t0")


def test_max_parallel_tasks_reached(batch, batch_client, signed_in):
    make_pool(batch_client, POOL, nodes=1, slots=4)
    make_job(batch_client, "frames", POOL, max_parallel_tasks=1)
    for n in range(2):
        batch_client.create_task("frames", task(f"t{n}", sh("sleep 60")))
    wait_for(lambda: batch_client.get_job_task_counts("frames").task_counts.running == 1, message="one running")

    page = job_page(signed_in, synced("frames"))

    assert ("1 task waits: the job runs at most 1 task at once (its maxParallelTasks) and 1 is running.") in page
    assert "all 4 slots" not in page


def test_a_disabled_job(batch, batch_client, signed_in):
    make_pool(batch_client, POOL, nodes=0)
    make_job(batch_client, "frames", POOL)
    batch_client.create_task("frames", task("t1", "/bin/true"))
    batch_client.begin_disable_job("frames", models.BatchJobDisableOptions(disable_tasks="requeue")).result()
    wait_for(lambda: batch_client.get_job("frames").state == "disabled", message="job disabled")

    page = job_page(signed_in, synced("frames"))

    assert ("1 task waits: the job frames is disabled: Batch starts none of its tasks until it is enabled "
            "again.") in page
    assert "Who can: its submitter, or an Operator of its team, can enable it." in page


def test_a_failing_preparation_task_is_explained_from_batchs_answer(batch, batch_client, signed_in):
    make_pool(batch_client, POOL, nodes=1)
    make_job(batch_client, "frames", POOL,
             job_preparation_task=models.BatchJobPreparationTask(command_line=sh("exit 4")))
    batch_client.create_task("frames", task("t1", "/bin/true"))
    wait_for(lambda: any(s.job_preparation_task_execution_info and
                         s.job_preparation_task_execution_info.result == "failure"
                         for s in batch_client.list_job_preparation_and_release_task_status("frames")),
             message="preparation task failed")
    job = synced("frames")

    page = page_text(signed_in.get(reverse("job_preparation", args=[job.pk])))

    assert ("1 task waits: the job's preparation task failed on every node it ran on (exit code 4), and Batch runs "
            "none of the job's tasks on a node where it failed.") in page


# --- dependencies ---------------------------------------------------------------------------------------------

def test_a_task_blocked_by_a_failed_dependency_says_so_not_free_slot(batch, batch_client, signed_in):
    make_pool(batch_client, POOL, nodes=1, slots=2)
    make_job(batch_client, "frames", POOL, uses_task_dependencies=True)
    batch_client.create_task("frames", task("first", sh("exit 1")))
    batch_client.create_task("frames", task("second", "/bin/true",
                                            depends_on=models.BatchTaskDependencies(task_ids=["first"])))
    wait_for(lambda: batch_state(batch_client, "frames", "first") == "completed", message="first failed")

    job = synced("frames")
    second = task_page(signed_in, job, "second")
    first = task_page(signed_in, job, "first")

    assert "Waiting for a free slot" not in second
    assert "Waiting: it waits for task first, which failed: it will not start until first succeeds." in second
    assert "Waits for first (1 failed and blocks it)" in second
    assert "Needed by 1 task" in first
    assert Task.objects.get(job=job, task_id="first").dependency_action == "block"
    assert "Task first failed, and the tasks that depend on it will not start until it succeeds." in \
        job_page(signed_in, job)


def test_dependencies_shown_both_ways_while_they_run(batch, batch_client, signed_in):
    make_pool(batch_client, POOL, nodes=1, slots=4)
    make_job(batch_client, "frames", POOL, uses_task_dependencies=True)
    for name in ("first", "1", "2", "3"):
        batch_client.create_task("frames", task(name, sh("sleep 60")))
    batch_client.create_task("frames", task("last", "/bin/true", depends_on=models.BatchTaskDependencies(
        task_ids=["first"], task_id_ranges=[models.BatchTaskIdRange(start=1, end=3)])))
    wait_for(lambda: batch_client.get_job_task_counts("frames").task_counts.running == 4, message="four running")

    job = synced("frames")
    last = task_page(signed_in, job, "last")

    assert "Waits for first, 3 more (4 not finished)" in last
    assert "Waiting: it waits for tasks it depends on to finish: first, 3 more." in last
    assert "Needed by 1 task" in task_page(signed_in, job, "2")
    assert "Needed by" not in task_page(signed_in, job, "last")


# --- nothing to explain, and the switch -----------------------------------------------------------------------

def test_no_reasons_when_nothing_waits(signed_in):
    job = JobFactory(task_active=0, task_running=2)

    assert "Why is it waiting?" not in job_page(signed_in, job)


def test_reasons_can_be_turned_off(signed_in, settings):
    pool = PoolFactory(pool_id=POOL, target_dedicated_nodes=0, current_dedicated_nodes=0)
    job = JobFactory(account=pool.account, pool_id=POOL, task_active=3)
    assert "Why is it waiting?" in job_page(signed_in, job)

    settings.WAITING_REASONS = False

    assert "Why is it waiting?" not in job_page(signed_in, job)


# --- the submission page and the dashboard --------------------------------------------------------------------

def test_the_submission_page_and_the_dashboard_say_why_too(user, signed_in):
    submission = services.submission_create(
        user=user, template_version=JobTemplate.objects.get(slug="render-frames").versions.order_by("-pk").first(),
        parameters={"frames": "2"}, name="Frames")
    Submission.objects.filter(pk=submission.pk).update(state=SubmissionState.SUBMITTED)
    PoolFactory(account=submission.account, pool_id=POOL, target_dedicated_nodes=0, current_dedicated_nodes=0)
    job = JobFactory(account=submission.account, job_id=submission.job_id, pool_id=POOL, task_active=2,
                     submitted_by=user)

    on_submission = page_text(signed_in.get(reverse("submission_detail", args=[submission.public_id])))
    on_dashboard = page_text(signed_in.get(reverse("dashboard")))

    assert "2 tasks wait: the pool render-pool has no nodes." in on_submission
    assert "Who can: an Operator can resize render-pool." in on_submission
    assert "2 tasks wait: the pool render-pool has no nodes." in on_dashboard
    assert f'id="d-waiting-{job.pk}"' in signed_in.get(reverse("dashboard")).content.decode()


def test_the_dashboards_reasons_agree_with_each_job_pages_on_a_crowded_pool(user):
    """first_reasons reads only each pool's two leading busy jobs and their number: whichever of them is the job
    itself, it must name the same job and count the same others as the job page's own reading."""
    pool = PoolFactory(pool_id=POOL, task_slots_per_node=2, target_dedicated_nodes=2, current_dedicated_nodes=2)
    for _ in range(2):
        NodeFactory(pool=pool, state=NodeState.RUNNING, running_task_slots_count=2)
    other_pool = PoolFactory(account=pool.account, pool_id="quiet-pool", target_dedicated_nodes=0)
    # Five jobs hold the four slots (priorities 90, 50, 50, 10, 0 among them); four more wait.
    jobs = [JobFactory(account=pool.account, pool_id=POOL, priority=priority, task_running=running, task_active=active)
            for priority, running, active in [(90, 1, 0), (50, 1, 4), (50, 0, 3), (10, 1, 2), (0, 1, 7), (0, 0, 1),
                                              (95, 0, 2), (90, 0, 5)]]
    jobs.append(JobFactory(account=pool.account, pool_id=other_pool.pool_id, task_active=3))

    found = waiting.first_reasons(Job.objects.filter(pk__in=[job.pk for job in jobs]))

    for job in jobs:
        expected = waiting.reasons_for_job(Job.objects.get(pk=job.pk))
        if not expected:
            assert job.pk not in found
            continue
        assert found[job.pk].sentence == expected[0].sentence, job.job_id
    assert "busy with job" in found[jobs[-2].pk].sentence   # the 90 waits behind the other 90 and 3 more
    assert "and 3 other jobs" in found[jobs[-2].pk].sentence
