"""A pool and a job made in localbatch through the SDK reach the pages after a sync, in a real browser."""

import os

import pytest
from azure.batch import models
from playwright.sync_api import expect

from batchsync.accounts import default_account
from batchsync.sync import sync_account
from tests.factories import JobFactory, TaskFactory
from tests.localbatch.helpers import make_job, make_pool, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

SCREENSHOTS = os.environ.get("PORTAL_SCREENSHOT_DIR", "/tmp")


@pytest.fixture
def batch_account(localbatch, settings, monkeypatch):
    """The portal's default account, pointed at this test's localbatch."""
    settings.BATCH_ACCOUNT_URL = localbatch.endpoint
    settings.BATCH_ACCOUNT_NAME = localbatch.account_name
    settings.BATCH_ACCOUNT_KEY = localbatch.account_key
    # An exported key would win over the setting and send the sync elsewhere.
    monkeypatch.delenv("BATCH_ACCOUNT_KEY", raising=False)
    return default_account()


def test_a_job_in_batch_appears_on_the_dashboard_and_opens_down_to_a_task(
        page, live_server, batch_client, batch_account, viewer):
    make_pool(batch_client, "render-pool", nodes=2, slots=2)
    wait_for(lambda: [n.state for n in batch_client.list_nodes("render-pool")] == ["idle", "idle"],
             message="two idle nodes")
    make_job(batch_client, "render-job", "render-pool", display_name="Render frames")
    batch_client.create_tasks("render-job", [
        *(models.BatchTaskCreateOptions(id=f"frame-{i:03d}", command_line="/bin/sh -c 'echo rendered'")
          for i in range(6)),
        models.BatchTaskCreateOptions(id="frame-bad", command_line="/bin/sh -c 'echo broken >&2; exit 3'"),
    ])
    wait_for(lambda: all(t.state == "completed" for t in batch_client.list_tasks("render-job")),
             message="every task completed")
    sync_account(batch_account)

    page.set_viewport_size({"width": 1360, "height": 1000})
    page.goto(live_server.url + "/")
    page.get_by_label("Username").fill(viewer.username)
    page.get_by_label("Password").fill("correct horse battery staple")
    page.get_by_role("button", name="Log in").click()

    page.get_by_role("heading", name="Dashboard").wait_for()
    jobs = page.get_by_role("region", name="Active jobs")
    pools = page.get_by_role("region", name="Pools")
    assert "render-pool" in pools.inner_text()
    assert "render-job" in jobs.inner_text()
    assert "7 of 7 done" in jobs.inner_text() and "1 failed" in jobs.inner_text()
    assert "frame-bad" in page.get_by_role("region", name="Recent failures").inner_text()
    assert "Synced" in page.locator("#dashboard .synced").inner_text()
    page.screenshot(path=f"{SCREENSHOTS}/portal-dashboard.png", full_page=True)

    # Nobody reloads: a job submitted now shows up after the next sync through the page's own polling.
    make_job(batch_client, "late-job", "render-pool")
    sync_account(batch_account)
    jobs.get_by_role("link", name="late-job").wait_for(timeout=15_000)

    jobs.get_by_role("link", name="Render frames").click()
    page.get_by_role("heading", name="render-job").wait_for()
    table = page.locator("#tasks table")
    assert table.locator("tbody tr").count() == 7
    page.get_by_label("Failed only").check()
    # Locator waits, not wait_for_function with a string: the page's CSP forbids evaluating strings.
    expect(page.locator("#tasks tbody tr")).to_have_count(1)
    assert "failed=1" in page.url
    page.screenshot(path=f"{SCREENSHOTS}/portal-job.png", full_page=True)

    page.locator("#tasks").get_by_role("link", name="frame-bad").click()
    page.get_by_role("heading", name="frame-bad").wait_for()
    assert "Why it failed" in page.inner_text("main")
    assert "exited with code 3" in page.inner_text("main")
    assert "/bin/sh -c 'echo broken >&2; exit 3'" in page.inner_text("main")
    page.screenshot(path=f"{SCREENSHOTS}/portal-task.png", full_page=True)

    page.get_by_role("link", name="render-pool").first.click()
    page.get_by_role("heading", name="render-pool").wait_for()
    assert page.locator(".heatmap .cell").count() == 2
    page.screenshot(path=f"{SCREENSHOTS}/portal-pool.png", full_page=True)


def test_a_poll_of_the_task_table_keeps_the_keyboard_focus(page, live_server, viewer):
    job = JobFactory(job_id="focus-job", task_running=3)
    tasks = TaskFactory.create_batch(3, job=job, state="running")
    page.goto(live_server.url + "/login/")
    page.get_by_label("Username").fill(viewer.username)
    page.get_by_label("Password").fill("correct horse battery staple")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Dashboard").wait_for()
    page.goto(f"{live_server.url}/jobs/{job.pk}/")

    link = f"task-{tasks[1].pk}"
    page.focus(f"#{link}")
    # Mark the table as it is now, to tell afterwards that a poll replaced it.
    page.evaluate("document.getElementById('tasks').dataset.before = 'yes'")
    with page.expect_response(lambda r: r.request.headers.get("hx-target") == "tasks", timeout=10_000):
        pass
    expect(page.locator("#tasks[data-before]")).to_have_count(0)

    assert page.evaluate("document.activeElement.id") == link
