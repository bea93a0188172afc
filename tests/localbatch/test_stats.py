"""`$expand=stats` on pools, jobs, job schedules and tasks, through the real azure-batch SDK."""

import json

import pytest
from azure.batch import models
from azure.core.exceptions import HttpResponseError

from localbatch import API_VERSION
from tests.localbatch.helpers import make_job, make_pool, sh, signed_send, task, wait_for, wait_task_completed


def error_of(caught) -> tuple[int, str | None]:
    return caught.value.response.status_code, caught.value.error.code


def finished_job(client) -> None:
    """pool-1 with a job of one success, one failure (after a retry) and one still running."""
    make_pool(client, nodes=2, slots=2)
    make_job(client, "job-1", "pool-1")
    client.create_task("job-1", task("ok", sh("sleep 0.2")))
    client.create_task("job-1", task("bad", sh("exit 3"), constraints=models.BatchTaskConstraints(
        max_task_retry_count=1)))
    wait_task_completed(client, "job-1", "ok")
    wait_task_completed(client, "job-1", "bad")


def test_job_stats_count_the_tasks(batch_client):
    finished_job(batch_client)
    assert batch_client.get_job("job-1").job_statistics is None   # only when asked for
    stats = batch_client.get_job("job-1", expand=["stats"]).job_statistics
    assert (stats.succeeded_tasks_count, stats.failed_tasks_count, stats.task_retries_count) == (1, 1, 1)
    assert stats.wall_clock_time.total_seconds() >= 0.2
    assert stats.read_iops == 0 and stats.read_io_gib == 0.0
    assert stats.url.endswith("/jobs/job-1")
    listed = [j.job_statistics for j in batch_client.list_jobs(expand=["stats"])]
    assert listed[0].succeeded_tasks_count == 1


def test_stats_are_written_as_the_service_writes_them(localbatch, batch_client):
    finished_job(batch_client)
    status, _, body = signed_send(localbatch, "GET", f"/jobs/job-1?api-version={API_VERSION}&$expand=stats")
    assert status == 200
    stats = body["stats"]
    # int64 counters and the GiB figures travel as JSON strings, durations as ISO 8601.
    assert stats["numSucceededTasks"] == "1" and stats["readIOps"] == "0" and stats["readIOGiB"] == "0.0"
    assert stats["userCPUTime"] == "PT0S" and stats["wallClockTime"].startswith("PT")
    assert set(stats) == {"url", "startTime", "lastUpdateTime", "userCPUTime", "kernelCPUTime", "wallClockTime",
                          "readIOps", "writeIOps", "readIOGiB", "writeIOGiB", "numSucceededTasks", "numFailedTasks",
                          "numTaskRetries", "waitTime"}


def test_pool_stats_carry_the_usage_of_its_dedicated_nodes(batch_client):
    make_pool(batch_client, nodes=2)
    pool = batch_client.get_pool("pool-1", expand=["stats"])
    usage = pool.pool_statistics.usage_statistics
    assert usage.dedicated_core_time.total_seconds() > 0
    assert pool.pool_statistics.resource_statistics is None
    assert [p.pool_statistics is not None for p in batch_client.list_pools(expand=["stats"])] == [True]
    assert batch_client.get_pool("pool-1").pool_statistics is None


def test_task_stats(batch_client):
    finished_job(batch_client)
    ok = batch_client.get_task("job-1", "ok", expand=["stats"]).task_statistics
    assert ok.wall_clock_time.total_seconds() >= 0.2
    assert ok.url.endswith("/jobs/job-1/tasks/ok")
    listed = {t.id: t.task_statistics for t in batch_client.list_tasks("job-1", expand=["stats"])}
    assert set(listed) == {"ok", "bad"} and all(s is not None for s in listed.values())


def test_job_schedule_stats_add_up_its_jobs(batch_client):
    batch_client.create_job_schedule(models.BatchJobScheduleCreateOptions(
        id="sched", schedule=models.BatchJobScheduleConfiguration(),
        job_specification=models.BatchJobSpecification(pool_info=models.BatchPoolInfo(pool_id="pool-1"))))
    make_pool(batch_client, nodes=1)
    batch_client.create_task("sched:job-1", task("t", sh("true")))
    wait_task_completed(batch_client, "sched:job-1", "t")
    stats = wait_for(lambda: (s := batch_client.get_job_schedule("sched", expand=["stats"]).job_schedule_statistics)
                     and s.succeeded_tasks_count == 1 and s, message="schedule stats")
    assert stats.failed_tasks_count == 0
    assert [s.job_schedule_statistics.succeeded_tasks_count
            for s in batch_client.list_job_schedules(expand=["stats"])] == [1]


def test_expand_of_anything_else_is_refused(localbatch, batch_client):
    make_pool(batch_client, nodes=0)
    with pytest.raises(HttpResponseError) as caught:
        batch_client.get_pool("pool-1", expand=["nodes"])
    assert error_of(caught) == (400, "InvalidQueryParameterValue")
    status, _, body = signed_send(localbatch, "GET", f"/pools?api-version={API_VERSION}&$expand=stats,everything")
    assert (status, body["code"]) == (400, "InvalidQueryParameterValue")
    assert json.dumps(body).count("everything") >= 1
