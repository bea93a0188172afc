"""The archiver against real localbatch nodes and a real Azurite (passes wait for the archiver's lock, which test runs
in other processes may hold): copies finished tasks' stdout/stderr into the
logs container, finds copies the tasks saved themselves, marks files the node no longer has so they are not
tried again, leaves tasks for the next pass when Batch does not answer, and picks each task's error line."""

import hashlib
import time
import uuid
from datetime import timedelta

import pytest
from azure.batch import models
from django.utils import timezone

from batchsync import archive, locks, submit
from batchsync.accounts import default_account
from batchsync.archive import find_error_line
from batchsync.gateway import BatchGateway, GatewayError, PoolSpec
from batchsync.sync import sync_account
from portal.logs import files as log_files
from portal.logs.files import SavedFile, open_file, stream
from portal.logs.windows import window
from portal.models import Job, JobTemplate, Task, TaskState
from portal.submit import services
from tests.batchsync.test_sync import UBUNTU
from tests.factories import JobFactory, TaskFactory, UserFactory
from tests.localbatch.helpers import wait_for, wait_task_completed
from tests.logfiles import CountingGateway, add_task

# Fixtures, imported so pytest finds them here.

pytestmark = pytest.mark.django_db

MiB = 1024 * 1024


def saved(store, job_id, task_id, name):
    info = store.info(store.containers.logs, f"{job_id}/{task_id}/logs/{name}")
    return None if info is None else b"".join(stream(SavedFile(store, info)))


def finished_row(account, task_id, *, job_id="logs-job", minutes_ago=0):
    job = Job.objects.filter(account=account, job_id=job_id).first() or JobFactory(
        account=account, job_id=job_id, pool_id="logs-pool")
    return TaskFactory(job=job, task_id=task_id, state=TaskState.COMPLETED,
                       end_time=timezone.now() - timedelta(minutes=minutes_ago))


def test_a_finished_tasks_stdout_and_stderr_are_copied_to_blob_and_the_task_marked(
        account, gateway, batch_client, batch_job, store):
    add_task(batch_client, "work", "head -c 9000000 /dev/urandom; echo 'loading data' >&2; "
                                   "echo 'ERROR: disk full on /mnt' >&2; echo 'giving up' >&2; exit 3")
    wait_task_completed(batch_client, "logs-job", "work")
    task = finished_row(account, "work")
    expected = b"".join(batch_client.download_task_file("logs-job", "work", "stdout.txt"))

    report = archive.archive_finished_tasks(wait=60)

    assert (report.saved, report.found, report.gone, report.tasks_marked, report.skipped) == (2, 0, 0, 1, [])
    copy = saved(store, "logs-job", "work", "stdout.txt")
    assert len(copy) == 9000000 and hashlib.sha256(copy).digest() == hashlib.sha256(expected).digest()
    assert saved(store, "logs-job", "work", "stderr.txt") == b"loading data\nERROR: disk full on /mnt\ngiving up\n"
    task.refresh_from_db()
    assert task.logs_saved_at is not None and task.error_line == "ERROR: disk full on /mnt"
    # Marked once: the next pass has nothing left to do.
    assert archive.archive_finished_tasks(wait=60).tasks_marked == 0


def test_a_copy_the_task_saved_itself_is_found_and_not_read_from_the_node(
        account, gateway, batch_client, batch_job, store):
    add_task(batch_client, "ruled", "echo from the node; echo node stderr >&2")
    wait_task_completed(batch_client, "logs-job", "ruled")
    task = finished_row(account, "ruled")
    store.put(store.containers.logs, "logs-job/ruled/logs/stdout.txt", b"uploaded by the task\n")
    store.put(store.containers.logs, "logs-job/ruled/logs/stderr.txt", b"all good\nTraceback (most recent call)\n")
    counting = CountingGateway(gateway)

    report = archive.ArchiveReport()
    assert archive.archive_task(task, batch=counting, store=store, report=report)

    assert (report.found, report.saved, counting.calls) == (2, 0, 0)
    task.refresh_from_db()
    assert task.logs_saved_at is not None and task.error_line == "Traceback (most recent call)"
    assert saved(store, "logs-job", "ruled", "stdout.txt") == b"uploaded by the task\n"


def test_files_cleaned_up_or_deleted_in_batch_are_marked_gone_with_nothing_saved_and_not_tried_again(
        account, gateway, batch_client, batch_job, store):
    batch_client.create_task("logs-job", models.BatchTaskCreateOptions(
        id="brief", command_line="/bin/sh -c 'echo short-lived'",
        constraints=models.BatchTaskConstraints(retention_time="PT1S")))
    wait_task_completed(batch_client, "logs-job", "brief")
    wait_for(lambda: archive_code(gateway, "brief") == "TaskFilesCleanedup", message="files cleaned up")
    add_task(batch_client, "deleted", "echo bye")
    wait_task_completed(batch_client, "logs-job", "deleted")
    batch_client.delete_task("logs-job", "deleted")
    brief, deleted = finished_row(account, "brief"), finished_row(account, "deleted")

    report = archive.archive_finished_tasks(wait=60)

    assert (report.gone, report.saved, report.tasks_marked) == (4, 0, 2)
    for task in (brief, deleted):
        task.refresh_from_db()
        assert task.logs_saved_at is not None and task.error_line == ""
        assert saved(store, "logs-job", task.task_id, "stdout.txt") is None
    assert store.list_blobs(store.containers.logs, "logs-job/") == []
    assert archive.archive_finished_tasks(wait=60).tasks_marked == 0


def archive_code(gateway, task_id):
    try:
        gateway.read_task_file("logs-job", task_id, "stdout.txt", start=0, length=1)
    except GatewayError as error:
        return error.code
    return None


def test_when_batch_does_not_answer_the_task_is_left_for_the_next_pass(account, store):
    account.account_url = "http://127.0.0.1:9"       # nothing listens on the discard port
    account.save()
    task = finished_row(account, "unreachable")

    report = archive.archive_finished_tasks(wait=60)

    assert report.tasks_marked == 0 and len(report.skipped) == 1 and "logs-job/unreachable" in report.skipped[0]
    task.refresh_from_db()
    assert task.logs_saved_at is None


def test_a_pass_takes_the_newest_finished_tasks_first_and_at_most_its_batch(account, store):
    account.account_url = "http://127.0.0.1:9"
    account.save()
    old = finished_row(account, "t30", minutes_ago=30)
    finished_row(account, "t2", minutes_ago=2)
    finished_row(account, "t1", minutes_ago=1)
    TaskFactory(job=old.job, task_id="running", state=TaskState.RUNNING)
    # Ended before the look-back: its files are long gone from any node, and the pass never scans back that far.
    finished_row(account, "ancient", minutes_ago=int(archive.LOOKBACK.total_seconds() // 60) + 1)
    seen = []
    original = archive.archive_task
    archive.archive_task = lambda task, **kw: seen.append(task.task_id) or original(task, **kw)
    try:
        archive.archive_finished_tasks(limit=2, wait=60)
    finally:
        archive.archive_task = original
    assert seen == ["t1", "t2"]
    seen.clear()
    archive.archive_task = lambda task, **kw: seen.append(task.task_id) or original(task, **kw)
    try:
        archive.archive_finished_tasks(limit=10, wait=60)
    finally:
        archive.archive_task = original
    assert seen == ["t1", "t2", "t30"]


def test_only_one_pass_runs_at_a_time(account, store):
    finished_row(account, "waiting")
    with locks.hold(archive.LOCK_NAME, wait=60) as held:
        assert held
        assert archive.archive_finished_tasks() is None
    assert Task.objects.get(task_id="waiting").logs_saved_at is None


def test_tasks_the_portal_submits_upload_their_logs_to_the_same_layout_with_a_signed_sas(
        localbatch, settings, monkeypatch, store):
    """No SUBMISSION_LOGS_CONTAINER_URL: submit signs a write-only SAS for the logs container itself."""
    settings.BATCH_ACCOUNT_URL, settings.BATCH_ACCOUNT_NAME = localbatch.endpoint, localbatch.account_name
    settings.BATCH_ACCOUNT_KEY = localbatch.account_key
    settings.SUBMISSION_LOGS_CONTAINER_URL = ""
    monkeypatch.delenv("BATCH_ACCOUNT_KEY", raising=False)

    with BatchGateway(localbatch.endpoint, localbatch.account_name, localbatch.account_key) as batch:
        batch.create_pool(PoolSpec(id="demo-pool", vm_size="standard_d2s_v3", image=UBUNTU,
                                   target_dedicated_nodes=1, task_slots_per_node=2))
        version = JobTemplate.objects.get(slug="render-frames").current_version()
        submission = services.submission_create(user=UserFactory(), template_version=version,
                                                parameters={"frames": "2", "seconds_per_frame": "0"})
        submit.submit_submission(submission.pk)
        wait_for(lambda: batch.get_job(submission.job_id).state == "completed", timeout=60, message="job end")

    names = sorted(blob.path for blob in store.list_blobs(store.containers.logs, ""))
    assert names == [f"{submission.job_id}/t0000{n}/logs/{kind}.txt" for n in (1, 2) for kind in ("stderr", "stdout")]
    assert saved(store, submission.job_id, "t00002", "stdout.txt") == b"rendering frame 2\nframe 2 done\n"
    # The SAS in the task's rule may write but not read: what Batch holds could not leak the logs.
    assert "sp=cw&" in submit.logs_container_url()

    # The archiver then only finds them: nothing is read from the nodes.
    sync_account(default_account())
    report = archive.archive_finished_tasks(wait=60)
    assert (report.found, report.saved, report.tasks_marked) == (4, 0, 2)


def test_when_the_logs_container_cannot_be_reached_tasks_are_submitted_without_the_upload_rule(azurite, settings):
    settings.SUBMISSION_LOGS_CONTAINER_URL = ""
    settings.STORAGE_LOGS_CONTAINER = f"logs-{uuid.uuid4().hex[:12]}"
    # Storage answers, but the container is missing: a rule would end every task with FileUploadContainerNotFound.
    settings.AZURE_STORAGE_CONNECTION_STRING = azurite.connection_string
    assert submit.logs_container_url() is None
    # Nothing answers at all (the discard port).
    settings.AZURE_STORAGE_CONNECTION_STRING = azurite.connection_string.replace(
        azurite.blob_endpoint.split("/")[2], "127.0.0.1:9")
    assert submit.logs_container_url() is None


def test_the_error_line_is_the_first_line_that_looks_like_an_error_else_the_last_line():
    text = b"starting\nWarning: low memory\nstep 2 FAILED with code 7\nTraceback later\ndone\n"
    assert find_error_line(text, b"", len(text)) == "step 2 FAILED with code 7"
    quiet = b"starting\nstill going\n  the end  \n\n"
    assert find_error_line(quiet, b"", len(quiet)) == "the end"
    assert find_error_line(b"", b"", 0) == ""
    coloured = b"\x1b[31mFatal: no input\x1b[0m\n"
    assert find_error_line(coloured, b"", len(coloured)) == "Fatal: no input"
    long = b"exception " + b"x" * 1000 + b"\n"
    assert find_error_line(long, b"", len(long)) == ("exception " + "x" * 1000)[:300]


def test_in_a_big_stderr_only_its_head_and_tail_are_read_and_cut_lines_are_left_out():
    scan = archive.ERROR_SCAN_BYTES
    # The head ends inside a line that mentions an error; the tail begins inside one: neither piece counts.
    head = b"ok\n" * (scan // 3 - 3) + b"ok\nerr"
    tail = b"or in the middle\n" + b"fine\n" * 100 + b"last words\n"
    assert find_error_line(head[:scan], tail, 10 * MiB) == "last words"
    tail_with_error = b"partial error\nsegfault: fatal signal 11\nbye\n"
    assert find_error_line(head[:scan], tail_with_error, 10 * MiB) == "segfault: fatal signal 11"


def test_a_retried_task_is_saved_again_and_the_earlier_attempts_copy_no_longer_shows(
        account, gateway, batch_client, batch_job, store, monkeypatch, tmp_path):
    # Blob times have whole seconds; a second of slack keeps this attempt's own copy counted as its own.
    monkeypatch.setattr(log_files, "CLOCK_SKEW", timedelta(seconds=1))
    monkeypatch.setattr(archive, "CLOCK_SKEW", timedelta(seconds=1))
    marker = tmp_path / "tried"
    add_task(batch_client, "again", f"if [ -e {marker} ]; then echo attempt 2; "
                                    f"else touch {marker}; echo attempt 1; echo 'first failure' >&2; exit 1; fi")
    first = wait_task_completed(batch_client, "logs-job", "again")
    sync_account(account)
    assert archive.archive_finished_tasks(wait=60).saved == 2
    assert saved(store, "logs-job", "again", "stdout.txt") == b"attempt 1\n"
    time.sleep(2.5)             # the retry starts more than the slack after that copy was saved

    batch_client.reactivate_task("logs-job", "again")
    wait_for(lambda: (t := batch_client.get_task("logs-job", "again")).state == "completed"
             and t.execution_info.start_time > first.execution_info.start_time, message="the retry to end")
    sync_account(account)
    task = Task.objects.get(job__account=account, task_id="again")
    assert task.error_line == "first failure"

    # The copy in Blob is the first attempt's: the viewer reads the node, which has the retry's output.
    shown = open_file(task, "stdout.txt", batch=gateway, store=store, live=False)
    assert shown.kind == "node" and window(shown).text == "attempt 2\n"

    report = archive.archive_finished_tasks(wait=60)
    assert (report.saved, report.tasks_marked) == (2, 1)
    task.refresh_from_db()
    assert saved(store, "logs-job", "again", "stdout.txt") == b"attempt 2\n" and task.error_line == ""
    shown = open_file(task, "stdout.txt", batch=gateway, store=store, live=False)
    assert shown.kind == "saved" and window(shown).text == "attempt 2\n"
    assert archive.archive_finished_tasks(wait=60).tasks_marked == 0


class FakeClock:
    """Stands in for the archiver's `time`: a clock that moves only when slept on or told to."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_paced_hands_out_each_item_no_sooner_than_its_interval_after_the_one_before(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(archive, "time", clock)
    handed = []
    for item in archive.paced(["a", "b", "c", "d"], 4):
        handed.append((item, clock.now))
        clock.now += 0.4 if item == "b" else 0.1   # "b" takes longer than the interval: "c" then goes at once
    assert handed == [("a", 100.0), ("b", 100.25), ("c", 100.65), ("d", 100.9)]
    assert clock.slept == [0.15, 0.0, 0.15]


def test_a_pass_paced_at_a_rate_starts_its_tasks_that_far_apart_and_unpaced_at_once(account, store, monkeypatch):
    for n in range(3):
        finished_row(account, f"paced-{n}", minutes_ago=n)   # not on any node: each is marked gone
    clock = FakeClock()
    monkeypatch.setattr(archive, "time", clock)
    started = []
    original = archive.archive_task
    monkeypatch.setattr(archive, "archive_task", lambda task, **kw: started.append(clock.now) or original(task, **kw))

    assert archive.archive_finished_tasks(wait=60, tasks_per_second=2).gone == 6
    assert started == [100.0, 100.5, 101.0]

    Task.objects.filter(task_id__startswith="paced-").update(logs_saved_at=None)
    started.clear()
    clock.slept.clear()
    assert archive.archive_finished_tasks(wait=60).gone == 6
    assert clock.slept == [] and started == [101.0] * 3
