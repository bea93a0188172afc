"""Job schedules through the real azure-batch SDK: create, get, exists, list, update, replace, disable, enable,
terminate, delete, the jobs the recurrence creates, and the refusals."""

import json
from datetime import datetime, timedelta, timezone

import pytest
from azure.batch import BatchClient, models
from azure.batch.models import _models as internal_models
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from localbatch import API_VERSION, admin
from localbatch.server import start
from tests.localbatch.helpers import make_job, make_pool, sh, signed_send, task, wait_for, wait_task_completed

POLL = 0.05
UNLIMITED = timedelta(days=10675199, hours=2, minutes=48, seconds=5, microseconds=477581)


def error_of(caught) -> tuple[int, str | None]:
    return caught.value.response.status_code, caught.value.error.code


def details_of(caught) -> dict:
    return {d.code: d.message for d in caught.value.error.details}


def spec(pool_id: str = "pool-1", **options) -> models.BatchJobSpecification:
    return models.BatchJobSpecification(pool_info=models.BatchPoolInfo(pool_id=pool_id), **options)


def create(client, schedule_id: str, schedule: models.BatchJobScheduleConfiguration | None = None,
           job_spec: models.BatchJobSpecification | None = None, **options):
    return client.create_job_schedule(models.BatchJobScheduleCreateOptions(
        id=schedule_id, schedule=schedule or models.BatchJobScheduleConfiguration(),
        job_specification=job_spec or spec(), **options))


def fast(localbatch, scale: float = 0.005):
    """Run the service's clocks fast: at 0.005 a one-minute recurrence is 0.3 s."""
    admin.set_timing(localbatch.endpoint, localbatch.account_name, localbatch.account_key, time_scale=scale)


def test_create_makes_the_first_job_at_once_as_the_service_does(localbatch, batch_client):
    status, headers = batch_client.create_job_schedule(
        models.BatchJobScheduleCreateOptions(
            id="nightly", display_name="Nightly", job_specification=spec(
                constraints=models.BatchJobConstraints(max_task_retry_count=2), all_tasks_complete_mode="terminatejob"),
            schedule=models.BatchJobScheduleConfiguration(start_window=timedelta(hours=1),
                                                          recurrence_interval=timedelta(days=1))),
        cls=lambda response, _body, _h: (response.http_response.status_code, response.http_response.headers))
    assert status == 201
    assert headers["Location"].endswith("/jobschedules/nightly") and headers["DataServiceId"] == headers["Location"]
    schedule = batch_client.get_job_schedule("nightly")
    assert schedule.id == "nightly" and schedule.display_name == "Nightly" and schedule.state == "active"
    assert schedule.schedule.start_window == timedelta(hours=1)
    assert schedule.schedule.recurrence_interval == timedelta(days=1)
    job_spec = schedule.job_specification
    assert (job_spec.priority, job_spec.max_parallel_tasks, job_spec.all_tasks_complete_mode) == (0, -1, "terminatejob")
    assert job_spec.constraints.max_task_retry_count == 2 and job_spec.constraints.max_wall_clock_time == UNLIMITED
    assert schedule.execution_info.recent_job.id == "nightly:job-1"
    assert schedule.execution_info.recent_job.url.endswith("/jobs/nightly:job-1")
    assert schedule.execution_info.next_run_time == schedule.creation_time + timedelta(days=1)
    jobs = list(batch_client.list_jobs_from_schedule("nightly"))
    assert [j.id for j in jobs] == ["nightly:job-1"]
    job = batch_client.get_job("nightly:job-1")
    assert job.pool_info.pool_id == "pool-1" and job.all_tasks_complete_mode == "terminatejob"
    assert job.constraints.max_task_retry_count == 2
    assert batch_client.job_schedule_exists("nightly") is True
    assert [s.id for s in batch_client.list_job_schedules()] == ["nightly"]
    status, _, body = signed_send(localbatch, "GET", f"/jobschedules/nightly?api-version={API_VERSION}")
    assert status == 200 and body["odata.metadata"].endswith("$metadata#jobschedules/@Element")


def test_a_schedule_not_due_yet_makes_no_job(batch_client):
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    create(batch_client, "later", models.BatchJobScheduleConfiguration(do_not_run_until=later))
    schedule = batch_client.get_job_schedule("later")
    assert schedule.execution_info.recent_job is None
    assert abs((schedule.execution_info.next_run_time - later).total_seconds()) < 1
    assert list(batch_client.list_jobs_from_schedule("later")) == []


def test_the_recurrence_waits_for_the_last_job_and_skips_the_runs_it_missed(localbatch, batch_client):
    fast(localbatch)
    create(batch_client, "every-minute", models.BatchJobScheduleConfiguration(recurrence_interval=timedelta(minutes=1)))
    # The first job stays active (noaction, no tasks): no second job starts, and the runs that pass are lost.
    assert batch_client.get_job("every-minute:job-1").state == "active"
    first_due = batch_client.get_job_schedule("every-minute").execution_info.next_run_time
    wait_for(lambda: batch_client.get_job_schedule("every-minute").execution_info.next_run_time
             > first_due + timedelta(seconds=0.6), message="runs passed by")
    assert [j.id for j in batch_client.list_jobs_from_schedule("every-minute")] == ["every-minute:job-1"]
    end(batch_client, "every-minute:job-1")
    wait_for(lambda: len(list(batch_client.list_jobs_from_schedule("every-minute"))) == 2, message="second job")
    schedule = batch_client.get_job_schedule("every-minute")
    assert schedule.execution_info.recent_job.id == "every-minute:job-2"


def end(client, job_id: str) -> None:
    client.begin_terminate_job(job_id, internal_models.BatchJobTerminateOptions(termination_reason="done"),
                               polling_interval=POLL).result()


def test_a_one_off_schedule_completes_with_its_job(batch_client):
    # A job set to terminatejob that has no tasks completes at once, as on Batch; so does its schedule then.
    create(batch_client, "once", job_spec=spec(all_tasks_complete_mode="terminatejob"))
    done = wait_for(lambda: (s := batch_client.get_job_schedule("once")).state == "completed" and s,
                    message="schedule completed")
    assert batch_client.get_job("once:job-1").state == "completed"
    assert done.execution_info.end_time is not None and done.execution_info.next_run_time is None
    with pytest.raises(ResourceExistsError) as caught:
        batch_client.disable_job_schedule("once")
    assert error_of(caught) == (409, "JobScheduleCompleted")


def test_disable_stops_new_jobs_and_enable_resumes(localbatch, batch_client):
    fast(localbatch)
    create(batch_client, "paused", models.BatchJobScheduleConfiguration(recurrence_interval=timedelta(minutes=1)))
    status, headers = batch_client.disable_job_schedule(
        "paused", cls=lambda response, _body, h: (response.http_response.status_code, h))
    assert status == 204 and headers["DataServiceId"].endswith("/jobschedules/paused/disable")
    assert batch_client.get_job_schedule("paused").state == "disabled"
    end(batch_client, "paused:job-1")
    due = batch_client.get_job_schedule("paused").execution_info.next_run_time
    wait_for(lambda: datetime.now(timezone.utc) > due + timedelta(seconds=0.5), message="a run due while disabled")
    assert [j.id for j in batch_client.list_jobs_from_schedule("paused")] == ["paused:job-1"]
    batch_client.enable_job_schedule("paused")
    assert batch_client.get_job_schedule("paused").state == "active"
    wait_for(lambda: len(list(batch_client.list_jobs_from_schedule("paused"))) == 2, message="a job after enable")


def test_update_changes_what_is_given_and_replace_resets_the_rest(batch_client):
    create(batch_client, "changing", models.BatchJobScheduleConfiguration(recurrence_interval=timedelta(days=1)),
           spec(priority=5), metadata=[models.BatchMetadataItem(name="team", value="render")])
    status, headers = batch_client.update_job_schedule(
        "changing", models.BatchJobScheduleUpdateOptions(
            schedule=models.BatchJobScheduleConfiguration(recurrence_interval=timedelta(hours=5))),
        cls=lambda response, _body, h: (response.http_response.status_code, h))
    assert status == 200 and headers["DataServiceId"].endswith("/jobschedules/changing")
    schedule = batch_client.get_job_schedule("changing")
    assert schedule.schedule.recurrence_interval == timedelta(hours=5)
    assert schedule.job_specification.priority == 5 and schedule.metadata[0].value == "render"
    assert schedule.execution_info.next_run_time == schedule.creation_time + timedelta(hours=5)
    batch_client.replace_job_schedule("changing", models.BatchJobSchedule(
        schedule=models.BatchJobScheduleConfiguration(recurrence_interval=timedelta(hours=10)),
        job_specification=spec("pool-2")))
    schedule = batch_client.get_job_schedule("changing")
    assert schedule.schedule.recurrence_interval == timedelta(hours=10)
    assert schedule.job_specification.priority == 0 and schedule.job_specification.pool_info.pool_id == "pool-2"
    assert schedule.metadata is None
    # Jobs already made keep the specification they were made with.
    assert batch_client.get_job("changing:job-1").priority == 5


def test_terminate_ends_the_schedule_and_its_job(batch_client):
    create(batch_client, "ending", models.BatchJobScheduleConfiguration(recurrence_interval=timedelta(days=1)))
    poller = batch_client.begin_terminate_job_schedule("ending", polling_interval=POLL)
    poller.result()
    schedule = wait_for(lambda: (s := batch_client.get_job_schedule("ending")).state == "completed" and s,
                        message="completed")
    assert schedule.execution_info.end_time is not None
    job = batch_client.get_job("ending:job-1")
    assert job.state == "completed" and job.execution_info.termination_reason == "TerminateJobSchedule"
    with pytest.raises(ResourceExistsError) as caught:
        batch_client.update_job_schedule("ending", models.BatchJobScheduleUpdateOptions(metadata=[]))
    assert error_of(caught) == (409, "JobScheduleCompleted")


def test_delete_removes_the_schedule_and_its_jobs(batch_client):
    create(batch_client, "doomed", models.BatchJobScheduleConfiguration(recurrence_interval=timedelta(days=1)))
    batch_client.begin_delete_job_schedule("doomed", polling_interval=POLL).result()
    with pytest.raises(ResourceNotFoundError) as caught:
        batch_client.get_job_schedule("doomed")
    assert error_of(caught) == (404, "JobScheduleNotFound")
    wait_for(lambda: not [j for j in batch_client.list_jobs() if j.id.startswith("doomed:")], message="jobs gone")
    with pytest.raises(ResourceNotFoundError):
        batch_client.job_schedule_exists("doomed")
    with pytest.raises(ResourceNotFoundError):
        list(batch_client.list_jobs_from_schedule("doomed"))


def test_a_schedule_and_a_job_may_not_share_an_id(batch_client):
    make_job(batch_client, "shared-id", "pool-1")
    with pytest.raises(ResourceExistsError) as caught:
        create(batch_client, "shared-id")
    assert error_of(caught) == (409, "JobWithSameIdExists")
    create(batch_client, "sched-id")
    with pytest.raises(ResourceExistsError) as caught:
        make_job(batch_client, "sched-id", "pool-1")
    assert error_of(caught) == (409, "JobScheduleWithSameIdExists")
    with pytest.raises(ResourceExistsError) as caught:
        create(batch_client, "SCHED-ID")
    assert error_of(caught) == (409, "JobScheduleExists")


@pytest.mark.parametrize("body, code, name", [
    ({"id": "s", "jobSpecification": {"poolInfo": {"poolId": "p"}}}, "MissingRequiredProperty", "schedule"),
    ({"id": "s", "schedule": {}}, "MissingRequiredProperty", "jobSpecification"),
    ({"id": "s", "schedule": {"recurrenceInterval": "PT30S"}, "jobSpecification": {"poolInfo": {"poolId": "p"}}},
     "InvalidPropertyValue", "schedule.recurrenceInterval"),
    ({"id": "s", "schedule": {"startWindow": "soon"}, "jobSpecification": {"poolInfo": {"poolId": "p"}}},
     "InvalidPropertyValue", "schedule.startWindow"),
    ({"id": "s", "schedule": {}, "jobSpecification": {}}, "MissingRequiredProperty", "jobSpecification.poolInfo"),
    ({"id": "bad id", "schedule": {}, "jobSpecification": {"poolInfo": {"poolId": "p"}}}, "InvalidPropertyValue", "id"),
])
def test_create_refusals_change_nothing(localbatch, body, code, name):
    status, _, answer = signed_send(localbatch, "POST", f"/jobschedules?api-version={API_VERSION}",
                                    json.dumps(body).encode())
    assert (status, answer["code"]) == (400, code)
    assert {"key": "PropertyName", "value": name} in answer["values"]
    assert localbatch.app.state.job_schedules == {} and localbatch.app.state.jobs == {}


def test_an_unknown_schedule_is_not_found_everywhere(batch_client):
    for call in (lambda: batch_client.get_job_schedule("nope"), lambda: batch_client.disable_job_schedule("nope"),
                 lambda: batch_client.enable_job_schedule("nope"),
                 lambda: batch_client.update_job_schedule("nope", models.BatchJobScheduleUpdateOptions()),
                 lambda: batch_client.begin_terminate_job_schedule("nope")):
        with pytest.raises(ResourceNotFoundError) as caught:
            call()
        assert error_of(caught) == (404, "JobScheduleNotFound")


def test_a_schedule_with_an_auto_pool_for_its_lifetime_shares_one_pool(localbatch, batch_client):
    fast(localbatch)
    auto = models.BatchAutoPoolSpecification(
        auto_pool_id_prefix="sched", pool_lifetime_option="jobschedule",
        pool=models.BatchPoolSpecification(vm_size="standard_d2s_v3", target_dedicated_nodes=1))
    create(batch_client, "pooled", models.BatchJobScheduleConfiguration(recurrence_interval=timedelta(minutes=1)),
           models.BatchJobSpecification(pool_info=models.BatchPoolInfo(auto_pool_specification=auto)))
    pool_id = batch_client.get_job("pooled:job-1").execution_info.pool_id
    assert pool_id.startswith("sched_")
    end(batch_client, "pooled:job-1")
    wait_for(lambda: len(list(batch_client.list_jobs_from_schedule("pooled"))) >= 2, message="second job")
    assert batch_client.get_job("pooled:job-2").execution_info.pool_id == pool_id
    batch_client.begin_delete_job_schedule("pooled", polling_interval=POLL).result()
    wait_for(lambda: pool_id not in [p.id for p in batch_client.list_pools()], message="the schedule's pool deleted")


def test_schedules_survive_a_restart(tmp_path):
    running = start(str(tmp_path), node_start_seconds=0.05)
    client = BatchClient(running.endpoint, AzureNamedKeyCredential(running.account_name, running.account_key))
    create(client, "lasting", models.BatchJobScheduleConfiguration(recurrence_interval=timedelta(days=1)))
    client.close()
    running.stop()
    running = start(str(tmp_path), node_start_seconds=0.05)
    client = BatchClient(running.endpoint, AzureNamedKeyCredential(running.account_name, running.account_key))
    try:
        schedule = client.get_job_schedule("lasting")
        assert schedule.execution_info.recent_job.id == "lasting:job-1"
        assert [j.id for j in client.list_jobs_from_schedule("lasting")] == ["lasting:job-1"]
    finally:
        client.close()
        running.stop()


def test_the_jobs_of_a_schedule_can_be_filtered(batch_client):
    create(batch_client, "filtered")
    assert [j.id for j in batch_client.list_jobs_from_schedule("filtered", filter="state eq 'active'")] == \
        ["filtered:job-1"]
    assert list(batch_client.list_jobs_from_schedule("filtered", filter="state eq 'completed'")) == []


def test_a_malformed_update_changes_nothing(batch_client):
    create(batch_client, "guarded", models.BatchJobScheduleConfiguration(recurrence_interval=timedelta(days=1)))
    before = batch_client.get_job_schedule("guarded")
    with pytest.raises(HttpResponseError) as caught:
        batch_client.update_job_schedule("guarded", {"schedule": {"recurrenceInterval": "PT10S"}})
    assert error_of(caught) == (400, "InvalidPropertyValue")
    after = batch_client.get_job_schedule("guarded")
    assert after.etag == before.etag and after.schedule.recurrence_interval == timedelta(days=1)


def test_a_scheduled_jobs_tasks_live_under_the_schedules_folder(batch_client):
    make_pool(batch_client, "pool-1", nodes=1)
    create(batch_client, "foldered")
    batch_client.create_task("foldered:job-1", task("t", sh("pwd")))
    done = wait_task_completed(batch_client, "foldered:job-1", "t")
    assert done.node_info.task_root_directory == "workitems/foldered/job-1/t"
    output = b"".join(batch_client.download_task_file("foldered:job-1", "t", "stdout.txt"))
    assert output.decode().strip().endswith("/workitems/foldered/job-1/t/wd")
