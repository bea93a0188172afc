"""Names and outcomes: a submission's optional name (checked, escaped, the default when empty) shown with the Batch
id wherever the job or submission appears; "My submissions" with each one's outcome and its job linked; the one
outcome rule (Job.outcome, Submission.outcome)."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from portal.models import (
    AuditEvent,
    JobOutcome,
    JobTemplate,
    Outcome,
    Submission,
    SubmissionState,
)
from portal.submit import services
from portal.submit.forms import SubmitForm
from portal.submit.services import SubmissionError, submission_name_clean
from tests.factories import JobFactory, TaskFactory
from tests.personas import client_for
from tests.portal.pages import text
from tests.portal.submit_helpers import form_values

pytestmark = pytest.mark.django_db

NASTY = '<script>alert("x")</script> & <b>bold</b>'


def version_of(slug: str):
    return JobTemplate.objects.get(slug=slug).current_version()


def submit(user, name: str | None = None, frames: str = "2") -> Submission:
    return services.submission_create(user=user, template_version=version_of("render-frames"),
                                      parameters={"frames": frames}, name=name)


# --- the name: checked, defaulted, kept --------------------------------------------------------------------


def test_a_name_is_trimmed_and_its_inner_spaces_made_one():
    template = JobTemplate.objects.get(slug="render-frames")

    assert submission_name_clean("  March   frames\t run ", template=template) == "March frames run"


def test_no_name_is_the_templates_name_and_the_date():
    template = JobTemplate.objects.get(slug="render-frames")
    now = timezone.now()

    assert submission_name_clean("   ", template=template, now=now) == (
        f"Render frames 1..N {timezone.localtime(now):%Y-%m-%d %H:%M}")


@pytest.mark.parametrize("bad", ["x" * (Submission.NAME_MAX_LENGTH + 1), "two\x00parts", "bell\x07"])
def test_a_name_too_long_or_with_control_characters_is_refused_and_nothing_is_written(user, bad):
    with pytest.raises(SubmissionError) as refused:
        submit(user, name=bad)

    assert set(refused.value.field_errors) == {SubmitForm.NAME_FIELD}
    assert Submission.objects.count() == 0 and not AuditEvent.objects.filter(action="submission.create").exists()


def test_the_longest_name_is_kept_whole(user):
    submission = submit(user, name="y" * Submission.NAME_MAX_LENGTH)

    assert submission.name == "y" * Submission.NAME_MAX_LENGTH


def test_the_form_takes_a_name_through_the_preview_to_the_submission(signed_in):
    form = text(signed_in.get(reverse("submit_form", args=["render-frames"])))
    assert f'name="{SubmitForm.NAME_FIELD}"' in form and "Name (optional)" in form

    preview = signed_in.post(reverse("submit_form", args=["render-frames"]),
                             {"template_version": version_of("render-frames").pk, "frames": "2",
                              SubmitForm.NAME_FIELD: "  Frames for   March "})
    assert '<dd id="preview-name">Frames for March</dd>' in text(preview)
    signed_in.post(reverse("submit_confirm", args=["render-frames"]), {**form_values(preview), "submit": "1"})

    assert Submission.objects.get().name == "Frames for March"


def test_a_name_too_long_on_the_form_is_said_next_to_the_field(signed_in):
    page = text(signed_in.post(reverse("submit_form", args=["render-frames"]),
                               {"template_version": version_of("render-frames").pk, "frames": "2",
                                SubmitForm.NAME_FIELD: "z" * 201}))

    assert "At most 200 characters, this one has 201." in page and "Check before submitting" not in page
    assert Submission.objects.count() == 0


def test_a_name_is_escaped_wherever_it_is_shown(user):
    submission = submit(user, name=NASTY)
    Submission.objects.filter(pk=submission.pk).update(state=SubmissionState.SUBMITTED)
    job = JobFactory(account=submission.account, job_id=submission.job_id, display_name=submission.name,
                     submitted_by=user)
    client = client_for(user)

    pages = [text(client.get(url)) for url in (
        reverse("submission_list"), reverse("submission_detail", args=[submission.public_id]),
        reverse("job_list"), reverse("job_detail", args=[job.pk]), reverse("dashboard"))]

    for page in pages:
        assert "<script>alert" not in page and "<b>bold</b>" not in page
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page


def test_the_name_is_the_audit_label_with_the_batch_id_beside_it(user):
    submission = submit(user, name="Frames for March")

    event = AuditEvent.objects.get(action="submission.create")
    assert event.object_label == f"Frames for March ({submission.job_id})"
    assert event.details["name"] == "Frames for March"


# --- the name on the job's pages ---------------------------------------------------------------------------


def test_a_named_job_shows_its_name_with_the_batch_id_beside(viewer):
    job = JobFactory(job_id="sub-5eb0abbae0614a07", display_name="Frames for March")
    task = TaskFactory(job=job, task_id="t00001")
    client = client_for(viewer)

    listed = text(client.get(reverse("job_list")))
    detail = text(client.get(reverse("job_detail", args=[job.pk])))
    task_page = text(client.get(reverse("task_detail", args=[task.pk])))

    assert f'id="job-{job.pk}" href="{reverse("job_detail", args=[job.pk])}">Frames for March</a>' in listed
    assert '<div class="mono muted small truncate">sub-5eb0abbae0614a07</div>' in listed
    assert ('<h1>Frames for March <span class="mono small muted" id="job-batch-id">sub-5eb0abbae0614a07</span></h1>'
            in detail)
    assert ">Frames for March</a> <span class=\"mono small muted\">sub-5eb0abbae0614a07</span>" in task_page


def test_a_job_without_a_name_shows_its_id_alone(viewer):
    job = JobFactory(job_id="outside-job")

    detail = text(client_for(viewer).get(reverse("job_detail", args=[job.pk])))

    assert '<h1><span class="mono" id="job-batch-id">outside-job</span></h1>' in detail


# --- outcomes ----------------------------------------------------------------------------------------------


OUTCOMES = [
    # (job fields, kind, label)
    ({"state": "active", "task_running": 2}, Outcome.RUNNING, "running"),
    ({"state": "active", "task_running": 2, "task_failed": 1, "task_completed": 1}, Outcome.RUNNING,
     "running, 1 failed"),
    ({"state": "completed", "terminate_reason": "AllTasksComplete", "task_completed": 3, "task_succeeded": 3},
     Outcome.SUCCEEDED, "succeeded"),
    ({"state": "completed", "terminate_reason": "AllTasksComplete", "task_completed": 3, "task_succeeded": 1,
      "task_failed": 2}, Outcome.FAILED, "2 failed"),
    ({"state": "completed", "terminate_reason": "TaskFailed", "task_completed": 1, "task_failed": 1},
     Outcome.FAILED, "1 failed"),
    ({"state": "completed", "terminate_reason": "UserTerminate", "task_completed": 1, "task_succeeded": 1},
     Outcome.TERMINATED, "terminated"),
    ({"state": "terminating", "terminate_reason": "wrong input"}, Outcome.TERMINATED, "terminated"),
    ({"state": "completed", "terminate_reason": "MaxWallClockTimeExpiry"}, Outcome.TERMINATED, "terminated"),
    # Batch compares its enum-like reasons without regard to case; so does the rule.
    ({"state": "completed", "terminate_reason": "alltaskscomplete", "task_completed": 1, "task_succeeded": 1},
     Outcome.SUCCEEDED, "succeeded"),
]


@pytest.mark.parametrize(("fields", "kind", "label"), OUTCOMES)
def test_a_jobs_outcome_from_its_state_reason_and_counts(fields, kind, label):
    job = JobFactory(**fields)

    assert (job.outcome.kind, job.outcome.label) == (kind, label)


def test_failures_that_a_terminate_caused_are_not_the_jobs_failures():
    job = JobFactory(state="completed", terminate_reason="AllTasksComplete", task_completed=2, task_succeeded=1,
                     task_failed=1)
    TaskFactory(job=job, failed=True, failure_code="TaskEnded")

    assert (job.failed_task_count, job.task_terminated, job.outcome.label) == (0, 1, "succeeded")


def test_a_submissions_outcome_before_and_after_batch_has_its_job(user):
    submission = submit(user)
    assert submission.outcome == JobOutcome(Outcome.SUBMITTING)

    Submission.objects.filter(pk=submission.pk).update(state=SubmissionState.FAILED)
    assert Submission.objects.get(pk=submission.pk).outcome.label == "not submitted"

    Submission.objects.filter(pk=submission.pk).update(state=SubmissionState.SUBMITTED)
    assert Submission.objects.get(pk=submission.pk).outcome == JobOutcome(Outcome.RUNNING), "not synced yet"

    JobFactory(account=submission.account, job_id=submission.job_id, state="completed",
               terminate_reason="UserTerminate")
    assert Submission.objects.get(pk=submission.pk).outcome.label == "terminated"


def test_my_submissions_shows_each_outcome_links_the_job_and_dates_old_times(user, django_assert_max_num_queries):
    cases = {"running": {"state": "active", "task_running": 1},
             "succeeded": {"state": "completed", "terminate_reason": "AllTasksComplete", "task_completed": 1,
                           "task_succeeded": 1},
             "failed": {"state": "completed", "terminate_reason": "AllTasksComplete", "task_completed": 2,
                        "task_failed": 2},
             "terminated": {"state": "completed", "terminate_reason": "UserTerminate"}}
    jobs = {}
    for name, fields in cases.items():
        submission = submit(user, name=f"case {name}")
        Submission.objects.filter(pk=submission.pk).update(state=SubmissionState.SUBMITTED)
        jobs[name] = JobFactory(account=submission.account, job_id=submission.job_id, **fields)
    waiting = submit(user, name="case waiting")
    Submission.objects.filter(pk=waiting.pk).update(created_at=timezone.now() - timedelta(days=3))
    client = client_for(user)

    with django_assert_max_num_queries(20):
        page = text(client.get(reverse("submission_list")))

    assert "Submitted</span>" not in page
    for kind, label in (("running", "running"), ("succeeded", "succeeded"), ("failed", "2 failed"),
                        ("terminated", "terminated"), ("submitting", "submitting")):
        assert f'<span class="badge outcome-{kind}">{label}</span>' in page
    for job in jobs.values():
        assert f'href="{reverse("job_detail", args=[job.pk])}">{job.job_id}</a>' in page
    old = timezone.localtime(timezone.now() - timedelta(days=3))
    assert old.strftime("%b %d") in page, "a time not of today carries its date"


def test_my_submissions_is_for_submitters_only(client, viewer, user, operator_a, submitter):
    assert client.get(reverse("submission_list")).status_code == 302
    assert client_for(viewer).get(reverse("submission_list")).status_code == 403
    submit(submitter, name="team work")
    assert "team work" in text(client_for(operator_a).get(reverse("submission_list"), {"scope": "team"}))
    assert "team work" not in text(client_for(user).get(reverse("submission_list"), {"scope": "team"}))


def test_change_values_on_the_preview_keeps_the_name(signed_in):
    preview = signed_in.post(reverse("submit_form", args=["render-frames"]),
                             {"template_version": version_of("render-frames").pk, "frames": "2",
                              SubmitForm.NAME_FIELD: "Frames for March"})

    form = text(signed_in.post(reverse("submit_confirm", args=["render-frames"]),
                               {**form_values(preview), "edit": "1"}))

    assert f'name="{SubmitForm.NAME_FIELD}" value="Frames for March"' in form
    assert Submission.objects.count() == 0


def test_a_submission_from_before_names_goes_by_its_templates_name(user):
    submission = submit(user)
    Submission.objects.filter(pk=submission.pk).update(name="")

    older = Submission.objects.get(pk=submission.pk)
    assert (older.title, older.name_and_id) == ("Render frames 1..N", older.job_id)
