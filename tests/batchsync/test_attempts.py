"""Each attempt of a retried task, recorded by the sync and its output kept by the archiver: against localbatch
through the real SDK and Azurite through the real storage SDK, then on the task page for the roles that may read
it, a role that may not, and anonymous people."""

from datetime import timedelta

import pytest
from azure.batch import models
from django.urls import reverse
from django.utils import timezone

from batchsync import archive
from batchsync.attempts import record_attempts
from batchsync.sync import sync_account
from portal.models import Task, TaskAttempt, TaskResult, TaskState
from tests.factories import TaskFactory
from tests.localbatch.helpers import wait_for, wait_task_completed
from tests.logfiles import shell_quote
from tests.personas import client_for
from tests.portal.pages import text

pytestmark = pytest.mark.django_db


def sync(account) -> None:
    """A sync pass, again while another test process holds a lock of the same name (they share Redis)."""
    wait_for(lambda: not sync_account(account).busy, message="a sync pass that was not busy")


def stdout_is(gateway, task_id: str, expected: str) -> bool:
    try:
        return gateway.read_task_file("logs-job", task_id, "stdout.txt") == expected.encode()
    except Exception:  # noqa: BLE001 - no file yet, or the retry is starting
        return False


def test_a_task_that_fails_twice_then_succeeds_has_three_attempts_each_with_its_output(
        account, store, gateway, batch_client, batch_job, tmp_path, viewer, no_role, client):
    count = tmp_path / "count"
    # Each attempt counts itself, says so on stdout and stderr, then waits for the test's go-ahead before it ends:
    # attempts 1 and 2 fail (exit 11, 12), attempt 3 succeeds. Like the portal's own tasks, it uploads its
    # stdout/stderr whenever it exits.
    script = (f"n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}; "
              "echo \"attempt $n out <b>\"; echo \"attempt $n err\" >&2; "
              f"while [ ! -e {tmp_path}/go-$n ]; do sleep 0.05; done; "
              "[ $n -ge 3 ] && exit 0; exit $((10+n))")
    logs_url = store.container_write_url(store.containers.logs, hours=1)
    batch_client.create_task("logs-job", models.BatchTaskCreateOptions(
        id="flaky", command_line=f"/bin/sh -c {shell_quote(script)}",
        constraints=models.BatchTaskConstraints(max_task_retry_count=2),
        output_files=[models.OutputFile(
            file_pattern="../std*.txt",
            destination=models.OutputFileDestination(container=models.OutputFileBlobContainerDestination(
                container_url=logs_url, path="logs-job/flaky/logs")),
            upload_options=models.OutputFileUploadConfiguration(upload_condition="taskcompletion"))]))

    for n in (1, 2, 3):
        wait_for(lambda n=n: stdout_is(gateway, "flaky", f"attempt {n} out <b>\n"), message=f"attempt {n} running")
        sync(account)
        # While attempt n runs, the saved copy still holds attempt n-1's output: the archiver keeps it now.
        report = archive.archive_attempts(store=store)
        assert report.attempts_kept == (1 if n > 1 else 0) and report.attempts_lost == 0
        (tmp_path / f"go-{n}").touch()
    wait_task_completed(batch_client, "logs-job", "flaky")
    sync(account)

    task = Task.objects.get(task_id="flaky")
    attempts = list(task.attempts.order_by("number"))
    assert [(a.number, a.retry_count, a.result, a.exit_code) for a in attempts] == [
        (1, 0, "failure", None), (2, 1, "failure", None), (3, 2, "success", 0)]
    assert all(a.seen and a.node_id == task.node_id for a in attempts)
    assert attempts[0].start_time < attempts[1].start_time < attempts[2].start_time == task.start_time
    assert attempts[2].end_time == task.end_time and attempts[0].end_time is None    # Batch never says
    assert [a.output_kept for a in attempts] == [True, True, False]

    # The page: the attempts, the timeline by attempt, the wait measured to the first start.
    reader = client_for(viewer)
    page = text(reader.get(reverse("task_detail", args=[task.pk])))
    assert 'id="attempts"' in page and 'id="attempt-3"' in page
    assert "Attempt 1 started" in page and "Attempt 1 failed" in page and "Attempt 2 failed" in page
    assert "Attempt 3 started" in page and "Succeeded" in page
    assert "non-zero exit code (Batch does not report which)" in page
    for n in (1, 2):
        out = text(reader.get(reverse("task_attempt_output", args=[task.pk, n]), {"path": "stdout.txt"}))
        assert f"attempt {n} out &lt;b&gt;" in out and "<b>" not in out
        err = text(reader.get(reverse("task_attempt_output", args=[task.pk, n]), {"path": "stderr.txt"}))
        assert f"attempt {n} err" in err
    download = reader.get(reverse("task_attempt_output", args=[task.pk, 2]), {"path": "stdout.txt", "download": "1"})
    assert download.status_code == 200 and b"".join(download.streaming_content) == b"attempt 2 out <b>\n"
    assert download["Content-Security-Policy"] == "sandbox"
    # The last attempt's output is the task's own, on its page.
    last = reader.get(reverse("task_attempt_output", args=[task.pk, 3]))
    assert last.status_code == 302 and last.url == reverse("task_detail", args=[task.pk]) + "#output"
    assert reader.get(reverse("task_attempt_output", args=[task.pk, 9])).status_code == 404
    assert reader.get(reverse("task_attempt_output", args=[task.pk, 1]), {"path": "../x"}).status_code == 404

    url = reverse("task_attempt_output", args=[task.pk, 1])
    assert client.get(url).status_code == 302                        # anonymous: to the sign-in page
    refused = client_for(no_role).get(url)
    assert refused.status_code != 200 or "attempt 1 out" not in text(refused)


def test_attempts_the_sync_never_saw_are_recorded_with_their_number_only():
    task = TaskFactory(state=TaskState.RUNNING)
    start = timezone.now() - timedelta(minutes=5)

    def seen(**fields) -> Task:
        row = Task(job_id=task.job_id, task_id=task.task_id, state=TaskState.RUNNING, retry_count=0,
                   start_time=start, node_id="tvm-1", pool_id="p")
        for name, value in fields.items():
            setattr(row, name, value)
        return row

    record_attempts(task.job_id, [seen()])
    # Two retries later (both started and failed between passes), and then it succeeded.
    done = seen(state=TaskState.COMPLETED, retry_count=3, start_time=start + timedelta(minutes=3), node_id="tvm-2",
                end_time=start + timedelta(minutes=4), exit_code=0, result=TaskResult.SUCCESS)
    record_attempts(task.job_id, [done])
    record_attempts(task.job_id, [done, seen()])         # seen again, and an older answer: nothing changes

    rows = list(TaskAttempt.objects.filter(task=task).order_by("number"))
    assert [(a.number, a.retry_count, a.seen, a.result, a.exit_code, a.node_id) for a in rows] == [
        (1, 0, True, "failure", None, "tvm-1"), (2, 1, False, "failure", None, ""),
        (3, 2, False, "failure", None, ""), (4, 3, True, "success", 0, "tvm-2")]


def test_an_attempt_whose_output_was_never_uploaded_is_marked_not_kept(store):
    task = TaskFactory(state=TaskState.RUNNING, retry_count=1)
    start = timezone.now() - timedelta(minutes=5)
    TaskAttempt.objects.create(task=task, number=1, start_time=start, result=TaskResult.FAILURE,
                               last_synced_at=timezone.now())
    TaskAttempt.objects.create(task=task, number=2, retry_count=1, start_time=start + timedelta(minutes=1),
                               last_synced_at=timezone.now())

    report = archive.archive_attempts(store=store)

    assert (report.attempts_kept, report.attempts_lost) == (0, 1)
    first = TaskAttempt.objects.get(task=task, number=1)
    assert first.output_saved_at is not None and not first.output_kept
    assert archive.archive_attempts(store=store).attempts_lost == 0      # settled once
