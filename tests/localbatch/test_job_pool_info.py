"""Updating and replacing a job whose pool is an autoPoolSpecification, through the real azure-batch SDK:
the get-change-replace round trip clients do, keepAlive, and what the service refuses."""

import pytest
from azure.batch import models
from azure.core.exceptions import HttpResponseError

AUTO = models.BatchAutoPoolSpecification(
    auto_pool_id_prefix="auto", pool_lifetime_option="job",
    pool=models.BatchPoolSpecification(vm_size="standard_d2s_v3", target_dedicated_nodes=1,
                                       task_scheduling_policy=models.BatchTaskSchedulingPolicy(node_fill_type="pack")))


def error_of(caught) -> tuple[int, str | None]:
    return caught.value.response.status_code, caught.value.error.code


def details_of(caught) -> dict:
    return {d.code: d.message for d in caught.value.error.details}


def auto_job(client, job_id: str = "job-1", spec: models.BatchAutoPoolSpecification = AUTO) -> models.BatchJob:
    client.create_job(models.BatchJobCreateOptions(id=job_id, pool_info=models.BatchPoolInfo(
        auto_pool_specification=spec)))
    return client.get_job(job_id)


def test_a_job_read_changed_and_replaced_keeps_its_auto_pool(batch_client):
    job = auto_job(batch_client)
    pool_id = job.execution_info.pool_id
    job.priority = 7
    batch_client.replace_job("job-1", job)
    again = batch_client.get_job("job-1")
    assert again.priority == 7
    assert again.execution_info.pool_id == pool_id
    assert again.pool_info.auto_pool_specification.pool.vm_size == "standard_d2s_v3"
    assert [p.id for p in batch_client.list_pools()] == [pool_id]


def test_keep_alive_can_be_changed_for_a_job_lifetime_auto_pool(batch_client):
    job = auto_job(batch_client)
    job.pool_info.auto_pool_specification.keep_alive = True
    batch_client.update_job("job-1", models.BatchJobUpdateOptions(pool_info=job.pool_info))
    assert batch_client.get_job("job-1").pool_info.auto_pool_specification.keep_alive is True


def test_only_keep_alive_of_an_auto_pool_may_change(batch_client):
    job = auto_job(batch_client)
    job.pool_info.auto_pool_specification.pool_lifetime_option = "jobschedule"
    with pytest.raises(HttpResponseError) as caught:
        batch_client.replace_job("job-1", job)
    assert error_of(caught) == (400, "InvalidPropertyValue")
    assert "keepAlive" in details_of(caught)["Reason"]
    assert batch_client.get_job("job-1").pool_info.auto_pool_specification.pool_lifetime_option == "job"


def test_a_job_on_a_pool_cannot_be_moved_to_an_auto_pool(batch_client):
    batch_client.create_job(models.BatchJobCreateOptions(id="fixed", pool_info=models.BatchPoolInfo(pool_id="p")))
    with pytest.raises(HttpResponseError) as caught:
        batch_client.update_job("fixed", models.BatchJobUpdateOptions(
            pool_info=models.BatchPoolInfo(auto_pool_specification=AUTO)))
    assert error_of(caught) == (400, "InvalidPropertyValue")
    assert batch_client.get_job("fixed").pool_info.pool_id == "p"


def test_an_auto_pool_with_a_formula_survives_the_round_trip(batch_client):
    spec = models.BatchAutoPoolSpecification(
        pool_lifetime_option="job", pool=models.BatchPoolSpecification(
            vm_size="standard_d2s_v3", enable_auto_scale=True, auto_scale_formula="$TargetDedicatedNodes = 1"))
    job = auto_job(batch_client, "scaled", spec)
    pool = batch_client.get_pool(job.execution_info.pool_id)
    assert pool.enable_auto_scale is True and pool.target_dedicated_nodes == 1
    job.max_parallel_tasks = 3
    batch_client.replace_job("scaled", job)
    assert batch_client.get_job("scaled").max_parallel_tasks == 3
