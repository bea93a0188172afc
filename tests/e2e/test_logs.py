"""A task's output in a real browser: it follows a running task to its end, output that holds markup or scripts
shows as text while its colours show as colours, and a log saved to storage stays readable and searchable after
its job is deleted in Batch; the task page follows its task to the end (actions, byte counter, the copy
read) without a reload."""

import os

import pytest
from azure.batch import models

from batchsync import archive
from batchsync.accounts import blob_store, default_account, gateway_for
from batchsync.sync import sync_account
from portal.models import Task
from tests.localbatch.helpers import make_job, make_pool, wait_for, wait_task_completed

pytestmark = pytest.mark.django_db(transaction=True)

SCREENSHOTS = os.environ.get("PORTAL_SCREENSHOT_DIR", "/tmp")
PASSWORD = "correct horse battery staple"


@pytest.fixture
def batch_account(localbatch, settings, monkeypatch):
    """The portal's default account, pointed at this test's localbatch."""
    settings.BATCH_ACCOUNT_URL = localbatch.endpoint
    settings.BATCH_ACCOUNT_NAME = localbatch.account_name
    settings.BATCH_ACCOUNT_KEY = localbatch.account_key
    monkeypatch.delenv("BATCH_ACCOUNT_KEY", raising=False)
    return default_account()


@pytest.fixture(autouse=True)
def saved_logs(store):
    """The real Azurite the viewer looks for saved copies in."""
    return store


@pytest.fixture
def job(batch_client):
    make_pool(batch_client, "log-pool", nodes=1, slots=2)
    wait_for(lambda: [n.state for n in batch_client.list_nodes("log-pool")] == ["idle"], message="an idle node")
    return make_job(batch_client, "log-job", "log-pool")


def add_task(batch_client, task_id: str, script: str):
    quoted = "'" + script.replace("'", "'\"'\"'") + "'"
    batch_client.create_task("log-job", models.BatchTaskCreateOptions(id=task_id, command_line=f"/bin/sh -c {quoted}"))


def log_in_and_open(page, live_server, viewer, task_id: str):
    page.set_viewport_size({"width": 1360, "height": 1000})
    page.goto(live_server.url + "/login/")
    page.get_by_label("Username").fill(viewer.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Dashboard").wait_for()
    page.goto(f"{live_server.url}/tasks/{Task.objects.get(task_id=task_id).pk}/")
    page.get_by_role("heading", name=task_id).wait_for()


def test_the_viewer_follows_a_running_task_to_its_end_and_stops_polling(
        page, live_server, batch_client, batch_account, job, viewer, tmp_path):
    go_on, finish = tmp_path / "go-on", tmp_path / "finish"
    add_task(batch_client, "chatty", f"echo 'line 1: starting'; while [ ! -e {go_on} ]; do sleep 0.05; done; "
                                     f"echo 'line 2: working'; while [ ! -e {finish} ]; do sleep 0.05; done; "
                                     "echo 'line 3: all done'")
    wait_for(lambda: batch_client.get_task("log-job", "chatty").state == "running", message="the task running")
    sync_account(batch_account)
    log_in_and_open(page, live_server, viewer, "chatty")

    lines = page.get_by_role("log", name="stdout.txt")
    lines.get_by_text("line 1: starting").wait_for()
    assert page.locator("#log-tail[hx-trigger]").count() == 1
    assert page.locator("#log-writing").inner_text().strip() == "· still being written"

    # Nobody reloads: new lines arrive through the viewer's own polling of only the new bytes.
    go_on.touch()
    lines.get_by_text("line 2: working").wait_for(timeout=15_000)
    assert lines.locator(".log-line").count() == 2

    finish.touch()
    wait_task_completed(batch_client, "log-job", "chatty")
    sync_account(batch_account)
    lines.get_by_text("line 3: all done").wait_for(timeout=15_000)
    page.get_by_text("The task has ended; this is the whole output.").wait_for(timeout=15_000)
    # Each line once, in order, numbered; and the poller is gone, so nothing asks again.
    assert lines.locator(".lt").all_inner_texts() == ["line 1: starting", "line 2: working", "line 3: all done"]
    assert lines.locator(".ln").all_inner_texts() == ["1", "2", "3"]
    assert page.locator("#log-tail[hx-trigger]").count() == 0
    assert page.locator("#log-writing").inner_text().strip() == "· complete"
    page.screenshot(path=f"{SCREENSHOTS}/portal-task-output.png", full_page=True)


def test_markup_and_scripts_in_output_stay_text_and_colours_show(
        page, live_server, batch_client, batch_account, job, viewer):
    # printf: \047 is a single quote, \033 the ESC of a colour code.
    add_task(batch_client, "payload", (
        "printf '<script>window.pwned = 1</script>\\n"
        "<img src=x onerror=\"window.pwned = 2\">\\n"
        "<svg onload=\"window.pwned = 3\"></svg> \\047quoted\\047 & more\\n"
        "\\033[31mred failure\\033[0m then \\033[1;32mbold green\\033[0m\\n'"))
    wait_task_completed(batch_client, "log-job", "payload")
    sync_account(batch_account)
    log_in_and_open(page, live_server, viewer, "payload")

    lines = page.get_by_role("log", name="stdout.txt")
    lines.get_by_text("red failure").wait_for()

    assert page.evaluate("window.pwned") is None
    assert lines.locator("script, img, svg").count() == 0
    assert lines.locator(".lt").all_inner_texts()[:3] == [
        "<script>window.pwned = 1</script>", '<img src=x onerror="window.pwned = 2">',
        "<svg onload=\"window.pwned = 3\"></svg> 'quoted' & more"]
    red = lines.locator("span.ansi-red")
    assert red.inner_text() == "red failure"
    assert red.evaluate("e => getComputedStyle(e).color") == "rgb(255, 123, 114)"
    assert lines.locator("span.ansi-green.ansi-bold").inner_text() == "bold green"
    # The wrap toggle is CSS only: ticking it changes how lines wrap, nothing else.
    first = lines.locator(".lt").first
    assert first.evaluate("e => getComputedStyle(e).whiteSpace") == "pre"
    page.get_by_label("Wrap long lines").check()
    assert first.evaluate("e => getComputedStyle(e).whiteSpace") == "pre-wrap"


def test_a_saved_log_outlives_its_job_and_search_marks_matches_as_text(
        page, live_server, batch_client, batch_account, job, viewer, store):
    add_task(batch_client, "kept", "seq 1 3000 | sed 's/^/step /'; "
                                   "echo '<script>window.pwned = 1</script> the needle in markup'; "
                                   "echo 'a NEEDLE again'")
    wait_task_completed(batch_client, "log-job", "kept")
    sync_account(batch_account)
    assert archive.archive_finished_tasks(wait=60).saved == 2
    batch_client.begin_delete_job("log-job").result()
    sync_account(batch_account, full=True)
    assert Task.objects.get(task_id="kept").gone_at is not None
    log_in_and_open(page, live_server, viewer, "kept")

    page.get_by_text("Saved copy in storage, saved").wait_for()
    lines = page.get_by_role("log", name="stdout.txt")
    lines.get_by_text("a NEEDLE again").wait_for()

    page.get_by_label("Find in stdout.txt").fill("needle")
    page.get_by_role("button", name="Find").click()
    page.get_by_text("match 1").wait_for()
    lines.locator("#L3001.log-hit").wait_for()
    assert page.locator(".log-search-status strong").inner_text() == "2 matches"
    hit = lines.locator(".log-hit")
    assert hit.locator(".lt").inner_text() == "<script>window.pwned = 1</script> the needle in markup"
    assert hit.locator("mark").inner_text() == "needle" and hit.locator(".ln").inner_text() == "3001"
    assert lines.locator("script").count() == 0 and page.evaluate("window.pwned") is None

    page.get_by_role("button", name="Next").click()
    page.get_by_text("match 2").wait_for()
    # htmx keeps the old attributes on elements with the same id for its settle delay (20 ms): wait that out.
    lines.locator("#L3002.log-hit").wait_for()
    assert lines.locator(".log-hit mark").inner_text() == "NEEDLE"
    page.screenshot(path=f"{SCREENSHOTS}/portal-task-output-search.png", full_page=True)



def test_the_task_page_follows_its_task_to_the_end_without_a_reload(
        page, live_server, batch_client, batch_account, job, portal_admin, tmp_path):
    finish = tmp_path / "finish"
    add_task(batch_client, "ending", f"echo 'first line'; while [ ! -e {finish} ]; do sleep 0.05; done; "
                                     "echo 'the last line'")
    wait_for(lambda: batch_client.get_task("log-job", "ending").state == "running", message="the task running")
    sync_account(batch_account)
    log_in_and_open(page, live_server, portal_admin, "ending")

    lines = page.get_by_role("log", name="stdout.txt")
    lines.get_by_text("first line").wait_for()
    assert page.locator("#task-terminate").is_visible()
    assert page.locator("#log-source").inner_text().startswith("Live from node")
    assert page.locator("#log-bytes").inner_text() == "bytes 0–11 of 11"
    page.evaluate("window.notReloaded = true")

    finish.touch()
    wait_task_completed(batch_client, "log-job", "ending")
    # Saved before the mirror learns the task ended, so the page's last poll finds the saved copy.
    task = Task.objects.select_related("job", "job__account").get(task_id="ending")
    with gateway_for(batch_account) as batch, blob_store() as store:
        assert archive.archive_task(task, batch=batch, store=store)
    sync_account(batch_account)

    page.get_by_text("The task has ended; this is the whole output.").wait_for(timeout=15_000)
    lines.get_by_text("the last line").wait_for()
    page.locator("#task-terminate").wait_for(state="detached", timeout=15_000)
    assert page.locator("#task-delete").is_visible()
    assert page.locator("#log-source").inner_text().startswith("Saved copy in storage")
    assert page.locator("#log-bytes").inner_text() == "bytes 0–25 of 25"
    page.locator("#task .badge").get_by_text("succeeded").wait_for(timeout=15_000)
    # The same page all along: nothing reloaded it, and nothing polls any more.
    assert page.evaluate("window.notReloaded") is True
    assert page.locator("[hx-trigger^='every']").count() == 0
