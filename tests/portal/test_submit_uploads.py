"""Uploads from the browser to Blob storage, against a real Azurite: what the portal refuses before any byte moves,
what the SAS it hands out allows, and how the preview and the submission see the uploaded files."""

import json
import re
import shlex
from io import StringIO
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from azure.storage.blob import BlobServiceClient
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from batchsync import submit
from portal.models import JobTemplate, JobTemplateVersion, Submission
from tests.portal.pages import text
from tests.portal.submit_helpers import (
    ask_upload,
    form_values,
    put_blocks,
    upload,
    use_azurite,
)

pytestmark = pytest.mark.django_db

MiB = 1024 * 1024


@pytest.fixture
def storage(azurite, settings):
    return use_azurite(azurite, settings)


def count_words_version():
    return JobTemplate.objects.get(slug="count-words").current_version()


def preview_words(client, tokens):
    return client.post(reverse("submit_form", args=["count-words"]),
                       {"template_version": count_words_version().pk, "texts": tokens})


# --- the upload request -------------------------------------------------------------------------------------


def test_an_upload_goes_in_blocks_and_the_preview_sees_it_with_its_size(signed_in, user, storage):
    data = b"word " * (1 * MiB)   # 5 MiB: two blocks of 4 MiB and a remainder, as upload.js sends them
    answer = ask_upload(signed_in, "count-words", "texts", "big words.txt", len(data)).json()

    path = urlsplit(answer["sas_url"]).path
    assert re.fullmatch(rf"/devstoreaccount1/portal-inputs/uploads/{user.pk}/[0-9a-f]{{32}}/big_words.txt", path)
    assert parse_qs(urlsplit(answer["sas_url"]).query)["sp"] == ["cw"], "create and write, nothing else"
    put_blocks(answer["sas_url"], data)

    page = text(preview_words(signed_in, [answer["token"]]))
    assert "This creates 1 task on pool demo-pool; inputs 5.2 MB." in page
    assert "inputs/big words.txt" in page

    signed_in.post(reverse("submit_confirm", args=["count-words"]), {**form_values(preview_words(
        signed_in, [answer["token"]])), "submit": "1"})
    submission = Submission.objects.get()
    [entry] = submission.inputs["texts"]
    assert entry == {"name": "big words.txt", "blob": path.split("/portal-inputs/")[1], "size": len(data),
                     "snapshot": entry["snapshot"]} and entry["snapshot"]
    assert "sig=" not in json.dumps(submission.inputs), "no credential is stored"
    # The upload's SAS still writes for a while: whatever it writes now, the tasks read what was submitted.
    put_blocks(answer["sas_url"], b"changed afterwards")
    [task] = list(submit.expand(submission))
    [resource] = task.resource_files
    assert resource.file_path == "inputs/big words.txt"
    assert parse_qs(urlsplit(resource.http_url).query)["sp"] == ["r"]
    assert requests.get(resource.http_url, timeout=30).content == data, "the task's URL reads exactly the upload"


def test_the_upload_url_cannot_read_list_or_write_elsewhere(signed_in, storage):
    sas_url = ask_upload(signed_in, "count-words", "texts", "a.txt", 3).json()["sas_url"]
    put_blocks(sas_url, b"abc")
    base, query = sas_url.split("?", 1)

    assert requests.get(sas_url, timeout=10).status_code == 403
    container = base.rsplit("/uploads/", 1)[0]
    assert requests.get(f"{container}?restype=container&comp=list&{query}", timeout=10).status_code == 403
    other = f"{container}/uploads/someone-else.txt?{query}"
    assert requests.put(other, data=b"x", headers={"x-ms-blob-type": "BlockBlob"}, timeout=10).status_code == 403


@pytest.mark.parametrize("request_body, words", [
    ({"parameter": "texts", "name": "run.exe", "size": 10}, "not one of the accepted kinds of file"),
    ({"parameter": "texts", "name": "../../etc/passwd.txt", "size": 10}, "not a plain file name"),
    ({"parameter": "texts", "name": "a;rm -rf ~.txt", "size": 10}, "not a plain file name"),
    ({"parameter": "texts", "name": "$(id).txt", "size": 10}, "not a plain file name"),
    ({"parameter": "texts", "name": ".hidden.txt", "size": 10}, "not a plain file name"),
    ({"parameter": "texts", "name": "big.txt", "size": 101 * MiB}, "larger than 100 MB"),
    ({"parameter": "texts", "name": "a.txt", "size": 10, "count": 101}, "at most 100 files"),
    ({"parameter": "texts", "name": "a.txt", "size": 10, "total": 6 * 1024 * MiB}, "at most 5 GB"),
    ({"parameter": "nope", "name": "a.txt", "size": 10}, "no such file field"),
    ({"parameter": "texts", "name": "a.txt", "size": -1}, "not understood"),
    ({"parameter": "texts", "name": "a.txt", "size": "10"}, "not understood"),
])
def test_a_wrong_file_is_refused_before_any_byte_is_uploaded(signed_in, storage, request_body, words):
    response = signed_in.post(reverse("submit_upload", args=["count-words"]), data=json.dumps(request_body),
                             content_type="application/json")

    assert response.status_code == 400
    assert words in response.json()["error"]
    assert "sas_url" not in response.json() and "token" not in response.json()


def test_a_value_parameter_takes_no_upload(signed_in, storage):
    response = ask_upload(signed_in, "render-frames", "frames", "a.txt", 10)

    assert response.status_code == 400 and "no such file field" in response.json()["error"]


def test_uploads_need_the_submitter_role_and_a_post(client, storage, viewer, submitter):
    client.force_login(viewer)
    assert ask_upload(client, "count-words", "texts", "a.txt", 3).status_code == 403
    client.force_login(submitter)
    assert client.get(reverse("submit_upload", args=["count-words"])).status_code == 405


def test_the_upload_request_needs_the_csrf_token(user, storage):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)

    assert ask_upload(strict, "count-words", "texts", "a.txt", 3).status_code == 403


# --- tokens at the preview ----------------------------------------------------------------------------------


def test_a_token_for_a_blob_never_uploaded_is_an_error(signed_in, storage):
    token = ask_upload(signed_in, "count-words", "texts", "never.txt", 10).json()["token"]

    page = text(preview_words(signed_in, [token]))

    assert "“never.txt” has not arrived in storage (its upload did not finish)" in page
    assert "This creates" not in page and not Submission.objects.exists()


def test_a_file_that_did_not_upload_completely_is_an_error(signed_in, storage):
    answer = ask_upload(signed_in, "count-words", "texts", "half.txt", 10).json()
    put_blocks(answer["sas_url"], b"12345")

    page = text(preview_words(signed_in, [answer["token"]]))

    assert "“half.txt” did not upload completely (5 bytes of 10 bytes)" in page


def test_a_tampered_token_is_an_error(signed_in, storage):
    token = upload(signed_in, "count-words", "texts", "a.txt", b"one two")
    tampered = token.replace("a", "b", 1) if "a" in token[:20] else "x" + token[1:]

    page = text(preview_words(signed_in, [tampered]))

    assert "could not be recognised (the form was changed)" in page and not Submission.objects.exists()


def test_a_token_forged_for_another_blob_is_an_error(signed_in, user, storage):
    token = upload(signed_in, "count-words", "texts", "a.txt", b"one two")
    forged = token.split(":", 1)[1]   # the payload alone, without its signature
    page = text(preview_words(signed_in, [forged]))

    assert "could not be recognised" in page and not Submission.objects.exists()


def test_someone_elses_token_is_an_error(signed_in, client, storage, other_submitter):
    token = upload(signed_in, "count-words", "texts", "a.txt", b"one two")
    client.force_login(other_submitter)

    page = text(preview_words(client, [token]))

    assert "belongs to another form" in page and not Submission.objects.exists()


def test_a_token_for_another_template_or_parameter_is_an_error(signed_in, user, storage):
    other = JobTemplate.objects.create(name="Two inputs", slug="two-inputs")
    JobTemplateVersion.objects.create(template=other, number=1, spec={
        "pool": {"pool_id": "demo-pool"}, "command_line": "cat {a} {b}",
        "parameters": [{"name": "a", "type": "file"}, {"name": "b", "type": "file"}]})
    for_a = upload(signed_in, "two-inputs", "a", "a.txt", b"aaa")

    page = text(signed_in.post(reverse("submit_form", args=["two-inputs"]),
                              {"template_version": other.current_version().pk, "b": for_a}))
    assert "belongs to another form" in page
    assert "belongs to another form" in text(preview_words(signed_in, [for_a]))
    assert not Submission.objects.exists()


def test_too_many_files_at_the_preview_are_an_error(signed_in, storage):
    version = count_words_version()
    JobTemplateVersion.objects.create(template=version.template, number=version.number + 1,
                                      spec={**version.spec, "parameters": [{**version.spec["parameters"][0],
                                                                             "max_files": 2}]})
    # Each request declares itself alone (count 1): the preview counts what was really uploaded.
    tokens = [upload(signed_in, "count-words", "texts", f"{n}.txt", b"x") for n in range(3)]

    page = text(preview_words(signed_in, tokens))

    assert "at most 2 files, please (you gave 3)" in page.lower()
    assert not Submission.objects.exists()


def test_a_file_changed_after_the_preview_is_not_submitted(signed_in, storage):
    answer = ask_upload(signed_in, "count-words", "texts", "a.txt", 3).json()
    put_blocks(answer["sas_url"], b"abc")
    shown = preview_words(signed_in, [answer["token"]])
    put_blocks(answer["sas_url"], b"xyz")   # the same size, new content, within the SAS's lifetime

    page = text(signed_in.post(reverse("submit_confirm", args=["count-words"]), {**form_values(shown), "submit": 1}))

    assert "“a.txt” was changed in storage after the preview" in page and not Submission.objects.exists()


def test_a_csv_sweep_is_read_from_storage(signed_in, storage):
    template = JobTemplate.objects.create(name="Samples", slug="samples")
    JobTemplateVersion.objects.create(template=template, number=1, spec={
        "pool": {"pool_id": "demo-pool"}, "command_line": "echo {row.sample} {row.depth}",
        "parameters": [{"name": "table", "type": "file", "extensions": [".csv"], "required": True}],
        "fan_out": {"kind": "csv", "parameter": "table"}})
    token = upload(signed_in, "samples", "table", "samples.csv", b"sample,depth\nS1,10\nS2;rm,20\nS3,$(id)\n")

    shown = signed_in.post(reverse("submit_form", args=["samples"]),
                          {"template_version": template.current_version().pk, "table": token})
    page = text(shown)
    assert "This creates 3 tasks on pool demo-pool" in page
    signed_in.post(reverse("submit_confirm", args=["samples"]), {**form_values(shown), "submit": 1})

    submission = Submission.objects.get()
    scripts = ["echo S1 10", "echo 'S2;rm' 20", "echo S3 '$(id)'"]
    assert [t.command_line for t in submit.expand(submission)] == [f"/bin/sh -c {shlex.quote(s)}" for s in scripts]


def test_a_csv_larger_than_the_limit_is_refused(signed_in, storage, settings):
    settings.SUBMISSION_MAX_CSV_BYTES = 10
    template = JobTemplate.objects.create(name="Samples", slug="samples")
    JobTemplateVersion.objects.create(template=template, number=1, spec={
        "pool": {"pool_id": "demo-pool"}, "command_line": "echo {row.sample}",
        "parameters": [{"name": "table", "type": "file", "extensions": [".csv"]}],
        "fan_out": {"kind": "csv", "parameter": "table"}})
    token = upload(signed_in, "samples", "table", "samples.csv", b"sample\nS1\nS2\nS3\n")

    page = text(signed_in.post(reverse("submit_form", args=["samples"]),
                              {"template_version": template.current_version().pk, "table": token}))

    assert "a CSV the tasks are made from may be at most 10 bytes" in page


def test_a_rerun_keeps_the_earlier_files(signed_in, storage):
    token = upload(signed_in, "count-words", "texts", "kept.txt", b"one two three")
    signed_in.post(reverse("submit_confirm", args=["count-words"]),
                  {**form_values(preview_words(signed_in, [token])), "submit": 1})
    parent = Submission.objects.get()

    page = text(signed_in.get(reverse("submit_form", args=["count-words"]) + f"?rerun={parent.public_id}"))
    kept = re.findall(r'<input type="hidden" name="texts" value="([^"]+)"', page)
    assert len(kept) == 1 and "kept.txt" in page

    shown = signed_in.post(reverse("submit_form", args=["count-words"]),
                          {"template_version": count_words_version().pk, "texts": kept,
                           "rerun": parent.public_id})
    assert "This creates 1 task" in text(shown) and "changed</span>" not in text(shown), "the same file, unchanged"
    signed_in.post(reverse("submit_confirm", args=["count-words"]), {**form_values(shown), "submit": 1})
    child = Submission.objects.exclude(pk=parent.pk).get()
    assert child.parent == parent
    assert [(f["name"], f["blob"], f["size"]) for f in child.inputs["texts"]] == [
        (f["name"], f["blob"], f["size"]) for f in parent.inputs["texts"]], "the same upload, not a copy"


def test_the_whole_upload_is_capped(signed_in, storage, settings):
    tokens = [upload(signed_in, "count-words", "texts", f"{n}.txt", b"12345") for n in range(2)]
    settings.SUBMISSION_MAX_UPLOAD_BYTES = 8

    page = text(preview_words(signed_in, tokens))

    assert "These files come to 10 bytes; one submission may take at most 8 bytes." in page
    assert not Submission.objects.exists()
    assert ask_upload(signed_in, "count-words", "texts", "c.txt", 5, total=15).status_code == 400


def test_dev_bootstrap_makes_the_containers_and_lets_the_portal_upload_from_the_browser(storage, settings):
    settings.PORTAL_BASE_URL = "http://127.0.0.1:8000"
    out = StringIO()
    call_command("dev_bootstrap", "--skip-admin", "--storage", "--wait-seconds", "5", stdout=out)

    service = BlobServiceClient.from_connection_string(storage.connection_string)
    [rule] = service.get_service_properties()["cors"]
    assert sorted(rule.allowed_origins.split(",")) == ["http://127.0.0.1:8000", "http://localhost:8000"]
    assert "PUT" in rule.allowed_methods
    assert {"portal-inputs", "portal-logs", "portal-outputs"} <= {c.name for c in service.list_containers()}
    assert "Storage: containers ready" in out.getvalue()
