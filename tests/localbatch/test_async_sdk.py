"""The async SDK client (azure.batch.aio, over aiohttp) against localbatch: the same smoke tests the sync client
passes — pools, jobs, tasks added, listed and read, task counts, file reads, a 304 conditional get, errors."""

import asyncio
import socket
from urllib.parse import urlsplit

import pytest
from azure.batch import models
from azure.batch.aio import BatchClient
from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

from localbatch import API_VERSION
from tests.localbatch.helpers import send, signed_headers

POLL = 0.05


def run(localbatch, scenario):
    """Run `scenario(client)` on a fresh event loop with an async client pointed at localbatch."""
    async def main():
        async with BatchClient(localbatch.endpoint,
                               AzureNamedKeyCredential(localbatch.account_name, localbatch.account_key)) as client:
            return await scenario(client)
    return asyncio.run(main())


async def wait_for(check, timeout: float = 20.0, message: str = "condition"):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(POLL)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


async def steady_pool(client, pool_id: str, nodes: int = 1) -> models.BatchPool:
    await client.create_pool(models.BatchPoolCreateOptions(id=pool_id, vm_size="standard_d2s_v3",
                                                           target_dedicated_nodes=nodes))

    async def steady():
        pool = await client.get_pool(pool_id)
        return pool if pool.allocation_state == "steady" and pool.current_dedicated_nodes == nodes else None
    return await wait_for(steady, message=f"pool {pool_id} steady")


async def completed(client, job_id: str, task_id: str) -> models.BatchTask:
    async def done():
        task = await client.get_task(job_id, task_id)
        return task if task.state == "completed" else None
    return await wait_for(done, message=f"task {task_id} completed")


async def read(iterator) -> bytes:
    return b"".join([chunk async for chunk in iterator])


def test_pools_and_nodes(localbatch):
    async def scenario(client):
        pool = await steady_pool(client, "async-pool", nodes=2)
        pools = [p.id async for p in client.list_pools()]
        nodes = [n async for n in client.list_nodes("async-pool")]
        with pytest.raises(ResourceExistsError) as exists:
            await client.create_pool(models.BatchPoolCreateOptions(id="async-pool", vm_size="standard_d2s_v3"))
        return pool, pools, nodes, exists.value

    pool, pools, nodes, exists = run(localbatch, scenario)

    assert (pool.id, pool.current_dedicated_nodes, pool.state) == ("async-pool", 2, "active")
    assert pools == ["async-pool"]
    assert len(nodes) == 2 and {node.state for node in nodes} == {"idle"}
    assert exists.error.code == "PoolExists" and exists.response.status_code == 409


def test_jobs_tasks_counts_and_files(localbatch):
    async def scenario(client):
        await steady_pool(client, "async-pool")
        await client.create_job(models.BatchJobCreateOptions(
            id="async-job", pool_info=models.BatchPoolInfo(pool_id="async-pool")))
        await client.create_task("async-job", models.BatchTaskCreateOptions(
            id="hello", command_line="/bin/sh -c 'printf 0123456789'"))
        added = await client.create_tasks("async-job", [
            models.BatchTaskCreateOptions(id=f"t{n:03d}", command_line=f"/bin/sh -c 'exit {n % 2}'")
            for n in range(150)])
        hello = await completed(client, "async-job", "hello")

        async def all_done():
            counts = await client.get_job_task_counts("async-job")
            return counts if counts.task_counts.completed == 151 else None
        counts = await wait_for(all_done, timeout=60, message="151 tasks completed")
        failed = [t.id async for t in client.list_tasks("async-job", filter="executionInfo/exitCode eq 1",
                                                        select=["id", "state"])]
        files = {f.name: f async for f in client.list_task_files("async-job", "hello")}
        whole = await read(await client.download_task_file("async-job", "hello", "stdout.txt"))
        part = await read(await client.download_task_file("async-job", "hello", "stdout.txt", ocp_range="bytes=2-5"))
        properties = await client.get_task_file_properties("async-job", "hello", "stdout.txt")
        jobs = [j.id async for j in client.list_jobs()]
        return added, hello, counts, failed, files, whole, part, properties, jobs

    added, hello, counts, failed, files, whole, part, properties, jobs = run(localbatch, scenario)

    assert len(added.result_values) == 150 and {r.status.lower() for r in added.result_values} == {"success"}
    assert (hello.state, hello.execution_info.exit_code, hello.execution_info.result) == ("completed", 0, "success")
    assert (counts.task_counts.succeeded, counts.task_counts.failed, counts.task_slot_counts.completed) == (76, 75, 151)
    assert sorted(failed) == [f"t{n:03d}" for n in range(1, 150, 2)]
    assert {"stdout.txt", "stderr.txt"} <= set(files) and files["stdout.txt"].properties.content_length == 10
    assert (whole, part, int(properties.content_length)) == (b"0123456789", b"2345", 10)
    assert jobs == ["async-job"]


# A 304 carries no body, as on the real service: aiohttp would read one as the next response's status line ("Bad
# status line") whenever it arrived after the 304 was parsed and the connection pooled, which depends on timing.
def test_a_304_carries_no_body_so_the_next_answer_on_the_connection_can_be_read(localbatch):
    run(localbatch, lambda client: steady_pool(client, "cached", nodes=0))
    path = f"/pools/cached?api-version={API_VERSION}"
    etag = send(localbatch, "GET", path, signed_headers(localbatch, "GET", path))[1]["etag"]
    conditional = signed_headers(localbatch, "GET", path, extra={"If-None-Match": etag})
    plain = signed_headers(localbatch, "GET", path)
    host, port = urlsplit(localbatch.endpoint).hostname, urlsplit(localbatch.endpoint).port

    # Two requests on one connection, as a pooling client sends them; the second answer must follow the 304's headers.
    with socket.create_connection((host, port), timeout=10) as connection:
        for headers in (conditional, plain):
            connection.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n".encode()
                               + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"\r\n")
        answer = b""
        while answer.count(b"HTTP/1.1 ") < 2 or not answer.rstrip().endswith(b"}"):
            answer += connection.recv(65536)

    not_modified, rest = answer.split(b"\r\n\r\n", 1)
    assert not_modified.startswith(b"HTTP/1.1 304 ")
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:80]


def test_a_conditional_get_answers_304_and_the_connection_goes_on(localbatch):
    async def scenario(client):
        pool = await steady_pool(client, "cached", nodes=0)
        statuses, again = [], []
        # Each next request may reuse the pooled connection the 304 came on, which a body after the 304 would
        # leave unreadable; twenty rounds make sure some of them do.
        for _ in range(20):
            with pytest.raises(ResourceModifiedError) as not_modified:   # the SDK's BatchExceptionPolicy maps 304 so
                await client.get_pool("cached", etag=pool.etag, match_condition=MatchConditions.IfModified)
            statuses.append(not_modified.value.response.status_code)
            again.append((await client.get_pool("cached")).id)
        modified = await client.get_pool("cached", etag="0x8D0000000000000", match_condition=MatchConditions.IfModified)
        return statuses, again, modified

    statuses, again, modified = run(localbatch, scenario)

    assert statuses == [304] * 20
    assert again == ["cached"] * 20 and modified.id == "cached"


def test_errors_carry_batchs_codes(localbatch):
    async def scenario(client):
        caught = {}
        for name, call in [("pool", client.get_pool("nope")), ("job", client.get_job("nope")),
                           ("task", client.get_task("nope", "t")),
                           ("file", read_all(client.download_task_file("nope", "t", "stdout.txt")))]:
            with pytest.raises(ResourceNotFoundError) as error:
                await call
            caught[name] = error.value
        return caught

    caught = run(localbatch, scenario)

    assert {name: error.response.status_code for name, error in caught.items()} == dict.fromkeys(caught, 404)
    assert (caught["pool"].error.code, caught["job"].error.code) == ("PoolNotFound", "JobNotFound")
    assert caught["task"].error.code == "JobNotFound"


async def read_all(download):
    return await read(await download)
