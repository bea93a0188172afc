"""SharedKey authentication of localbatch, through real HTTP and the real azure-batch SDK.

The SDK must be accepted on every kind of request it sends (encoded ids and file paths, nextLink
pages, bodiless POSTs); anything not signed with the account's key, for this account, recently,
over exactly this URL must be refused with 403 AuthenticationFailed and change nothing. The last
tests pin localbatch.auth.string_to_sign to the SDK's own BatchSharedKeyAuthPolicy."""

import base64
import json
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
from azure.batch import BatchClient, models
from azure.batch._patch import BatchSharedKeyAuthPolicy
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.rest import HttpRequest

from localbatch import API_VERSION, auth
from tests.localbatch.helpers import (
    http_date,
    make_job,
    make_pool,
    send,
    signed_headers,
    signed_send,
    wait_task_completed,
)

OTHER_KEY = base64.b64encode(b"not the localbatch account key, but valid base64").decode()


# -- helpers ----------------------------------------------------------------------------------

def assert_auth_failed(status: int, body) -> dict:
    assert status == 403
    assert isinstance(body, dict), body
    assert body["code"] == "AuthenticationFailed"
    values = {item["key"]: item["value"] for item in body["values"]}
    assert "AuthenticationErrorDetail" in values
    return values


def client_with(localbatch, account: str, key: str) -> BatchClient:
    return BatchClient(localbatch.endpoint, AzureNamedKeyCredential(account, key))


def pool_options(pool_id: str) -> models.BatchPoolCreateOptions:
    return models.BatchPoolCreateOptions(id=pool_id, vm_size="standard_d2s_v3", target_dedicated_nodes=0)


# -- the SDK is accepted ------------------------------------------------------------------------

def test_sdk_signed_requests_pass_for_every_request_shape(localbatch, batch_client):
    """A pool, a job, a task whose output sits under a directory with a space: POST with body,
    GET with encoded file paths (%2F, %20), HEAD, bodiless POST, DELETE all authenticate."""
    make_pool(batch_client, "auth-pool")
    make_job(batch_client, "auth-job", "auth-pool")
    batch_client.create_task("auth-job", models.BatchTaskCreateOptions(
        id="t1", command_line="/bin/sh -c 'mkdir -p \"sub dir\" && printf payload-42 > \"sub dir/out file.txt\"'"))
    task = wait_task_completed(batch_client, "auth-job", "t1")
    assert task.execution_info.exit_code == 0

    # GET /jobs/auth-job/tasks/t1/files/wd%2Fsub%20dir%2Fout%20file.txt
    content = b"".join(batch_client.download_task_file("auth-job", "t1", "wd/sub dir/out file.txt"))
    assert content == b"payload-42"
    props = batch_client.get_task_file_properties("auth-job", "t1", "wd/sub dir/out file.txt")
    assert int(props.content_length) == len(b"payload-42")
    assert props.is_directory is False
    names = {f.name for f in batch_client.list_task_files("auth-job", "t1", recursive=True)}
    assert "wd/sub dir/out file.txt" in names

    # Node files: the path segment is startup%2F... on the wire.
    node = next(iter(batch_client.list_nodes("auth-pool")))
    assert node.state == "idle"
    assert batch_client.get_node_file_properties("auth-pool", node.id, "startup").is_directory is True

    # Bodiless POST (content-length signed as "0") and DELETE.
    batch_client.create_task("auth-job", models.BatchTaskCreateOptions(id="t2", command_line="sleep 30"))
    batch_client.terminate_task("auth-job", "t2")
    assert wait_task_completed(batch_client, "auth-job", "t2").execution_info.failure_info.code == "TaskEnded"
    batch_client.delete_task("auth-job", "t2")
    with pytest.raises(ResourceNotFoundError):
        batch_client.get_task("auth-job", "t2")


@pytest.mark.parametrize("odd_id", ["a/b", "with space", "100%", "ünïcode", "q?x=1&y"])
def test_odd_ids_in_the_path_authenticate_and_reach_the_handler(batch_client, odd_id):
    """Ids are sent quote(safe=""): %2F, %20, %25, UTF-8 and ?/& escapes. The signature must still
    verify (so the answer is 404 PoolNotFound, not 403)."""
    with pytest.raises(ResourceNotFoundError) as caught:
        batch_client.get_pool(odd_id)
    assert caught.value.response.status_code == 404
    assert caught.value.error.code == "PoolNotFound"


def test_next_link_pages_are_signed_and_accepted(localbatch, batch_client):
    for index in range(5):
        make_job(batch_client, f"page-job-{index}", "no-pool")
    pages = list(batch_client.list_jobs(max_results=2, filter="startswith(id,'page-job')").by_page())
    ids = [[job.id for job in page] for page in pages]
    assert ids == [["page-job-0", "page-job-1"], ["page-job-2", "page-job-3"], ["page-job-4"]]


# -- everything else is refused -----------------------------------------------------------------

def test_wrong_key_gets_403_authentication_failed(localbatch, batch_client):
    make_pool(batch_client, "existing", nodes=0)
    bad = client_with(localbatch, localbatch.account_name, OTHER_KEY)
    with pytest.raises(HttpResponseError) as caught:
        bad.get_pool("existing")
    assert caught.value.response.status_code == 403
    assert caught.value.error.code == "AuthenticationFailed"
    details = {d.code: d.message for d in caught.value.error.details}
    assert "is not the same as any computed signature" in details["AuthenticationErrorDetail"]


def test_wrong_key_changes_nothing(localbatch, batch_client):
    bad = client_with(localbatch, localbatch.account_name, OTHER_KEY)
    with pytest.raises(HttpResponseError) as caught:
        bad.create_pool(pool_options("intruder-pool"))
    assert (caught.value.response.status_code, caught.value.error.code) == (403, "AuthenticationFailed")
    with pytest.raises(HttpResponseError) as caught:
        bad.create_job(models.BatchJobCreateOptions(id="intruder-job", pool_info=models.BatchPoolInfo(pool_id="x")))
    assert caught.value.error.code == "AuthenticationFailed"

    with pytest.raises(ResourceNotFoundError) as missing:
        batch_client.get_pool("intruder-pool")
    assert missing.value.error.code == "PoolNotFound"
    assert list(batch_client.list_pools()) == []
    assert list(batch_client.list_jobs()) == []
    assert localbatch.app.state.pools == {} and localbatch.app.state.jobs == {}

    # Nor can it delete or resize what exists.
    make_pool(batch_client, "victim", nodes=0)
    with pytest.raises(HttpResponseError) as caught:
        bad.begin_delete_pool("victim", polling_interval=0.05)
    assert caught.value.error.code == "AuthenticationFailed"
    with pytest.raises(HttpResponseError) as caught:
        bad.begin_resize_pool("victim", models.BatchPoolResizeOptions(target_dedicated_nodes=3))
    assert caught.value.error.code == "AuthenticationFailed"
    pool = batch_client.get_pool("victim")
    assert (pool.state, pool.allocation_state, pool.target_dedicated_nodes) == ("active", "steady", 0)


def test_wrong_account_name_is_refused(localbatch, batch_client):
    """Right key, other account: the name is checked, and it is part of the string to sign."""
    other = client_with(localbatch, "someotheraccount", localbatch.account_key)
    with pytest.raises(HttpResponseError) as caught:
        other.create_pool(pool_options("other-account-pool"))
    assert caught.value.response.status_code == 403
    assert caught.value.error.code == "AuthenticationFailed"
    details = {d.code: d.message for d in caught.value.error.details}
    assert "someotheraccount" in details["AuthenticationErrorDetail"]
    assert list(batch_client.list_pools()) == []


def test_missing_authorization_header(localbatch):
    path = f"/pools?api-version={API_VERSION}"
    status, _, body = send(localbatch, "GET", path, {"ocp-date": http_date()})
    values = assert_auth_failed(status, body)
    assert "missing" in values["AuthenticationErrorDetail"]

    # The same request signed correctly is answered, so the refusal above is about the header.
    status, _, body = signed_send(localbatch, "GET", path)
    assert status == 200 and body["value"] == []


@pytest.mark.parametrize("authorization", [
    "Bearer abc",                 # another scheme
    "SharedKey localbatch",       # no signature
    "SharedKey localbatch:",      # empty signature
    "SharedKeyLite localbatch:AAAA",
])
def test_malformed_authorization_header(localbatch, authorization):
    status, _, body = send(localbatch, "GET", f"/pools?api-version={API_VERSION}",
                           {"ocp-date": http_date(), "Authorization": authorization})
    assert_auth_failed(status, body)


def test_missing_ocp_date(localbatch):
    path = f"/pools?api-version={API_VERSION}"
    headers = {"Authorization": auth.authorization_header("GET", path, {}, localbatch.account_name,
                                                          localbatch.account_key)}
    status, _, body = send(localbatch, "GET", path, headers)
    values = assert_auth_failed(status, body)
    assert "ocp-date" in values["AuthenticationErrorDetail"]


@pytest.mark.parametrize("skew, accepted", [
    (timedelta(minutes=-20), False),   # too old
    (timedelta(minutes=20), False),    # too far in the future
    (timedelta(minutes=-14), True),    # within 15 minutes
    (timedelta(minutes=14), True),
])
def test_ocp_date_must_be_within_15_minutes(localbatch, skew, accepted):
    body = json.dumps({"id": "dated-pool", "vmSize": "standard_d2s_v3"}).encode()
    date = http_date(datetime.now(timezone.utc) + skew)
    status, _, answer = signed_send(localbatch, "POST", f"/pools?api-version={API_VERSION}", body, date=date)
    if accepted:
        assert status == 201
        assert "dated-pool" in localbatch.app.state.pools
    else:
        values = assert_auth_failed(status, answer)
        assert "15 minutes" in values["AuthenticationErrorDetail"]
        assert localbatch.app.state.pools == {}


def test_unparseable_ocp_date(localbatch):
    path = f"/pools?api-version={API_VERSION}"
    status, _, body = signed_send(localbatch, "GET", path, date="yesterday, around noon")
    values = assert_auth_failed(status, body)
    assert "RFC 1123" in values["AuthenticationErrorDetail"]


def test_query_string_tampered_after_signing(localbatch, batch_client):
    for index in range(3):
        make_job(batch_client, f"tamper-{index}", "no-pool")
    signed_path = f"/jobs?api-version={API_VERSION}&maxresults=1"
    headers = signed_headers(localbatch, "GET", signed_path)
    status, _, body = send(localbatch, "GET", signed_path, headers)
    assert status == 200 and [job["id"] for job in body["value"]] == ["tamper-0"]

    for tampered in (f"/jobs?api-version={API_VERSION}&maxresults=3",                       # value changed
                     f"/jobs?api-version={API_VERSION}&maxresults=1&$filter=id%20eq%20'tamper-2'",  # name added
                     f"/jobs?api-version={API_VERSION}",                                     # name removed
                     f"/jobs/tamper-0?api-version={API_VERSION}&maxresults=1"):              # path changed
        status, _, body = send(localbatch, "GET", tampered, headers)
        assert_auth_failed(status, body)


def test_body_headers_tampered_after_signing(localbatch):
    """Content-Length and Content-Type are signed: a body swapped for a longer one is refused."""
    path = f"/pools?api-version={API_VERSION}"
    signed_body = json.dumps({"id": "p1", "vmSize": "standard_d2s_v3"}).encode()
    headers = signed_headers(localbatch, "POST", path, signed_body)
    evil_body = json.dumps({"id": "p1-evil", "vmSize": "standard_d2s_v3"}).encode()
    headers["content-length"] = str(len(evil_body))
    status, _, body = send(localbatch, "POST", path, headers, evil_body)
    assert_auth_failed(status, body)
    assert localbatch.app.state.pools == {}


def test_signed_conditional_headers_cannot_be_dropped(localbatch, batch_client):
    """If-Match is part of the signature: stripping it from a signed request is detected."""
    make_pool(batch_client, "cond-pool", nodes=0)
    etag = batch_client.get_pool("cond-pool").etag
    path = f"/pools/cond-pool?api-version={API_VERSION}"
    headers = signed_headers(localbatch, "DELETE", path, extra={"If-Match": "0xSTALE"})
    headers.pop("If-Match")
    status, _, body = send(localbatch, "DELETE", path, headers)
    assert_auth_failed(status, body)
    assert batch_client.get_pool("cond-pool").etag == etag


def test_lowercased_query_names_are_also_accepted(localbatch, batch_client):
    """Storage-style signers lowercase query names (timeOut -> timeout); localbatch takes both."""
    path = f"/pools?api-version={API_VERSION}&timeOut=30"
    headers = {"ocp-date": http_date()}
    text = auth.string_to_sign("GET", path, headers, localbatch.account_name, lowercase_query_names=True)
    assert "\ntimeout:30" in text
    headers["Authorization"] = f"SharedKey {localbatch.account_name}:{auth.sign(localbatch.account_key, text)}"
    status, _, body = send(localbatch, "GET", path, headers)
    assert status == 200, body


def test_health_endpoint_needs_no_auth_but_everything_else_does(localbatch):
    status, _, body = send(localbatch, "GET", "/_localbatch/health")
    assert (status, body) == (200, {"status": "ok"})
    status, _, body = send(localbatch, "GET", "/_localbatch/faults")
    assert_auth_failed(status, body)


# -- localbatch.auth.string_to_sign == the SDK's BatchSharedKeyAuthPolicy ----------------------

class RecordingPolicy(BatchSharedKeyAuthPolicy):
    """The SDK's own policy, keeping the string it signed."""

    def _sign_string(self, string_to_sign):
        self.signed = string_to_sign
        return super()._sign_string(string_to_sign)


ACCOUNT = "myaccount"
KEY = base64.b64encode(b"sixty-four bytes of key material for the shared key unit tests!!").decode()


def sdk_sign(method: str, url: str, headers: dict | None = None, **body) -> tuple[HttpRequest, str]:
    policy = RecordingPolicy(AzureNamedKeyCredential(ACCOUNT, KEY))
    request = HttpRequest(method, url, headers=headers or {}, **body)
    policy.on_request(PipelineRequest(request, PipelineContext(None)))
    return request, policy.signed


def localbatch_sign(request: HttpRequest, url: str) -> tuple[str, str]:
    """What the server computes: the path and query as sent, headers by lowercase name."""
    split = urlsplit(url)
    raw = split.path + (f"?{split.query}" if split.query else "")
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() != "authorization"}
    return (auth.string_to_sign(request.method, raw, headers, ACCOUNT),
            auth.authorization_header(request.method, raw, headers, ACCOUNT, KEY))


SIGNING_CASES = {
    "get-with-query": ("GET", "https://myaccount.westeurope.batch.azure.com/jobs/job%2F1/tasks"
                              "?api-version=2025-06-01&maxresults=10&%24filter=state%20eq%20%27active%27"
                              "&%24select=id,state&timeOut=30&empty=",
                       {"Accept": "application/json", "ocp-date": "Tue, 24 Nov 2026 10:00:00 GMT",
                        "client-request-id": "abc"}, {}),
    "get-file-with-range": ("GET", "http://127.0.0.1:8089/acct-prefix/jobs/j/tasks/t/files/wd%2Fsub%20dir%2Fa.txt"
                                   "?api-version=2025-06-01",
                            {"ocp-range": "bytes=0-99", "If-Modified-Since": "Mon, 23 Nov 2026 10:00:00 GMT",
                             "ocp-date": "Tue, 24 Nov 2026 10:00:00 GMT"}, {}),
    "post-with-body": ("POST", "http://127.0.0.1:8089/pools?api-version=2025-06-01",
                       {"content-type": "application/json; odata=minimalmetadata",
                        "If-Match": "0x8DB", "ocp-date": "Tue, 24 Nov 2026 10:00:00 GMT"},
                       {"content": json.dumps({"id": "pool-ü", "vmSize": "standard_d2s_v3"}).encode()}),
    "post-bodiless": ("POST", "http://127.0.0.1:8089/jobs/j/tasks/t/terminate?api-version=2025-06-01",
                      {"ocp-date": "Tue, 24 Nov 2026 10:00:00 GMT"}, {}),
    "delete-bodiless": ("DELETE", "http://127.0.0.1:8089/pools/p?api-version=2025-06-01&timeOut=5",
                        {"If-None-Match": "*"}, {}),
    "head": ("HEAD", "http://127.0.0.1:8089/pools/p/nodes/n/files/startup%2Fstdout.txt?api-version=2025-06-01",
             {"If-Unmodified-Since": "Mon, 23 Nov 2026 10:00:00 GMT"}, {}),
}


@pytest.mark.parametrize("case", sorted(SIGNING_CASES))
def test_string_to_sign_matches_the_sdk(case):
    method, url, headers, body = SIGNING_CASES[case]
    request, sdk_string = sdk_sign(method, url, dict(headers), **body)
    ours, authorization = localbatch_sign(request, url)
    assert ours == sdk_string
    assert authorization == request.headers["Authorization"]


def test_bodiless_post_signs_content_length_zero():
    request, sdk_string = sdk_sign("POST", "http://h/jobs/j/tasks/t/reactivate?api-version=2025-06-01",
                                   {"ocp-date": "Tue, 24 Nov 2026 10:00:00 GMT"})
    assert "content-length" not in {k.lower() for k in request.headers}
    assert sdk_string.split("\n")[:4] == ["POST", "", "", "0"]
    ours, _ = localbatch_sign(request, "http://h/jobs/j/tasks/t/reactivate?api-version=2025-06-01")
    assert ours == sdk_string
    # ...and the same request arriving with the transport's "Content-Length: 0" signs identically.
    with_length = auth.string_to_sign("POST", "/jobs/j/tasks/t/reactivate?api-version=2025-06-01",
                                      {"ocp-date": "Tue, 24 Nov 2026 10:00:00 GMT", "content-length": "0"}, ACCOUNT)
    assert with_length == sdk_string


def test_get_signs_an_empty_content_length():
    request, sdk_string = sdk_sign("GET", "http://h/pools?api-version=2025-06-01",
                                   {"ocp-date": "Tue, 24 Nov 2026 10:00:00 GMT"})
    assert sdk_string.split("\n")[:4] == ["GET", "", "", ""]
    assert localbatch_sign(request, "http://h/pools?api-version=2025-06-01")[0] == sdk_string


def test_string_to_sign_canonical_form():
    """The exact layout, independent of the SDK, so a change on either side shows up here too."""
    text = auth.string_to_sign(
        "GET", "/jobs/a%2Fb?api-version=2025-06-01&timeOut=30&%24filter=id%20eq%20%27x%27&maxresults=5&blank=",
        {"ocp-date": "Tue, 24 Nov 2026 10:00:00 GMT", "If-Match": "0x1", "OCP-Range": "bytes=1-2",
         "client-request-id": "not-signed"}, "acct")
    assert text == ("GET\n\n\n\n\n\n\n\n0x1\n\n\n\n"
                    "ocp-date:Tue, 24 Nov 2026 10:00:00 GMT\nocp-range:bytes=1-2\n"
                    "/acct/jobs/a%2Fb\n$filter:id eq 'x'\napi-version:2025-06-01\nmaxresults:5\ntimeOut:30")
