"""Past its team's per-submission limit, Submit asks for approval: nothing goes to Batch until an Operator of the team
or an Admin approves it (then it is sent as any other) or turns it down (it ends not submitted); both audited, the
submitter cannot approve their own, and only one decision counts."""

import uuid
from datetime import date
from decimal import Decimal

import pytest
from django.urls import reverse

from batchsync.submit import redrive_submissions
from portal.models import AuditEvent, Job, JobTemplate, Submission, SubmissionState, VmPrice
from portal.submit.render import task_id
from tests.factories import BatchAccountFactory, JobFactory, PoolFactory, TaskFactory
from tests.personas import client_for
from tests.portal.submit_helpers import form_values

pytestmark = pytest.mark.django_db

SLUG = "render-frames"   # 240 tasks × its 300 s limit = 20 node-hours: up to $30.40 at $1.52


@pytest.fixture
def limited(team_a):
    PoolFactory(account=BatchAccountFactory(), pool_id="demo-pool", vm_size="Standard_D2s_v3")
    VmPrice.objects.create(vm_size="Standard_D2s_v3", dedicated_per_hour=Decimal("1.52"), taken_on=date(2026, 12, 1))
    team_a.approval_limit = Decimal("25")
    team_a.save()
    return team_a


def submit(client, frames="240"):
    template = JobTemplate.objects.get(slug=SLUG)
    shown = client.post(reverse("submit_form", args=[SLUG]), {"template_version": template.current_version().pk,
                                                             "frames": frames, "seconds_per_frame": "1"})
    body = shown.content.decode()
    response = client.post(reverse("submit_confirm", args=[SLUG]), {**form_values(shown), "submit": "1"})
    assert response.status_code == 302
    return body, Submission.objects.get(submitted_by__isnull=False, public_id=response["Location"].split("/")[-2])


def decide(person, submission, decision, reason="", client=None):
    return (client or client_for(person)).post(reverse("submission_decide", args=[submission.public_id]),
                                   {"decision": decision, "reason": reason})


def test_over_the_limit_the_preview_says_so_and_submit_waits_without_sending(
        submitter, limited, django_capture_on_commit_callbacks):
    client = client_for(submitter)   # signed in first: only what the submission enqueues is counted
    with django_capture_on_commit_callbacks() as callbacks:
        preview_body, submission = submit(client)

    assert "Needs approval:</strong> It is estimated at up to $30.40, over Team A" in preview_body
    assert submission.state == SubmissionState.AWAITING_APPROVAL
    assert callbacks == [], "nothing enqueued for Batch"
    created = AuditEvent.objects.get(action="submission.create", object_id=str(submission.pk))
    assert "over Team A" in created.details["approval_needed"]
    page = client_for(submitter).get(reverse("submission_detail", args=[submission.public_id])).content.decode()
    assert "Waiting for approval" in page and 'id="approve-button"' not in page and "hx-trigger" not in page


def test_within_the_limit_it_is_sent_at_once(submitter, limited, django_capture_on_commit_callbacks):
    client = client_for(submitter)
    with django_capture_on_commit_callbacks() as callbacks:
        preview_body, submission = submit(client, frames="10")
    assert "Needs approval" not in preview_body
    assert submission.state == SubmissionState.PENDING and len(callbacks) == 1


@pytest.mark.parametrize("approver", ["operator_a", "portal_admin"])
def test_the_teams_operator_or_an_admin_approves_and_it_is_sent(request, submitter, limited, approver,
                                                                django_capture_on_commit_callbacks):
    _, submission = submit(client_for(submitter))
    person = request.getfixturevalue(approver)
    page = client_for(person).get(reverse("submission_detail", args=[submission.public_id])).content.decode()
    assert 'id="approve-button"' in page

    client = client_for(person)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = decide(person, submission, "approve", "the March review needs it", client=client)

    assert response.status_code == 302
    submission.refresh_from_db()
    assert submission.state == SubmissionState.PENDING and len(callbacks) == 1
    event = AuditEvent.objects.get(action="submission.approve")
    assert (event.actor_id, event.reason, event.object_id) == (person.pk, "the March review needs it",
                                                              str(submission.pk))
    # A second decision is refused and changes nothing.
    decide(person, submission, "reject")
    submission.refresh_from_db()
    assert submission.state == SubmissionState.PENDING
    assert not AuditEvent.objects.filter(action="submission.reject").exists()


def test_turned_down_it_ends_not_submitted_saying_by_whom(submitter, operator_a, limited):
    _, submission = submit(client_for(submitter))
    decide(operator_a, submission, "reject", "too much this month")
    submission.refresh_from_db()
    assert submission.state == SubmissionState.FAILED
    assert submission.error_message == "Not approved by opal-operator: too much this month"
    assert AuditEvent.objects.filter(action="submission.reject", actor_id=operator_a.pk).count() == 1


@pytest.mark.parametrize("persona", ["submitter", "operator_b", "viewer", "other_submitter"])
def test_others_and_the_submitter_cannot_decide(request, submitter, limited, persona):
    _, submission = submit(client_for(submitter))
    response = decide(request.getfixturevalue(persona), submission, "approve")
    assert response.status_code in (403, 404)
    submission.refresh_from_db()
    assert submission.state == SubmissionState.AWAITING_APPROVAL
    assert not AuditEvent.objects.filter(action="submission.approve").exists()


def test_anonymous_is_sent_to_sign_in_and_a_bad_decision_changes_nothing(client, submitter, operator_a, limited):
    _, submission = submit(client_for(submitter))
    response = client.post(reverse("submission_decide", args=[submission.public_id]), {"decision": "approve"})
    assert response.status_code == 302 and "login" in response["Location"]
    assert decide(operator_a, submission, "maybe").status_code == 302
    submission.refresh_from_db()
    assert submission.state == SubmissionState.AWAITING_APPROVAL


def test_the_redriver_leaves_a_waiting_submission_alone(submitter, limited, settings):
    _, submission = submit(client_for(submitter))
    settings.SUBMISSION_STALE_SECONDS = 0   # any unfinished row counts as lost at once
    Submission.objects.filter(pk=submission.pk).update(updated_at=submission.created_at.replace(year=2000))

    assert submission.pk not in redrive_submissions()


def ended_with_failures(submitter, failed: int) -> Job:
    """An ended job of the portal's (its submission made by `submitter`), with `failed` failed tasks, as the mirror
    has it."""
    _, submission = submit(client_for(submitter), frames="10")
    Submission.objects.filter(pk=submission.pk).update(state=SubmissionState.SUBMITTED)
    job = JobFactory(account=submission.account, job_id=submission.job_id, pool_id="demo-pool", state="completed",
                     submitted_by=submitter, team=submission.team, task_completed=failed, task_failed=failed)
    for n in range(1, failed + 1):
        TaskFactory(job=job, task_id=task_id(n), state="completed", result="failure", exit_code=1)
    return job


def test_a_retry_of_failed_tasks_meets_the_same_limit_and_waits_for_approval(
        submitter, operator_a, limited, django_capture_on_commit_callbacks):
    # The failed run is the template's history: 100 tasks of 60 s, 1.7 node-hours at $1.52 = $2.53, again.
    job = ended_with_failures(submitter, failed=100)
    limited.approval_limit = Decimal("2")
    limited.monthly_budget = Decimal("5")
    limited.save()
    parent = Submission.of_job(job)
    url = reverse("submission_retry_failed", args=[parent.public_id])
    client = client_for(submitter)

    page = client.get(url).content.decode()
    assert "Needs approval:</strong> It is estimated at up to $2.53, over Team A" in page
    assert 'id="budget-warning"' in page

    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(url, {"key": str(uuid.uuid4())})
    retry = Submission.objects.get(retry_of=parent)
    assert response.status_code == 302 and retry.state == SubmissionState.AWAITING_APPROVAL
    assert callbacks == [], "nothing enqueued for Batch"
    event = AuditEvent.objects.get(action="submission.retry_failed", object_id=str(retry.pk))
    assert "over Team A" in event.details["approval_needed"]

    approver = client_for(operator_a)
    with django_capture_on_commit_callbacks() as callbacks:
        decide(operator_a, retry, "approve", client=approver)
    retry.refresh_from_db()
    assert retry.state == SubmissionState.PENDING and len(callbacks) == 1


def test_a_retry_within_the_limit_is_sent_at_once(submitter, limited, django_capture_on_commit_callbacks):
    job = ended_with_failures(submitter, failed=3)
    parent = Submission.of_job(job)
    url = reverse("submission_retry_failed", args=[parent.public_id])

    client = client_for(submitter)
    assert "Needs approval" not in client.get(url).content.decode()
    with django_capture_on_commit_callbacks() as callbacks:
        client.post(url, {"key": str(uuid.uuid4())})
    assert Submission.objects.get(retry_of=parent).state == SubmissionState.PENDING and len(callbacks) == 1


def test_a_waiting_submission_reads_waiting_for_approval_in_the_list_not_submitting(submitter, operator_a, limited):
    _, waiting = submit(client_for(submitter))
    _, sent = submit(client_for(submitter), frames="10")

    for person, scope in ((submitter, "my"), (operator_a, "team")):
        body = client_for(person).get(reverse("submission_list"), {"scope": scope}).content.decode()
        row = body[body.index(f'id="submission-{waiting.pk}"'):]
        row = row[:row.index("</tr>")]
        assert '<span class="badge outcome-awaiting_approval">waiting for approval</span>' in row
        assert "submitting" not in row
        other = body[body.index(f'id="submission-{sent.pk}"'):]
        assert '<span class="badge outcome-submitting">submitting</span>' in other[:other.index("</tr>")]


def test_the_dashboard_lists_what_waits_for_approval_to_those_who_may_act_on_it(
        submitter, operator_a, other_submitter, viewer, limited):
    _, waiting = submit(client_for(submitter))
    submit(client_for(submitter), frames="10")   # sent at once: not listed

    for person in (submitter, operator_a):
        body = client_for(person).get(reverse("dashboard")).content.decode()
        card = body[body.index('id="approvals"'):]
        card = card[:card.index("</section>")]
        assert reverse("submission_detail", args=[waiting.public_id]) in card and card.count("<li>") == 1
        assert "waiting for approval" in card and "240 tasks, by sue-submitter" in card
    for person in (other_submitter, viewer):
        assert 'id="approvals"' not in client_for(person).get(reverse("dashboard")).content.decode()
