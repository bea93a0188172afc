"""In a real browser: an Operator terminates a job on localbatch, saying why, and finds the action — who, from
where, why — on the job's History and in the audit history, whose chain still verifies."""

import os
from io import StringIO

import pytest
from django.core.management import call_command

from batchsync.accounts import default_account
from batchsync.sync import sync_account
from portal.models import AuditEvent, Job
from tests.factories import PASSWORD
from tests.localbatch.helpers import make_job, make_pool, task, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

SCREENSHOTS = os.environ.get("PORTAL_SCREENSHOT_DIR", "/tmp")
REASON = "wrong input file <b>frames.zip</b>"


@pytest.fixture
def batch_account(localbatch, settings, monkeypatch):
    settings.BATCH_ACCOUNT_URL = localbatch.endpoint
    settings.BATCH_ACCOUNT_NAME = localbatch.account_name
    settings.BATCH_ACCOUNT_KEY = localbatch.account_key
    monkeypatch.delenv("BATCH_ACCOUNT_KEY", raising=False)
    return default_account()


def test_an_operator_terminates_a_job_with_a_reason_and_the_audit_history_shows_it(
        page, live_server, batch_client, batch_account, team_a, operator_a):
    make_pool(batch_client, "render-pool", nodes=1, slots=2)
    make_job(batch_client, "render-job", "render-pool")
    batch_client.create_tasks("render-job", [task("frame-001", "/bin/sh -c 'sleep 600'")])
    wait_for(lambda: batch_client.get_task("render-job", "frame-001").state == "running", message="task running")
    sync_account(batch_account)
    # The job is the team's work, as a submission from one of its members would make it; operator_a is in that team.
    Job.objects.filter(job_id="render-job").update(team=team_a)
    job = Job.objects.get(job_id="render-job")

    page.set_viewport_size({"width": 1360, "height": 1000})
    page.goto(live_server.url + "/login/")
    page.get_by_label("Username").fill(operator_a.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Dashboard").wait_for()

    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    page.locator("#job-terminate").click()
    page.get_by_label("Why?").fill(REASON)
    page.get_by_role("button", name="Terminate job").click()

    page.get_by_role("heading", name="render-job").wait_for()
    assert batch_client.get_job("render-job").state in ("terminating", "completed")
    history = page.locator("#history")
    assert REASON in history.inner_text() and "job.terminate" in history.inner_text()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit").click()
    page.get_by_role("heading", name="Audit history").wait_for()
    page.get_by_label("Action").fill("job.")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/audit/?*action=job.*")
    rows = page.locator("table.audit tbody tr")
    assert rows.count() == 1
    row = rows.first.inner_text()
    # Who, from where (the browser's address as the live server saw it), what, on what, why.
    assert operator_a.username in row and "127.0.0.1" in row and "job.terminate" in row and REASON in row
    rows.first.get_by_role("link", name="render-job").wait_for()
    page.screenshot(path=f"{SCREENSHOTS}/portal-audit.png", full_page=True)

    recorded = AuditEvent.objects.get(action="job.terminate")
    assert (recorded.reason, recorded.team_id, recorded.object_id) == (REASON, team_a.pk, str(job.pk))
    out = StringIO()
    call_command("audit_verify", "--no-heads", stdout=out)
    assert "chain intact" in out.getvalue()
