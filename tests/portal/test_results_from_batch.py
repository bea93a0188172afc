"""Results as tasks really leave them: the shipped count-words example run on localbatch through the real SDK, its
outputs uploaded by the task's own output rule to Azurite, the mirror synced, and the results pages read back. And
what a person sees when Batch could not upload them (localbatch reports FileUploadContainerNotFound as Batch does)."""

import uuid
from datetime import datetime, timedelta
from datetime import timezone as tz

import pytest
from azure.storage.blob import ContainerSasPermissions, generate_container_sas
from django.urls import reverse

from batchsync import submit
from batchsync.accounts import blob_store, default_account
from batchsync.submit import link_submitted_jobs
from batchsync.sync import sync_account
from portal.models import JobTemplate, Task
from portal.submit import services
from portal.submit.values import InputFile
from tests.batchsync import test_submit as submit_tests
from tests.localbatch.helpers import wait_for
from tests.portal.pages import text

pytestmark = pytest.mark.django_db

# The submit tests' fixtures: a gateway on this test's localbatch, the examples' pool with two idle nodes.
gateway, running_pool = submit_tests.gateway, submit_tests.running_pool


@pytest.fixture
def storage(azurite, settings):
    settings.AZURE_STORAGE_CONNECTION_STRING = azurite.connection_string
    settings.STORAGE_OUTPUTS_CONTAINER = f"out-{uuid.uuid4().hex[:12]}"
    settings.STORAGE_LOGS_CONTAINER = f"logs-{uuid.uuid4().hex[:12]}"
    settings.STORAGE_INPUTS_CONTAINER = f"in-{uuid.uuid4().hex[:12]}"
    with blob_store() as store:
        store.ensure_containers()
        yield store


def count_words(store, user, gateway) -> str:
    """Submit the count-words example over two files and wait for its job to end; its id."""
    files = []
    for name, words in [("one.txt", "a b c"), ("two words.txt", "hello world\n")]:
        store.put(store.containers.inputs, name, words.encode())
        url = store.read_url(store.containers.inputs, name)
        files.append(InputFile(name=name, url=url, size=len(words)))
    version = JobTemplate.objects.get(slug="count-words").current_version()
    assert version.parsed.outputs, "the shipped example saves its counts (migration 0010)"
    submission = services.submission_create(user=user, template_version=version, parameters={},
                                            uploaded_files={"texts": files})
    submit.submit_submission(submission.pk)
    wait_for(lambda: gateway.get_job(submission.job_id).state == "completed", timeout=60, message="the job to end")
    sync_account(default_account())
    link_submitted_jobs()
    return submission.job_id


def test_the_examples_counts_are_its_results(signed_in, storage, user, gateway, running_pool):
    job_id = count_words(storage, user, gateway)

    task = Task.objects.get(job__job_id=job_id, task_id="t00002")
    page = text(signed_in.get(reverse("job_results", args=[task.job.pk])))
    assert page.count(">count.txt</td>") == 2 and "count.txt" in page.split('id="output-rules"')[1]
    preview = text(signed_in.get(reverse("task_result_preview", args=[task.pk]), {"name": "count.txt"}))
    assert "2 inputs/two words.txt" in preview


def test_outputs_that_could_not_be_uploaded_are_said_on_the_tasks_results(signed_in, storage, user, gateway,
                                                                          running_pool, settings, azurite):
    # A container that does not exist: Batch (and localbatch) end the task with FileUploadContainerNotFound.
    token = generate_container_sas(azurite.account_name, "no-such-container", account_key=azurite.account_key,
                                   permission=ContainerSasPermissions(create=True, write=True),
                                   expiry=datetime.now(tz.utc) + timedelta(hours=1))
    settings.SUBMISSION_OUTPUTS_CONTAINER_URL = f"{azurite.blob_endpoint}/no-such-container?{token}"

    job_id = count_words(storage, user, gateway)

    task = Task.objects.get(job__job_id=job_id, task_id="t00001")
    assert task.failure_code == "FileUploadContainerNotFound" and task.output_upload_failed
    section = text(signed_in.get(reverse("task_results", args=[task.pk])))
    assert 'id="upload-failed"' in section and "FileUploadContainerNotFound" in section
    page = text(signed_in.get(reverse("job_results", args=[task.job.pk])))
    assert 'id="upload-failures"' in page and "t00001" in page and "t00002" in page
