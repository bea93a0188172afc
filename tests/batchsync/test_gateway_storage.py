"""The storage gateway against a real Azurite: each SAS allows exactly what it says, and reads are bounded."""

import base64
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from batchsync.gateway import BlobStore, Containers, NotFound
from portal.logs.files import SavedFile, stream


@pytest.fixture
def store(azurite):
    names = uuid.uuid4().hex[:8]
    containers = Containers(inputs=f"in-{names}", logs=f"logs-{names}", outputs=f"out-{names}")
    with BlobStore(azurite.connection_string, containers) as blob_store:
        blob_store.ensure_containers(cors_origins=["http://127.0.0.1:8000"])
        yield blob_store


def http(method: str, url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_upload_url_writes_one_blob_and_cannot_read_it(store):
    url = store.upload_url("sub/abc/report.txt")

    status, _ = http("PUT", url, b"hello", {"x-ms-blob-type": "BlockBlob"})
    assert status == 201
    assert store.info(store.containers.inputs, "sub/abc/report.txt").size == 5
    assert http("GET", url)[0] == 403


def test_upload_url_allows_blocks_then_a_block_list(store):
    url = store.upload_url("big.bin")
    ids = []
    for index, chunk in enumerate([b"a" * 1000, b"b" * 500]):
        block_id = base64.b64encode(f"{index:06d}".encode()).decode()
        ids.append(block_id)
        status, _ = http("PUT", f"{url}&comp=block&blockid={urllib.parse.quote(block_id)}", chunk)
        assert status == 201
    body = "<?xml version='1.0' encoding='utf-8'?><BlockList>" + "".join(
        f"<Latest>{block_id}</Latest>" for block_id in ids) + "</BlockList>"
    assert http("PUT", f"{url}&comp=blocklist", body.encode())[0] == 201

    assert store.read_range(store.containers.inputs, "big.bin", 998, 4) == b"aabb"


def test_upload_url_is_scoped_to_its_blob(store):
    url = store.upload_url("mine.txt")
    other = url.replace("/mine.txt?", "/theirs.txt?")

    assert http("PUT", other, b"x", {"x-ms-blob-type": "BlockBlob"})[0] == 403
    assert store.info(store.containers.inputs, "theirs.txt") is None


def test_read_url_reads_and_cannot_write(store):
    store.put(store.containers.logs, "job/t1/stdout.txt", b"line one\n")
    url = store.read_url(store.containers.logs, "job/t1/stdout.txt")

    assert http("GET", url) == (200, b"line one\n")
    assert http("PUT", url, b"changed", {"x-ms-blob-type": "BlockBlob"})[0] == 403


def test_container_write_url_creates_blobs_but_cannot_list_or_read(store):
    url = store.container_write_url(store.containers.outputs, hours=1)
    base, token = url.split("?", 1)

    assert http("PUT", f"{base}/job/t1/out.txt?{token}", b"result", {"x-ms-blob-type": "BlockBlob"})[0] == 201
    assert http("GET", f"{base}/job/t1/out.txt?{token}")[0] == 403
    assert http("GET", f"{base}?restype=container&comp=list&{token}")[0] == 403
    assert [item.path for item in store.list_blobs(store.containers.outputs, "job/")] == ["job/t1/out.txt"]


def test_a_saved_blob_streams_in_bounded_pieces(store):
    data = bytes(range(256)) * 40
    store.put(store.containers.logs, "stream.bin", data)

    # As a saved log is downloaded: one ranged read_range per chunk.
    chunks = list(stream(SavedFile(store, store.info(store.containers.logs, "stream.bin")), chunk_bytes=1000))

    assert b"".join(chunks) == data
    assert max(len(chunk) for chunk in chunks) == 1000


def test_missing_blobs(store):
    assert store.info(store.containers.logs, "nope.txt") is None
    with pytest.raises(NotFound):
        store.read_range(store.containers.logs, "nope.txt", 0, 10)


def test_cors_lets_the_portal_origin_put(store, azurite):
    url = store.upload_url("cors.txt")
    status, _ = http("OPTIONS", url, headers={"Origin": "http://127.0.0.1:8000",
                                              "Access-Control-Request-Method": "PUT",
                                              "Access-Control-Request-Headers": "x-ms-blob-type"})
    assert status == 200
    assert http("OPTIONS", url, headers={"Origin": "http://evil.example",
                                         "Access-Control-Request-Method": "PUT"})[0] == 403


def test_a_prefix_is_listed_a_page_at_a_time_with_storages_continuation_token(store):
    for n in range(5):
        store.put(store.containers.outputs, f"job/t{n}/outputs/out.txt", b"x" * n)
    store.put(store.containers.outputs, "job-2/t0/outputs/out.txt", b"not this prefix")

    first, token = store.list_page(store.containers.outputs, "job/", size=2)
    second, token2 = store.list_page(store.containers.outputs, "job/", size=2, token=token)
    third, end = store.list_page(store.containers.outputs, "job/", size=2, token=token2)

    assert [b.path for b in first + second + third] == [f"job/t{n}/outputs/out.txt" for n in range(5)]
    assert [b.size for b in second] == [2, 3] and token and token2 and end is None
    assert [b.path for b in store.iter_blobs(store.containers.outputs, "job/", page_size=2)] == [
        f"job/t{n}/outputs/out.txt" for n in range(5)]
