"""Someone who is not an engineer submits work in a real browser: picks “Count words in each text file”, uploads
three files straight to Blob storage (Azurite), checks the preview, submits, and watches it run on localbatch until
the job's three tasks have succeeded."""

import copy
import importlib
import os

import pytest
from django.apps import apps
from django.conf import settings as django_settings
from playwright.sync_api import expect

from batchsync.accounts import blob_store, default_account
from batchsync.celery import app
from batchsync.submit import link_submitted_jobs
from batchsync.sync import sync_account
from portal.models import JobTemplate, JobTemplateVersion, Pool
from tests.localbatch.helpers import make_pool, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

SCREENSHOTS = os.environ.get("PORTAL_SCREENSHOT_DIR", "/tmp")
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def example_templates():
    """The shipped examples, as migration 0005 makes them: an earlier transactional test's flush removed them."""
    importlib.import_module("portal.migrations.0005_example_job_templates").add_templates(apps, None)


@pytest.fixture
def browser_storage(azurite, live_server, settings):
    """Azurite as the portal's storage, reachable from the live server's pages.

    The browser PUTs the blocks to Azurite's port: storage must allow the live server's origin (CORS), and the
    page's Content-Security-Policy must allow that port (connect-src names the configured endpoint)."""
    settings.AZURE_STORAGE_CONNECTION_STRING = azurite.connection_string
    with blob_store() as store:
        store.ensure_containers(cors_origins=[live_server.url])
    policy = copy.deepcopy(getattr(django_settings, "CONTENT_SECURITY_POLICY", None))
    if policy:
        storage_origin = azurite.blob_endpoint.rsplit("/", 1)[0]
        policy["DIRECTIVES"]["connect-src"] = [*policy["DIRECTIVES"].get("connect-src", []), storage_origin]
        settings.CONTENT_SECURITY_POLICY = policy
    return azurite


def log_in(page, live_server, username: str) -> None:
    page.set_viewport_size({"width": 1360, "height": 1000})
    page.goto(live_server.url + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("button", name="Log out").wait_for()


def open_form(page, live_server, slug: str) -> None:
    page.goto(f"{live_server.url}/submit/{slug}/")
    page.locator("#submit-form[data-uploads=ready]").wait_for(state="attached")   # upload.js is listening


@pytest.fixture
def portal_backends(localbatch, batch_client, browser_storage, live_server, settings, monkeypatch):
    """The live portal wired to this test's localbatch (pool demo-pool, two nodes) and Azurite.

    The submission runs for real, through the path the view starts: on commit, `submit_submission_task.delay()`.
    With Celery eager that task runs at once, in the live server's thread, instead of in a worker process the test
    would have to start and stop; the broker hop it skips is not what this test is about. The sync, which beat runs
    every few seconds in production, is run by the test itself while it watches the page (`watch`), in the test's
    thread: the live server shares the test's in-memory SQLite connection, and a third thread writing to it would
    make the test depend on SQLite's table locks."""
    settings.BATCH_ACCOUNT_URL = localbatch.endpoint
    settings.BATCH_ACCOUNT_NAME = localbatch.account_name
    settings.BATCH_ACCOUNT_KEY = localbatch.account_key
    monkeypatch.delenv("BATCH_ACCOUNT_KEY", raising=False)
    make_pool(batch_client, "demo-pool", nodes=2, slots=2)
    wait_for(lambda: [n.state for n in batch_client.list_nodes("demo-pool")] == ["idle", "idle"],
             message="two idle nodes")
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        yield default_account()
    finally:
        app.conf.task_always_eager = eager


def watch(page, account, selector: str, words: str, timeout: float = 60):
    """Sync the mirror, as beat would, until the page (polling by itself, never reloaded) shows `words`."""
    def shown():
        sync_account(account)
        link_submitted_jobs(account.pk)
        return page.locator(selector).count() and words in page.locator(selector).inner_text()

    wait_for(shown, timeout=timeout, interval=0.3, message=f"“{words}” in {selector}")


def test_a_non_engineer_uploads_three_files_and_watches_them_run(page, live_server, portal_backends, tmp_path,
                                                                   submitter):
    account = portal_backends
    texts = {"one.txt": "alpha\n", "two words.txt": "alpha beta\n", "three.md": "alpha beta gamma " * 300_000}
    for name, content in texts.items():
        (tmp_path / name).write_text(content)

    log_in(page, live_server, submitter.username)
    page.get_by_role("link", name="Submit work").click()
    page.get_by_role("heading", name="Submit work").wait_for()
    page.get_by_role("link", name="Count words in each text file").first.click()
    page.get_by_role("heading", name="Count words in each text file").wait_for()
    page.locator("#submit-form[data-uploads=ready]").wait_for(state="attached")   # upload.js is listening

    page.set_input_files("#file-texts", [str(tmp_path / name) for name in texts])

    uploads = page.locator("li.upload")
    # Not wait_for_function: the page's policy forbids evaluating strings, Playwright's included.
    expect(page.locator("li.upload.done")).to_have_count(3, timeout=30_000)
    assert uploads.count() == 3
    assert [uploads.nth(i).locator("progress").evaluate("bar => bar.value") for i in range(3)] == [100] * 3
    assert page.locator("#upload-total").evaluate("bar => bar.value") == 100
    assert "done" in page.locator(".upload-total-words").inner_text()
    assert page.locator("input[type=hidden][name=texts]").count() == 3
    page.screenshot(path=f"{SCREENSHOTS}/portal-submit-form.png", full_page=True)

    page.get_by_role("button", name="Preview").click()
    summary = page.locator("#preview-summary")
    summary.wait_for()
    assert "This creates 3 tasks on pool demo-pool; inputs 5.1 MB." in summary.inner_text()
    assert "inputs/two words.txt" in page.locator("table.preview-tasks").inner_text()
    page.screenshot(path=f"{SCREENSHOTS}/portal-submit-preview.png", full_page=True)

    page.get_by_role("button", name="Submit").click()
    page.locator("#submission-state").wait_for()
    assert "3 / 3 tasks added" in page.locator("#tasks-added").inner_text()
    watch(page, account, "#job-progress", "Completed 3/3")
    page.screenshot(path=f"{SCREENSHOTS}/portal-submission.png", full_page=True)
    assert page.locator("#submission-status[hx-trigger]").count() == 0, "polling stops once nothing can change"

    page.locator("#job-link").click()
    page.locator("#count-completed").wait_for()
    assert page.locator("#count-completed .count-value").inner_text().strip() == "3"
    assert page.locator("#count-failed .count-value").inner_text().strip() == "0"


@pytest.mark.parametrize("files, words", [
    ({"run.exe": 10}, "is not one of the accepted kinds of file (.txt, .md, .csv). Nothing was uploaded."),
    ({"huge.txt": 101 * 1024 * 1024}, "“huge.txt” is 105.9 MB; the limit is 100 MB per file. Nothing was uploaded."),
    ({f"{n}.txt": 1 for n in range(101)}, "Text files: at most 100 files, please (that would be 101)."),
])
def test_a_wrong_choice_of_files_is_refused_in_the_browser_before_any_byte_moves(
        page, live_server, browser_storage, tmp_path, files, words, submitter):
    paths = []
    for name, size in files.items():
        path = tmp_path / name
        with open(path, "wb") as handle:
            handle.truncate(size)   # sparse: a 101 MiB file costs no disk
        paths.append(str(path))
    asked = []
    page.on("request", lambda request: asked.append(request.url) if "/uploads/" in request.url else None)
    log_in(page, live_server, submitter.username)
    open_form(page, live_server, "count-words")

    page.set_input_files("#file-texts", paths)

    error = page.locator(".file-param .file-error")
    expect(error).to_be_visible()
    assert words in error.inner_text()
    assert page.locator("li.upload").count() == 0 and asked == []
    assert page.locator("#file-texts").evaluate("input => input.files.length") == 0, "the choice is cleared"


@pytest.fixture
def batch_backend(localbatch, live_server, settings, monkeypatch):
    """The live portal wired to this test's localbatch, with no pool: an auto-pool template brings its own."""
    settings.BATCH_ACCOUNT_URL = localbatch.endpoint
    settings.BATCH_ACCOUNT_NAME = localbatch.account_name
    settings.BATCH_ACCOUNT_KEY = localbatch.account_key
    monkeypatch.delenv("BATCH_ACCOUNT_KEY", raising=False)
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True   # the submission runs on commit, as in portal_backends
    try:
        yield default_account()
    finally:
        app.conf.task_always_eager = eager


def test_an_auto_pool_template_runs_on_a_pool_of_its_own_that_goes_with_the_job(page, live_server, batch_backend,
                                                                                batch_client, submitter):
    account = batch_backend
    template = JobTemplate.objects.get(slug="render-frames")
    version = template.current_version()
    JobTemplateVersion.objects.create(template=template, number=version.number + 1, spec={
        **version.spec, "pool": {"auto_pool": {
            "vm_size": "standard_d2s_v3", "node_count": 1, "task_slots_per_node": 4,
            "image": {"publisher": "canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts",
                      "node_agent_sku_id": "batch.node.ubuntu 22.04"}}}})

    log_in(page, live_server, submitter.username)
    page.goto(f"{live_server.url}/submit/render-frames/")
    page.get_by_label("Frames").fill("3")
    page.get_by_label("Seconds per frame").fill("3")
    page.get_by_role("button", name="Preview").click()
    assert "This creates 3 tasks on a pool of its own (1 × standard_d2s_v3)." in (
        page.locator("#preview-summary").inner_text())
    page.get_by_role("button", name="Submit").click()
    page.locator("#submission-state").wait_for()
    assert page.locator("#submission-state").inner_text() == "Submitted"

    # Before any sync: the job is there, and the submitter's (issue 12, item 3).
    page.locator("#job-link").click()
    page.locator("#job-terminate").wait_for()
    assert submitter.username in page.locator("dl.facts").inner_text()
    job_id = page.locator("#job-batch-id").inner_text().strip()

    # Its own pool, named after the job, appears while the tasks run.
    pool_id = batch_client.get_job(job_id).execution_info.pool_id
    assert pool_id.startswith(job_id[:20])
    sync_account(account)
    page.reload()
    expect(page.locator("#job-pool")).to_have_text(pool_id)

    watch(page, account, "#count-completed .count-value", "3")
    assert page.locator("#count-failed .count-value").inner_text().strip() == "0"
    wait_for(lambda: pool_id not in [pool.id for pool in batch_client.list_pools()], timeout=60,
             message="the auto pool deleted with its job")
    sync_account(account)
    assert Pool.objects.get(pool_id=pool_id).gone_at is not None
    page.locator("#job-pool").click()
    expect(page.locator("p.notice")).to_contain_text("Batch deleted this pool")
