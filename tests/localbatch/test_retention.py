"""Retention: a completed task's folder is removed once its retentionTime has passed."""

import os

import pytest
from azure.batch import models
from azure.core.exceptions import ResourceExistsError

from tests.localbatch.helpers import make_job, make_pool, wait_for, wait_task_completed


def test_task_folder_is_removed_after_retention_time(batch_client, localbatch):
    make_pool(batch_client)
    make_job(batch_client)
    batch_client.create_task("job-1", models.BatchTaskCreateOptions(
        id="short", command_line="/bin/sh -c 'echo kept briefly'",
        constraints=models.BatchTaskConstraints(retention_time="PT1S")))
    batch_client.create_task("job-1", models.BatchTaskCreateOptions(id="long", command_line="/bin/true"))
    wait_task_completed(batch_client, "job-1", "short")
    wait_task_completed(batch_client, "job-1", "long")
    short_dir = localbatch.app.state.tasks["job-1"]["short"]["_dir"]
    assert os.path.isfile(os.path.join(short_dir, "stdout.txt"))

    wait_for(lambda: not os.path.exists(short_dir), timeout=15, message="the retained folder to be removed")
    with pytest.raises(ResourceExistsError) as cleaned:
        list(batch_client.list_task_files("job-1", "short"))
    assert cleaned.value.error.code == "TaskFilesCleanedup"
    # The task itself stays, and a task with the default 7-day retention keeps its files.
    assert batch_client.get_task("job-1", "short").state == "completed"
    assert "stdout.txt" in {f.name for f in batch_client.list_task_files("job-1", "long")}


def test_files_of_a_task_that_never_ran_are_unavailable(batch_client):
    make_pool(batch_client, nodes=0)
    make_job(batch_client)
    batch_client.create_task("job-1", models.BatchTaskCreateOptions(id="waiting", command_line="/bin/true"))
    with pytest.raises(ResourceExistsError) as unavailable:
        list(batch_client.list_task_files("job-1", "waiting"))
    assert unavailable.value.error.code == "TaskFilesUnavailable"
