"""The results pages against a real Azurite (through the real storage SDK): a job's and a task's output files listed
a page at a time, previews (text escaped and capped, images sandboxed, nothing else rendered), downloads and the zip
(headers, audit, content), hostile names kept inert, failed uploads said, who may read them."""

import io
import uuid
import zipfile
from html import unescape
from urllib.parse import unquote

import pytest
from django.urls import reverse

from batchsync.accounts import blob_store
from portal import downloads
from portal.models import AuditEvent, TaskResult
from portal.results import selectors
from tests.factories import JobFactory, TaskFactory
from tests.personas import client_for

pytestmark = pytest.mark.django_db

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")
HOSTILE = "<img src=x onerror=alert(1)>.txt"


@pytest.fixture
def store(azurite, settings):
    """The portal's blob store on the test Azurite, with an outputs container of this test's own."""
    settings.AZURE_STORAGE_CONNECTION_STRING = azurite.connection_string
    settings.STORAGE_OUTPUTS_CONTAINER = f"out-{uuid.uuid4().hex[:12]}"
    with blob_store() as opened:
        opened.ensure_containers()
        yield opened


@pytest.fixture
def job(store):
    return JobFactory(job_id="sub-results")


def put(store, job_id: str, task_id: str, name: str, data: bytes) -> None:
    """An output file where the tasks' output rules upload them."""
    store.put(store.containers.outputs, f"{job_id}/{task_id}/outputs/{name}", data)


def page_of(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def test_a_jobs_files_are_listed_per_task_with_size_and_time_and_links(signed_in, store, job):
    one, two = TaskFactory(job=job, task_id="t00001"), TaskFactory(job=job, task_id="t00002")
    put(store, job.job_id, "t00001", "count.txt", b"3 inputs/one.txt\n")
    put(store, job.job_id, "t00002", "plots/chart.png", PNG)
    put(store, job.job_id, "t00002", "data.bin", b"\x00" * 1500)
    store.put(store.containers.outputs, f"{job.job_id}-other/t00001/outputs/not-this-job.txt", b"x")

    page = page_of(signed_in.get(reverse("job_results", args=[job.pk])))

    assert "count.txt" in page and "plots/chart.png" in page and "data.bin" in page
    assert "not-this-job" not in page
    assert "1.5 KB" in page and "<time" in page
    assert f'{reverse("task_result_preview", args=[one.pk])}?name=count.txt' in page
    assert f'{reverse("task_result_preview", args=[two.pk])}?name=plots%2Fchart.png' in page
    # No preview offered for what is not text or an image; a download for everything.
    assert "?name=data.bin" in page and f'{reverse("task_result_preview", args=[two.pk])}?name=data.bin' not in page
    assert f'href="{reverse("job_results_zip", args=[job.pk])}"' in page

    task_part = page_of(signed_in.get(reverse("task_results", args=[two.pk])))
    assert "chart.png" in task_part and "data.bin" in task_part and "count.txt" not in task_part


def test_the_list_is_paged_from_storage_and_the_next_page_carries_on(signed_in, store, job, monkeypatch):
    monkeypatch.setattr(selectors, "PAGE_SIZE", 2)
    TaskFactory(job=job, task_id="t00001")
    for n in range(5):
        put(store, job.job_id, "t00001", f"f{n}.txt", b"x")

    first = page_of(signed_in.get(reverse("job_results", args=[job.pk])))
    assert "f0.txt" in first and "f1.txt" in first and "f2.txt" not in first
    token = unquote(unescape(first.split('id="results-next" href="?page=')[1].split('"')[0]))

    second = page_of(signed_in.get(reverse("job_results", args=[job.pk]), {"page": token}))
    assert "f2.txt" in second and "f3.txt" in second and "f1.txt" not in second and 'id="results-first"' in second

    bad = signed_in.get(reverse("job_results", args=[job.pk]), {"page": "not a token\n"})
    assert bad.status_code == 404


def test_one_tasks_files_are_listed_on_their_own(signed_in, store, job, monkeypatch):
    monkeypatch.setattr(selectors, "TASK_PAGE_SIZE", 1)
    task = TaskFactory(job=job, task_id="t00001")
    TaskFactory(job=job, task_id="t00002")
    put(store, job.job_id, "t00001", "a.txt", b"a")
    put(store, job.job_id, "t00001", "b.txt", b"b")
    put(store, job.job_id, "t00002", "c.txt", b"c")

    section = page_of(signed_in.get(reverse("task_results", args=[task.pk])))
    assert "a.txt" in section and "b.txt" not in section and "c.txt" not in section
    assert f'{reverse("job_results", args=[job.pk])}?task=t00001' in section

    listed = page_of(signed_in.get(reverse("job_results", args=[job.pk]), {"task": "t00001"}))
    assert "a.txt" in listed and "b.txt" in listed and "c.txt" not in listed
    assert signed_in.get(reverse("job_results", args=[job.pk]), {"task": "../t00002"}).status_code == 404


def test_the_job_submission_and_task_pages_lead_to_the_results(signed_in, store, job):
    task = TaskFactory(job=job)
    assert f'href="{reverse("job_results", args=[job.pk])}"' in page_of(
        signed_in.get(reverse("job_detail", args=[job.pk])))
    assert f'hx-get="{reverse("task_results", args=[task.pk])}"' in page_of(
        signed_in.get(reverse("task_detail", args=[task.pk])))


def test_a_hostile_file_name_is_shown_as_text_and_works_as_a_name(signed_in, store, job):
    task = TaskFactory(job=job, task_id="t00001")
    put(store, job.job_id, "t00001", HOSTILE, b"<script>alert(2)</script>")

    page = page_of(signed_in.get(reverse("job_results", args=[job.pk])))
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;.txt" in page

    preview = page_of(signed_in.get(reverse("task_result_preview", args=[task.pk]), {"name": HOSTILE}))
    assert "<img src=x" not in preview and "<script>alert(2)" not in preview
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in preview

    download = signed_in.get(reverse("task_result_download", args=[task.pk]), {"name": HOSTILE})
    assert b"".join(download.streaming_content) == b"<script>alert(2)</script>"
    assert download["Content-Disposition"] == (
        'attachment; filename="sub-results-t00001-_img_src_x_onerror_alert_1__.txt"')


@pytest.mark.parametrize("name", ["../../other/t1/outputs/secret.txt", "../t00002/outputs/b.txt", "/etc/passwd",
                                  "a\\..\\..\\b", "%2e%2e/x", "a/./b", "", "x\x00"])
def test_a_name_that_could_leave_the_tasks_folder_is_refused(signed_in, store, job, name):
    task = TaskFactory(job=job, task_id="t00001")
    TaskFactory(job=job, task_id="t00002")
    put(store, job.job_id, "t00002", "b.txt", b"someone else's")
    store.put(store.containers.outputs, "other/t1/outputs/secret.txt", b"secret")

    for view in ("task_result_preview", "task_result_image", "task_result_download"):
        response = signed_in.get(reverse(view, args=[task.pk]), {"name": name})
        # A NUL in a query string is refused before any view (portal/request_guard.py).
        assert response.status_code == (400 if "\x00" in name else 404), (view, name)
        assert b"secret" not in response.content and b"someone else" not in response.content


def test_a_text_preview_is_escaped_and_capped(signed_in, store, job):
    task = TaskFactory(job=job, task_id="t00001")
    line = b"a,b,<b>bold</b>\n"
    data = line * (200 * 1024 // len(line))
    put(store, job.job_id, "t00001", "table.csv", data)

    response = signed_in.get(reverse("task_result_preview", args=[task.pk]), {"name": "table.csv"})
    page = page_of(response)
    text = unescape(page.split('id="preview-text">')[1].split("</pre>")[0])
    assert len(text.encode()) == 64 * 1000 and data.startswith(text.encode())
    assert "<b>bold" not in page and 'id="preview-cut"' in page

    put(store, job.job_id, "t00001", "small.txt", b"tiny")
    assert 'id="preview-cut"' not in page_of(signed_in.get(reverse("task_result_preview", args=[task.pk]),
                                                           {"name": "small.txt"}))


def test_an_image_is_shown_sandboxed_and_other_kinds_are_not_rendered(signed_in, store, job):
    task = TaskFactory(job=job, task_id="t00001")
    put(store, job.job_id, "t00001", "chart.png", PNG)
    put(store, job.job_id, "t00001", "evil.svg", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>')
    put(store, job.job_id, "t00001", "page.html", b"<script>alert(1)</script>")

    preview = page_of(signed_in.get(reverse("task_result_preview", args=[task.pk]), {"name": "chart.png"}))
    assert f'src="{reverse("task_result_image", args=[task.pk])}?name=chart.png"' in preview
    image = signed_in.get(reverse("task_result_image", args=[task.pk]), {"name": "chart.png"})
    assert image.status_code == 200 and b"".join(image.streaming_content) == PNG
    assert image["Content-Type"] == "image/png" and image["X-Content-Type-Options"] == "nosniff"
    assert image["Content-Security-Policy"] == "sandbox" and image["Content-Disposition"] == "inline"

    for name in ("evil.svg", "page.html"):
        page = page_of(signed_in.get(reverse("task_result_preview", args=[task.pk]), {"name": name}))
        assert 'id="preview-none"' in page and "alert(1)" not in page and "<img id" not in page
        assert signed_in.get(reverse("task_result_image", args=[task.pk]), {"name": name}).status_code == 404


def test_a_download_is_an_inert_attachment_and_is_recorded(signed_in, store, job, user):
    task = TaskFactory(job=job, task_id="t00001")
    put(store, job.job_id, "t00001", "out/page.html", b"<script>alert(1)</script>")

    response = signed_in.get(reverse("task_result_download", args=[task.pk]), {"name": "out/page.html"})

    assert response.status_code == 200 and response.streaming
    assert b"".join(response.streaming_content) == b"<script>alert(1)</script>"
    assert response["Content-Type"] == "application/octet-stream" and response["Content-Length"] == "25"
    assert response["Content-Disposition"] == 'attachment; filename="sub-results-t00001-out_page.html"'
    assert response["X-Content-Type-Options"] == "nosniff" and response["Content-Security-Policy"] == "sandbox"
    event = AuditEvent.objects.get(action="results.download")
    assert (event.actor_id, event.object_type, event.details) == (user.pk, "task", {"name": "out/page.html",
                                                                                   "bytes": 25})

    missing = signed_in.get(reverse("task_result_download", args=[task.pk]), {"name": "nope.txt"})
    assert missing.status_code == 404 and AuditEvent.objects.filter(action="results.download").count() == 1


def test_all_of_a_jobs_results_download_as_one_zip(signed_in, store, job):
    for task_id in ("t00001", "t00002", "t00003"):
        TaskFactory(job=job, task_id=task_id)
        put(store, job.job_id, task_id, "count.txt", f"{task_id} counted\n".encode())
    put(store, job.job_id, "t00002", "plots/chart.png", PNG)

    response = signed_in.get(reverse("job_results_zip", args=[job.pk]))

    assert response.status_code == 200 and response.streaming and response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == 'attachment; filename="sub-results-results.zip"'
    assert response["X-Content-Type-Options"] == "nosniff"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.testzip() is None
    assert sorted(archive.namelist()) == ["t00001/count.txt", "t00002/count.txt", "t00002/plots/chart.png",
                                          "t00003/count.txt"]
    assert archive.read("t00003/count.txt") == b"t00003 counted\n" and archive.read("t00002/plots/chart.png") == PNG
    assert AuditEvent.objects.filter(action="results.zip_download", details__tasks=3).count() == 1


def test_the_zip_leaves_out_names_that_could_escape_when_unpacked_and_says_so(signed_in, store, job):
    TaskFactory(job=job, task_id="t00001")
    put(store, job.job_id, "t00001", "good.txt", b"good")
    put(store, job.job_id, "t00001", "a\\..\\..\\evil.txt", b"evil")

    archive = zipfile.ZipFile(io.BytesIO(b"".join(signed_in.get(
        reverse("job_results_zip", args=[job.pk])).streaming_content)))

    assert sorted(archive.namelist()) == ["MISSING.txt", "t00001/good.txt"]
    assert "could not be unpacked safely" in archive.read("MISSING.txt").decode()


def test_a_zip_of_more_tasks_than_it_may_hold_is_refused_plainly(signed_in, store, job, monkeypatch):
    monkeypatch.setattr(downloads, "ZIP_MAX_TASKS", 2)
    for task_id in ("t1", "t2", "t3"):
        TaskFactory(job=job, task_id=task_id)
    response = signed_in.get(reverse("job_results_zip", args=[job.pk]))
    assert response.status_code == 413 and b"more than 2 tasks" in response.content
    assert not AuditEvent.objects.filter(action="results.zip_download").exists()


def test_files_whose_upload_failed_say_so(signed_in, store, job):
    failed = TaskFactory(job=job, task_id="t00002", failed=True, failure_code="FileUploadContainerNotFound",
                         failure_message="The output container does not exist.")
    fine = TaskFactory(job=job, task_id="t00001")
    assert failed.result == TaskResult.FAILURE and failed.output_upload_failed and not fine.output_upload_failed

    page = page_of(signed_in.get(reverse("job_results", args=[job.pk])))
    assert 'id="upload-failures"' in page and "t00002" in page and "FileUploadContainerNotFound" in page
    section = page_of(signed_in.get(reverse("task_results", args=[failed.pk])))
    assert 'id="upload-failed"' in section and "The output container does not exist." in section
    assert 'id="upload-failed"' not in page_of(signed_in.get(reverse("task_results", args=[fine.pk])))


def test_when_storage_does_not_answer_the_page_says_so(signed_in, job, settings):
    settings.AZURE_STORAGE_CONNECTION_STRING = settings.AZURE_STORAGE_CONNECTION_STRING.replace(
        "BlobEndpoint=", "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;X=")
    task = TaskFactory(job=job, task_id="t00001")
    assert 'id="results-problem"' in page_of(signed_in.get(reverse("job_results", args=[job.pk])))
    assert signed_in.get(reverse("task_result_download", args=[task.pk]), {"name": "a.txt"}).status_code == 503


RESULT_VIEWS = [("job_results", "job", ""), ("job_results_zip", "job", ""), ("task_results", "task", ""),
                ("task_result_preview", "task", "?name=count.txt"), ("task_result_image", "task", "?name=c.png"),
                ("task_result_download", "task", "?name=count.txt")]


@pytest.mark.parametrize("persona", ["viewer", "submitter", "other_submitter", "operator_a", "portal_admin"])
def test_every_reader_of_the_job_reads_its_results(request, store, job, persona):
    task = TaskFactory(job=job, task_id="t00001")
    put(store, job.job_id, "t00001", "count.txt", b"3\n")
    put(store, job.job_id, "t00001", "c.png", PNG)
    client = client_for(request.getfixturevalue(persona))
    for name, kind, query in RESULT_VIEWS:
        pk = job.pk if kind == "job" else task.pk
        assert client.get(reverse(name, args=[pk]) + query).status_code == 200, name


def test_no_role_and_anonymous_read_no_results(client, store, job, no_role):
    task = TaskFactory(job=job, task_id="t00001")
    put(store, job.job_id, "t00001", "count.txt", b"3\n")
    for name, kind, query in RESULT_VIEWS:
        url = reverse(name, args=[job.pk if kind == "job" else task.pk]) + query
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login")), name
    client.force_login(no_role)
    for name, kind, query in RESULT_VIEWS:
        url = reverse(name, args=[job.pk if kind == "job" else task.pk]) + query
        response = client.get(url)
        assert response.status_code in (403, 404), name
        assert b"3\n" != b"".join(getattr(response, "streaming_content", [response.content]))
    assert not AuditEvent.objects.filter(action__startswith="results.").exists()
