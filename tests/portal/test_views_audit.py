"""The audit pages: who may read them, the filters, keyset pages without a count, the CSV export (its content and
its guard against spreadsheet formulas), and the History sections on the job page and in the template admin."""

import csv
import io
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from portal.audit.services import record_event
from portal.models import AuditEvent, JobTemplate, Submission
from tests.factories import JobFactory, PoolFactory, TaskFactory
from tests.portal.pages import text

pytestmark = pytest.mark.django_db

NEXT = re.compile(r'<a rel="next" href="([^"]+)"')
ROW = re.compile(r'<tr id="audit-(\d+)">')


@pytest.fixture
def operator(client, operator_a):
    client.force_login(operator_a)
    return client


def row_html(page: str, event: AuditEvent) -> str:
    return re.search(rf'<tr id="audit-{event.pk}">(.*?)</tr>', page, re.DOTALL).group(1)


def rows(response) -> list[int]:
    return [int(pk) for pk in ROW.findall(text(response))]


def csv_rows(response) -> list[list[str]]:
    assert response.status_code == 200 and response.streaming
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


# --- who may read it --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["audit_list", "audit_export"])
def test_operators_and_admins_read_the_history(client, operator_a, portal_admin, name):
    for person in (operator_a, portal_admin):
        client.force_login(person)
        assert client.get(reverse(name)).status_code == 200


@pytest.mark.parametrize("name", ["audit_list", "audit_export"])
def test_submitters_and_viewers_get_a_404(client, submitter, viewer, name):
    for person in (submitter, viewer):
        client.force_login(person)
        assert client.get(reverse(name)).status_code == 404


@pytest.mark.parametrize("name", ["audit_list", "audit_export"])
def test_anonymous_is_sent_to_login(client, name):
    response = client.get(reverse(name))

    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_the_nav_offers_audit_only_to_those_who_may_read_it(client, operator_a, submitter):
    link = f'href="{reverse("audit_list")}"'
    client.force_login(operator_a)
    assert link in text(client.get(reverse("job_list")))
    client.force_login(submitter)
    assert link not in text(client.get(reverse("job_list")))


def test_a_refused_export_records_nothing(client, submitter):
    client.force_login(submitter)
    client.get(reverse("audit_export"))

    assert not AuditEvent.objects.filter(action="audit.export").exists()


# --- the list -----------------------------------------------------------------------------------------------------


def test_each_row_says_when_who_from_where_what_on_what_why_and_what_changed(operator, operator_a, client):
    client.post(reverse("login"), {"username": "opal-operator", "password": "wrong"}, REMOTE_ADDR="203.0.113.9")
    client.force_login(operator_a)
    job = JobFactory(job_id="render-42")
    record_event(actor=operator_a, action="job.terminate", obj=job, reason="wrong frames <b>typed</b>",
                 changes={"state": ["active", "terminating"], "target_dedicated_nodes": [1, 3]})

    page = text(operator.get(reverse("audit_list")))

    terminate = row_html(page, AuditEvent.objects.get(action="job.terminate"))
    assert "opal-operator" in terminate
    assert f'<a href="{reverse("job_detail", args=[job.pk])}">render-42</a>' in terminate
    assert "wrong frames &lt;b&gt;typed&lt;/b&gt;" in terminate
    assert '<span class="mono">state</span>: active → terminating' in terminate
    assert '<span class="mono">target_dedicated_nodes</span>: 1 → 3' in terminate
    failed = row_html(page, AuditEvent.objects.get(action="auth.login_failed"))
    assert "203.0.113.9" in failed and "not signed in" in failed


def test_an_object_that_no_longer_exists_is_named_without_a_link(operator, operator_a):
    job = JobFactory(job_id="gone-job")
    record_event(actor=operator_a, action="job.terminate", obj=job, reason="r")
    job_url = reverse("job_detail", args=[job.pk])
    job.delete()

    page = text(operator.get(reverse("audit_list")))

    assert "gone-job" in page and job_url not in page


def test_newest_first_in_keyset_pages_without_counting(operator, operator_a):
    for n in range(60):
        record_event(actor=operator_a, action="task.retry", object_type="task", object_id=str(n))
    ours = list(AuditEvent.objects.filter(action="task.retry").order_by("-id").values_list("pk", flat=True))

    with CaptureQueriesContext(connection) as queries:
        first = operator.get(reverse("audit_list"), {"action": "task.retry"})
    second = operator.get(reverse("audit_list") + NEXT.search(text(first)).group(1).replace("&amp;", "&"))

    assert (first.status_code, second.status_code) == (200, 200)
    assert rows(first) == ours[:50] and rows(second) == ours[50:]
    assert NEXT.search(text(second)) is None
    assert not [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()
                and "portal_auditevent" in q["sql"]]


@pytest.fixture
def assorted(operator_a, portal_admin):
    job = JobFactory()
    record_event(actor=portal_admin, action="pool.resize", object_type="pool", object_id="render")
    record_event(actor=operator_a, action="job.terminate", obj=job, reason="stuck")
    record_event(actor=operator_a, action="task.retry", object_type="task", object_id="7")
    record_event(actor=portal_admin, action="job_template.change", object_type="job_template", object_id="3")
    return {"job": job}


def actions(response) -> list[str]:
    return [AuditEvent.objects.get(pk=pk).action for pk in rows(response)]


def test_filter_by_who_matches_the_start_of_the_name_in_any_case(operator, assorted):
    assert set(actions(operator.get(reverse("audit_list"), {"who": "ADA"}))) == {"pool.resize",
                                                                                 "job_template.change"}


def test_filter_by_action_matches_a_prefix(operator, assorted):
    assert actions(operator.get(reverse("audit_list"), {"action": "job"})) == ["job_template.change",
                                                                               "job.terminate"]
    assert actions(operator.get(reverse("audit_list"), {"action": "job."})) == ["job.terminate"]


def test_filter_by_object(operator, assorted):
    job = assorted["job"]
    found = actions(operator.get(reverse("audit_list"), {"object_type": "job", "object_id": str(job.pk)}))

    assert found == ["job.terminate"]
    assert actions(operator.get(reverse("audit_list"), {"object_type": "task", "object_id": "8"})) == []


def test_filter_by_time_range(operator):
    record_event(actor=None, action="pool.create", object_type="pool", object_id="a")
    today = timezone.now().date()
    tomorrow = today + timedelta(days=1)

    assert "pool.create" in actions(operator.get(reverse("audit_list"), {"from": today.isoformat()}))
    assert "pool.create" in actions(operator.get(reverse("audit_list"), {"to": today.isoformat()}))
    assert actions(operator.get(reverse("audit_list"), {"from": tomorrow.isoformat()})) == []
    assert "pool.create" not in actions(operator.get(reverse("audit_list"), {
        "to": (today - timedelta(days=1)).isoformat()}))
    # The page's own datetime-local format, minutes included.
    now = timezone.now()
    within = {"from": f"{now - timedelta(minutes=5):%Y-%m-%dT%H:%M}",
              "to": f"{now + timedelta(minutes=5):%Y-%m-%dT%H:%M}"}
    assert "pool.create" in actions(operator.get(reverse("audit_list"), within))


def test_the_export_link_carries_the_filters(operator):
    page = text(operator.get(reverse("audit_list"), {"action": "job.", "who": "opal", "from": "2026-01-01"}))

    assert f'href="{reverse("audit_export")}?who=opal&amp;action=job.&amp;from=2026-01-01"' in page


def test_a_time_that_is_not_a_time_is_ignored(operator):
    record_event(actor=None, action="pool.create", object_type="pool", object_id="a")

    assert "pool.create" in actions(operator.get(reverse("audit_list"), {"from": "yesterday-ish"}))


# --- the CSV export -------------------------------------------------------------------------------------------------


def test_the_export_holds_the_filtered_rows_and_is_recorded(operator, operator_a, assorted):
    response = operator.get(reverse("audit_export"), {"action": "job."})

    table = csv_rows(response)
    assert table[0][:6] == ["id", "when (UTC)", "who", "who id", "from", "action"]
    assert [row[5] for row in table[1:]] == ["job.terminate"]
    assert table[1][2] == "opal-operator" and table[1][10] == "stuck"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-')
    export = AuditEvent.objects.get(action="audit.export")
    assert export.actor_id == operator_a.pk and export.details == {"filters": {"action": "job."}}


@pytest.mark.parametrize("dangerous", ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+2", "-2+3", "@SUM(A1)",
                                       "\t=1+1"])
def test_cells_a_spreadsheet_would_run_as_formulas_are_quoted(operator, operator_a, dangerous):
    record_event(actor=operator_a, action="job.terminate", object_type="job", object_id="1",
                 object_label=dangerous, reason=dangerous)

    row = next(row for row in csv_rows(operator.get(reverse("audit_export"))) if row[5] == "job.terminate")

    assert row[8] == "'" + dangerous and row[10] == "'" + dangerous.strip()


def test_the_export_shows_changes_as_before_and_after(operator, operator_a):
    record_event(actor=operator_a, action="pool.resize", object_type="pool", object_id="p",
                 changes={"target_dedicated_nodes": [1, 3]})

    row = next(row for row in csv_rows(operator.get(reverse("audit_export"))) if row[5] == "pool.resize")

    assert row[11] == "target_dedicated_nodes: 1 → 3"


# --- History sections -------------------------------------------------------------------------------------------


def test_the_job_page_shows_the_jobs_history_and_its_submissions(client, operator_a, submitter):
    job = JobFactory(job_id="sub-abc", submitted_by=submitter)
    version = JobTemplate.objects.get(slug="render-frames").current_version()
    submission = Submission.objects.create(public_id="00000000-0000-0000-0000-000000000001", account=job.account,
                                           template_version=version, submitted_by=submitter, job_id="sub-abc")
    record_event(actor=submitter, action="submission.create", obj=submission)
    record_event(actor=operator_a, action="job.terminate", obj=job, reason="wrong input file")
    record_event(actor=operator_a, action="job.terminate", obj=JobFactory(), reason="another job")

    client.force_login(submitter)
    page = text(client.get(reverse("job_detail", args=[job.pk])))

    history = page[page.index('id="history"'):]
    assert "submission.create" in history and "wrong input file" in history and "another job" not in history
    # The full history, with addresses, is the Operators' and Admins'.
    assert reverse("audit_list") not in history and "<th scope=\"col\">From</th>" not in history

    client.force_login(operator_a)
    history = text(client.get(reverse("job_detail", args=[job.pk])))
    assert f'{reverse("audit_list")}?object_type=job&amp;object_id={job.pk}' in history
    assert "<th scope=\"col\">From</th>" in history


def test_the_job_pages_polled_partials_leave_the_history_out(client, submitter):
    job = JobFactory()
    client.force_login(submitter)

    partial = text(client.get(reverse("job_detail", args=[job.pk]), HTTP_HX_REQUEST="true", HTTP_HX_TARGET="tasks"))

    assert 'id="history"' not in partial


def test_the_template_admin_page_shows_the_latest_records_and_links_to_the_rest(admin_client, admin_user):
    template = JobTemplate.objects.get(slug="render-frames")
    record_event(actor=admin_user, action="job_template.change", obj=template,
                 changes={"description": ["old words", "new words"]})

    page = text(admin_client.get(reverse("admin:portal_jobtemplate_change", args=[template.pk])))

    assert "job_template.change" in page and "description: old words → new words" in page
    assert f'{reverse("audit_list")}?object_type=job_template&amp;object_id={template.pk}' in page


def test_the_task_page_shows_the_tasks_history(client, operator_a, submitter):
    task = TaskFactory(job=JobFactory(team=operator_a.teams.first()))
    record_event(actor=operator_a, action="task.terminate", obj=task, reason="hung on frame 12")
    record_event(actor=operator_a, action="task.terminate", obj=TaskFactory(), reason="some other task")

    client.force_login(submitter)
    history = text(client.get(reverse("task_detail", args=[task.pk])))
    history = history[history.index('id="history"'):]

    assert "hung on frame 12" in history and "some other task" not in history
    assert AuditEvent.objects.filter(reason="hung on frame 12").get().team_id == task.job.team_id


def test_the_submission_page_shows_its_history_and_the_list_links_to_it(client, operator_a, submitter):
    version = JobTemplate.objects.get(slug="render-frames").current_version()
    job = JobFactory(job_id="sub-def", submitted_by=submitter, team=operator_a.teams.first())
    submission = Submission.objects.create(public_id="00000000-0000-0000-0000-000000000002", account=job.account,
                                           template_version=version, submitted_by=submitter, job_id="sub-def",
                                           team=operator_a.teams.first(), state="submitted")
    record_event(actor=submitter, action="submission.create", obj=submission)
    record_event(actor=operator_a, action="job.terminate", obj=job, reason="out of budget")

    client.force_login(submitter)
    page = text(client.get(reverse("submission_detail", args=[submission.public_id])))
    history = page[page.index('id="history"'):]

    assert "submission.create" in history and "out of budget" in history

    client.force_login(operator_a)
    listed = text(client.get(reverse("audit_list"), {"object_type": "submission"}))
    assert f'href="{reverse("submission_detail", args=[submission.public_id])}"' in listed


def test_the_pool_page_shows_the_pools_history(client, operator_a):
    pool = PoolFactory(pool_id="render")
    record_event(actor=operator_a, action="pool.resize", object_type="pool", object_id="render",
                 object_label="render", changes={"target_dedicated_nodes": [2, 8]})
    record_event(actor=operator_a, action="pool.resize", object_type="pool", object_id="other", object_label="other")

    client.force_login(operator_a)
    history = text(client.get(reverse("pool_detail", args=[pool.pk])))
    history = history[history.index('id="history"'):]

    assert "target_dedicated_nodes</span>: 2 → 8" in history and "other" not in history
    assert f'{reverse("audit_list")}?object_type=pool&amp;object_id=render' in history
