"""Resource files and output files through a real Azurite blob service, driven by the real SDK."""

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from azure.batch import models
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContainerSasPermissions,
    generate_blob_sas,
    generate_container_sas,
)

from .helpers import make_job, make_pool, wait_for, wait_task_completed


@pytest.fixture
def blobs(azurite):
    return BlobServiceClient.from_connection_string(azurite.connection_string)


def new_container(blobs, contents: dict[str, bytes] | None = None) -> str:
    name = f"c{uuid.uuid4().hex[:20]}"
    container = blobs.create_container(name)
    for blob_name, data in (contents or {}).items():
        container.upload_blob(blob_name, data)
    return name


def _expiry():
    return datetime.now(timezone.utc) + timedelta(hours=1)


def blob_url(azurite, container: str, blob: str) -> str:
    sas = generate_blob_sas(azurite.account_name, container, blob, account_key=azurite.account_key,
                            permission=BlobSasPermissions(read=True), expiry=_expiry())
    return f"{azurite.blob_endpoint}/{container}/{blob}?{sas}"


def container_url(azurite, container: str, **permissions) -> str:
    sas = generate_container_sas(azurite.account_name, container, account_key=azurite.account_key,
                                 permission=ContainerSasPermissions(**permissions), expiry=_expiry())
    return f"{azurite.blob_endpoint}/{container}?{sas}"


def write_url(azurite, container: str) -> str:
    return container_url(azurite, container, write=True, create=True)


def blob_contents(blobs, container: str) -> dict[str, bytes]:
    client = blobs.get_container_client(container)
    return {b.name: client.download_blob(b.name).readall() for b in client.list_blobs()}


def read_task_file(client, job_id: str, task_id: str, path: str) -> bytes:
    return b"".join(client.download_task_file(job_id, task_id, path))


def task_file_names(client, job_id: str, task_id: str) -> set[str]:
    return {f.name for f in client.list_task_files(job_id, task_id, recursive=True)}


def output(pattern: str, url: str, path: str | None = None, condition: str = "taskcompletion") -> models.OutputFile:
    return models.OutputFile(
        file_pattern=pattern,
        destination=models.OutputFileDestination(
            container=models.OutputFileBlobContainerDestination(container_url=url, path=path)),
        upload_options=models.OutputFileUploadConfiguration(upload_condition=condition))


def run_task(client, task_id: str, command: str, job_id: str = "job-1", **options):
    client.create_task(job_id, models.BatchTaskCreateOptions(id=task_id, command_line=command, **options))
    return wait_task_completed(client, job_id, task_id)


@pytest.fixture
def job(batch_client):
    make_pool(batch_client)
    return make_job(batch_client)


def failure_text(task) -> str:
    return json.dumps(task.execution_info.failure_info.as_dict())


# -- resource files -----------------------------------------------------------------------------

def test_http_url_resource_file_lands_in_wd_with_its_mode(batch_client, job, azurite, blobs):
    container = new_container(blobs, {"tools/run.sh": b"#!/bin/sh\necho hello-from-script\n",
                                      "data.txt": b"plain data\n"})
    task = run_task(
        batch_client, "t1", '/bin/sh -c "stat -c %a bin/run.sh data.txt && ./bin/run.sh"',
        resource_files=[
            models.ResourceFile(http_url=blob_url(azurite, container, "tools/run.sh"), file_path="bin/run.sh",
                                file_mode="0755"),
            models.ResourceFile(http_url=blob_url(azurite, container, "data.txt"), file_path="data.txt"),
        ])

    assert task.execution_info.exit_code == 0, read_task_file(batch_client, job, "t1", "stderr.txt")
    assert task.execution_info.failure_info is None
    # 0755 as asked; the file without fileMode gets Batch's default 0770.
    assert read_task_file(batch_client, job, "t1", "stdout.txt") == b"755\n770\nhello-from-script\n"
    assert read_task_file(batch_client, job, "t1", "wd/bin/run.sh") == b"#!/bin/sh\necho hello-from-script\n"
    assert read_task_file(batch_client, job, "t1", "wd/data.txt") == b"plain data\n"
    assert batch_client.get_task_file_properties(job, "t1", "wd/bin/run.sh").file_mode == "0o100755"


def test_container_resource_files_take_only_the_prefix_and_keep_the_tree(batch_client, job, azurite, blobs):
    container = new_container(blobs, {"data/a.txt": b"A", "data/sub/b.txt": b"BB", "database.txt": b"not me",
                                      "other/c.txt": b"C"})
    task = run_task(
        batch_client, "t1", "/bin/true",
        resource_files=[models.ResourceFile(
            storage_container_url=container_url(azurite, container, read=True, list=True),
            blob_prefix="data/", file_path="inputs")])

    assert task.execution_info.exit_code == 0
    assert task.execution_info.failure_info is None
    wd_files = {n for n in task_file_names(batch_client, job, "t1") if n.startswith("wd/")}
    assert wd_files == {"wd/inputs", "wd/inputs/data", "wd/inputs/data/sub",
                        "wd/inputs/data/a.txt", "wd/inputs/data/sub/b.txt"}
    assert read_task_file(batch_client, job, "t1", "wd/inputs/data/a.txt") == b"A"
    assert read_task_file(batch_client, job, "t1", "wd/inputs/data/sub/b.txt") == b"BB"


def test_container_resource_files_without_file_path_go_to_wd(batch_client, job, azurite, blobs):
    container = new_container(blobs, {"x/one.txt": b"1", "two.txt": b"2"})
    task = run_task(batch_client, "t1", '/bin/sh -c "cat x/one.txt two.txt"', resource_files=[
        models.ResourceFile(storage_container_url=container_url(azurite, container, read=True, list=True))])

    assert task.execution_info.exit_code == 0
    assert read_task_file(batch_client, job, "t1", "stdout.txt") == b"12"


def test_missing_blob_is_a_preprocessing_failure_that_is_not_retried(batch_client, azurite, blobs):
    make_pool(batch_client)
    make_job(batch_client, constraints=models.BatchJobConstraints(max_task_retry_count=3))
    container = new_container(blobs)
    url = blob_url(azurite, container, "no-such-blob.bin")
    assert "sig=" in url

    task = run_task(batch_client, "t1", '/bin/sh -c "echo ran > ran.txt"',
                    resource_files=[models.ResourceFile(http_url=url, file_path="in.bin")],
                    constraints=models.BatchTaskConstraints(max_task_retry_count=3))

    info = task.execution_info
    assert info.failure_info.code == "BlobNotFound"
    assert info.failure_info.category == "usererror"
    assert info.exit_code is None
    assert info.result == "failure"
    assert info.retry_count == 0
    assert "sig=" not in failure_text(task)
    assert "wd/ran.txt" not in task_file_names(batch_client, "job-1", "t1")
    counts = batch_client.get_job_task_counts("job-1").task_counts
    assert (counts.completed, counts.failed, counts.active) == (1, 1, 0)


def test_missing_container_is_blob_not_found_without_the_sas(batch_client, job, azurite):
    url = container_url(azurite, f"c{uuid.uuid4().hex[:20]}", read=True, list=True)
    task = run_task(batch_client, "t1", "/bin/true",
                    resource_files=[models.ResourceFile(storage_container_url=url)])

    assert task.execution_info.failure_info.code == "BlobNotFound"
    assert task.execution_info.failure_info.category == "usererror"
    assert task.execution_info.exit_code is None
    assert "sig=" not in failure_text(task)


def test_a_bad_sas_is_access_denied_without_the_sas(batch_client, job, azurite, blobs):
    container = new_container(blobs, {"secret.txt": b"s"})
    url = blob_url(azurite, container, "secret.txt").replace("sig=", "sig=AAAA")
    task = run_task(batch_client, "t1", "/bin/true", resource_files=[models.ResourceFile(http_url=url, file_path="s")])

    assert task.execution_info.failure_info.code == "BlobAccessDenied"
    assert task.execution_info.exit_code is None
    assert "sig=" not in failure_text(task)


def test_start_task_resource_files_land_in_startup_wd(batch_client, azurite, blobs):
    container = new_container(blobs, {"setup/tool.cfg": b"tool-config\n"})
    start_task = models.BatchStartTask(
        command_line='/bin/sh -c "cat tool.cfg"', wait_for_success=True,
        resource_files=[models.ResourceFile(http_url=blob_url(azurite, container, "setup/tool.cfg"),
                                            file_path="tool.cfg")])
    make_pool(batch_client, start_task=start_task)
    node = wait_for(lambda: (n := next(iter(batch_client.list_nodes("pool-1")), None)) and n.state == "idle" and n,
                    message="node idle after its start task")

    assert node.start_task_info.result == "success"
    assert node.start_task_info.exit_code == 0
    read = lambda path: b"".join(batch_client.download_node_file("pool-1", node.id, path))  # noqa: E731
    assert read("startup/wd/tool.cfg") == b"tool-config\n"
    assert read("startup/stdout.txt") == b"tool-config\n"


def test_start_task_with_a_missing_resource_file_fails_the_node(batch_client, azurite, blobs):
    container = new_container(blobs)
    start_task = models.BatchStartTask(
        command_line="/bin/true", wait_for_success=True, max_task_retry_count=2,
        resource_files=[models.ResourceFile(http_url=blob_url(azurite, container, "gone.cfg"), file_path="gone.cfg")])
    make_pool(batch_client, start_task=start_task)
    node = wait_for(lambda: (n := next(iter(batch_client.list_nodes("pool-1")), None))
                    and n.state == "starttaskfailed" and n, message="node starttaskfailed")

    assert node.start_task_info.failure_info.code == "BlobNotFound"
    assert node.start_task_info.exit_code is None
    assert node.start_task_info.retry_count == 0
    assert "sig=" not in json.dumps(node.start_task_info.failure_info.as_dict())


# -- output files -------------------------------------------------------------------------------

def test_stdout_and_stderr_upload_under_a_virtual_directory(batch_client, job, azurite, blobs):
    container = new_container(blobs)
    task = run_task(batch_client, "t1", '/bin/sh -c "echo out-line; echo err-line >&2"',
                    output_files=[output("../std*.txt", write_url(azurite, container), path="logs/t1")])

    assert task.execution_info.exit_code == 0
    assert task.execution_info.failure_info is None
    assert blob_contents(blobs, container) == {"logs/t1/stdout.txt": b"out-line\n",
                                                "logs/t1/stderr.txt": b"err-line\n"}
    names = task_file_names(batch_client, job, "t1")
    assert "fileuploadout.txt" in names
    assert b"logs/t1/stdout.txt" in read_task_file(batch_client, job, "t1", "fileuploadout.txt")


def test_double_star_pattern_keeps_subdirectories_and_skips_dot_files(batch_client, job, azurite, blobs):
    container = new_container(blobs)
    command = ('/bin/sh -c "mkdir -p sub/deep && echo a > a.csv && echo b > sub/b.csv && echo c > sub/deep/c.csv'
               ' && echo x > x.txt && echo h > .hidden.csv"')
    task = run_task(batch_client, "t1", command,
                    output_files=[output("**/*.csv", write_url(azurite, container), path="results")])

    assert task.execution_info.exit_code == 0
    assert blob_contents(blobs, container) == {"results/a.csv": b"a\n", "results/sub/b.csv": b"b\n",
                                                "results/sub/deep/c.csv": b"c\n"}


def test_wildcard_below_a_fixed_directory_is_relative_to_that_directory(batch_client, job, azurite, blobs):
    container = new_container(blobs)
    task = run_task(batch_client, "t1", '/bin/sh -c "mkdir -p out/n && echo 1 > out/one.dat && echo 2 > out/n/two.dat"',
                    output_files=[output("out/**/*.dat", write_url(azurite, container))])

    assert task.execution_info.exit_code == 0
    assert blob_contents(blobs, container) == {"one.dat": b"1\n", "n/two.dat": b"2\n"}


def test_a_pattern_without_wildcards_uploads_to_exactly_path(batch_client, job, azurite, blobs):
    container = new_container(blobs)
    url = write_url(azurite, container)
    task = run_task(batch_client, "t1", '/bin/sh -c "mkdir report && echo {} > report/summary.json"',
                    output_files=[output("report/summary.json", url, path="final/run-7.json"),
                                  output("report/summary.json", url)])

    assert task.execution_info.exit_code == 0
    # With path: exactly that blob name; without: the file's name at the container root.
    assert blob_contents(blobs, container) == {"final/run-7.json": b"{}\n", "summary.json": b"{}\n"}


def _conditions(url: str) -> list[models.OutputFile]:
    return [output("result.txt", url, path="success/result.txt", condition="tasksuccess"),
            output("result.txt", url, path="failure/result.txt", condition="taskfailure"),
            output("result.txt", url, path="always/result.txt", condition="taskcompletion")]


def test_upload_conditions_for_a_failing_task(batch_client, job, azurite, blobs):
    container = new_container(blobs)
    task = run_task(batch_client, "t1", '/bin/sh -c "echo bad > result.txt; exit 3"',
                    output_files=_conditions(write_url(azurite, container)))

    assert task.execution_info.exit_code == 3
    assert task.execution_info.failure_info.code == "FailureExitCode"
    assert blob_contents(blobs, container) == {"failure/result.txt": b"bad\n", "always/result.txt": b"bad\n"}


def test_upload_conditions_for_a_succeeding_task(batch_client, job, azurite, blobs):
    container = new_container(blobs)
    task = run_task(batch_client, "t1", '/bin/sh -c "echo good > result.txt"',
                    output_files=_conditions(write_url(azurite, container)))

    assert task.execution_info.exit_code == 0
    assert task.execution_info.failure_info is None
    assert blob_contents(blobs, container) == {"success/result.txt": b"good\n", "always/result.txt": b"good\n"}


def test_a_missing_output_container_fails_the_task_without_retry(batch_client, azurite):
    make_pool(batch_client)
    make_job(batch_client)
    url = write_url(azurite, f"c{uuid.uuid4().hex[:20]}")
    task = run_task(batch_client, "t1", '/bin/sh -c "echo data > out.txt"',
                    output_files=[output("out.txt", url)],
                    constraints=models.BatchTaskConstraints(max_task_retry_count=2))

    info = task.execution_info
    assert info.failure_info.code == "FileUploadContainerNotFound"
    assert info.failure_info.category == "usererror"
    assert info.exit_code == 0
    assert info.result == "failure"
    assert info.retry_count == 0
    assert "sig=" not in failure_text(task)
    names = task_file_names(batch_client, "job-1", "t1")
    assert {"fileuploadout.txt", "fileuploaderr.txt"} <= names
    assert read_task_file(batch_client, "job-1", "t1", "fileuploaderr.txt") != b""


def test_nothing_matching_uploads_nothing_and_succeeds(batch_client, job, azurite, blobs):
    container = new_container(blobs)
    task = run_task(batch_client, "t1", "/bin/true",
                    output_files=[output("*.none", write_url(azurite, container), path="x")])

    assert task.execution_info.exit_code == 0
    assert task.execution_info.failure_info is None
    assert blob_contents(blobs, container) == {}
    assert "fileuploadout.txt" in task_file_names(batch_client, job, "t1")
