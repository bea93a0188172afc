"""portal.submit.services.submission_create and job_template_version_create: what is written, what is refused, and
that a refused submission writes and enqueues nothing. The example templates shipped by migration 0005 are used as
is."""

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied, ValidationError

from batchsync.submit import expand
from portal.models import JobTemplate, JobTemplateVersion, Submission, SubmissionState
from portal.submit import services
from portal.submit.services import SubmissionError
from portal.submit.values import InputFile

pytestmark = pytest.mark.django_db


def version_of(slug):
    return JobTemplate.objects.get(slug=slug).current_version()


def text_file(name, size=10):
    return InputFile(name=name, url=f"https://blob.example/inputs/{name}", size=size)


def test_the_three_examples_are_shipped_and_valid():
    slugs = set(JobTemplate.objects.filter(is_active=True).values_list("slug", flat=True))

    assert {"count-words", "python-script", "render-frames"} <= slugs
    for slug in ("count-words", "python-script", "render-frames"):
        version_of(slug).full_clean()


def test_a_submission_is_written_pending_with_a_derived_job_id_and_enqueued_on_commit(
        user, django_capture_on_commit_callbacks):
    version = version_of("render-frames")

    with django_capture_on_commit_callbacks() as callbacks:
        submission = services.submission_create(user=user, template_version=version.pk,
                                                parameters={"frames": "240", "seconds_per_frame": "0.5"})

    assert len(callbacks) == 1
    submission.refresh_from_db()
    assert submission.state == SubmissionState.PENDING and submission.submitted_by == user
    assert submission.job_id == f"sub-{submission.public_id.hex}" and len(submission.job_id) <= 64
    assert (submission.total_tasks, submission.tasks_added) == (240, 0)
    assert submission.parameters == {"frames": 240, "seconds_per_frame": 0.5}
    assert submission.template_version == version and submission.account.is_default


def test_files_are_recorded_with_the_submission(user):
    submission = services.submission_create(user=user, template_version=version_of("count-words"), parameters={},
                                            uploaded_files={"texts": [text_file("a.txt", 5), text_file("b.md", 7)]})

    assert submission.total_tasks == 2
    assert submission.inputs == {"texts": [{"name": "a.txt", "url": "https://blob.example/inputs/a.txt", "size": 5},
                                           {"name": "b.md", "url": "https://blob.example/inputs/b.md", "size": 7}]}


def test_the_preview_is_computed_without_writing_anything(user):
    prepared = services.submission_prepare(user=user, template_version=version_of("count-words"), parameters={},
                                           uploaded_files={"texts": [text_file(f"{n}.txt", 100_000_000)
                                                                     for n in range(12)]})

    assert prepared.preview.summary == "creates 12 tasks on pool demo-pool; inputs 1.2 GB"
    assert not Submission.objects.exists()


@pytest.mark.parametrize("parameters, field, words", [
    ({"frames": "ten"}, "frames", "whole number"),
    ({"frames": "0"}, "frames", "at least 1"),
    ({"frames": "10001"}, "frames", "at most 10000"),
    ({"frames": "5; rm -rf /"}, "frames", "whole number"),
    ({"frames": "$(reboot)"}, "frames", "whole number"),
    ({"frames": "5", "seconds_per_frame": "`id`"}, "seconds_per_frame", "give a number"),
    ({"frames": "5", "extra": "x"}, "extra", "no such parameter"),
])
def test_bad_input_is_a_clear_error_and_nothing_is_written_or_enqueued(
        user, django_capture_on_commit_callbacks, parameters, field, words):
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(SubmissionError) as caught:
        services.submission_create(user=user, template_version=version_of("render-frames"), parameters=parameters)

    assert caught.value.message == "Some values need fixing; nothing was submitted."
    assert words in caught.value.field_errors[field]
    assert callbacks == [] and not Submission.objects.exists()


@pytest.mark.parametrize("label", ["it's\nme", "nul\x00", "x" * 101])
def test_a_string_that_breaks_the_rules_is_refused(user, label):
    with pytest.raises(SubmissionError) as caught:
        services.submission_create(user=user, template_version=version_of("python-script"),
                                   parameters={"count": "1", "mode": "fast", "label": label})

    assert "label" in caught.value.field_errors and not Submission.objects.exists()


def test_a_choice_outside_the_list_is_refused(user):
    with pytest.raises(SubmissionError) as caught:
        services.submission_create(user=user, template_version=version_of("python-script"),
                                   parameters={"count": "1", "mode": "fast; id", "label": "x"})

    assert caught.value.field_errors == {"mode": "choose one of: fast, thorough."}


@pytest.mark.parametrize("files, words", [
    ([text_file("../../etc/passwd")], "plain file name"),
    ([text_file("run.exe")], "accepted kinds"),
    ([text_file("big.txt", size=101 * 1024 * 1024)], "larger than"),
    ([text_file(f"f{n}.txt") for n in range(101)], "at most 100 files"),
    ([], "upload one or more files"),
])
def test_wrong_files_are_refused(user, files, words):
    with pytest.raises(SubmissionError) as caught:
        services.submission_create(user=user, template_version=version_of("count-words"), parameters={},
                                   uploaded_files={"texts": files})

    assert words in caught.value.field_errors["texts"] and not Submission.objects.exists()


@pytest.mark.parametrize("tampered", [999_999, "1 OR 1=1", None, "", -1])
def test_a_tampered_template_version_id_is_refused(user, tampered):
    with pytest.raises(SubmissionError) as caught:
        services.submission_create(user=user, template_version=tampered, parameters={"frames": "5"})

    assert "not offered any more, or the form was changed" in caught.value.message
    assert not Submission.objects.exists()


def test_a_version_of_an_inactive_template_is_refused(user):
    version = version_of("render-frames")
    JobTemplate.objects.filter(pk=version.template_id).update(is_active=False)

    with pytest.raises(SubmissionError):
        services.submission_create(user=user, template_version=version.pk, parameters={"frames": "5"})
    assert not Submission.objects.exists()


def test_an_outdated_version_is_refused_unless_it_is_the_parents(user, engineer):
    old = version_of("render-frames")
    parent = services.submission_create(user=user, template_version=old, parameters={"frames": "5"})
    services.job_template_version_create(user=engineer, template=old.template, spec=old.spec)

    with pytest.raises(SubmissionError) as caught:
        services.submission_create(user=user, template_version=old.pk, parameters={"frames": "5"})
    assert "has changed since the form was opened" in caught.value.message

    rerun = services.submission_create(user=user, template_version=old.pk, parameters={"frames": "6"}, parent=parent)
    assert rerun.parent == parent and rerun.template_version == old and rerun.job_id != parent.job_id


def test_only_your_own_submissions_can_be_re_run(user, other_submitter):
    version = version_of("render-frames")
    parent = services.submission_create(user=user, template_version=version, parameters={"frames": "5"})

    with pytest.raises(SubmissionError, match="only re-run your own"):
        services.submission_create(user=other_submitter, template_version=version,
                                   parameters={"frames": "5"}, parent=parent)


def test_values_creating_no_tasks_or_too_many_are_refused(user, engineer):
    template = JobTemplate.objects.get(slug="render-frames")
    spec = template.current_version().spec
    spec = {**spec, "parameters": [{"name": "frames", "type": "integer"}, spec["parameters"][1]]}
    version = services.job_template_version_create(user=engineer, template=template, spec=spec)

    with pytest.raises(SubmissionError, match="create no tasks"):
        services.submission_create(user=user, template_version=version, parameters={"frames": "0"})
    with pytest.raises(SubmissionError, match="the most one submission may create is 100,000"):
        services.submission_create(user=user, template_version=version, parameters={"frames": "100001"})
    assert not Submission.objects.exists()


def test_an_anonymous_or_inactive_user_cannot_submit(user):
    user.is_active = False
    for someone in (AnonymousUser(), user, None):
        with pytest.raises(PermissionDenied):
            services.submission_create(user=someone, template_version=version_of("render-frames"),
                                       parameters={"frames": "5"})


# --- free-form command lines --------------------------------------------------------------------------------


def test_a_free_form_command_line_needs_the_permission(user):
    with pytest.raises(PermissionDenied):
        services.submission_create(user=user, template_version=version_of("render-frames"),
                                   parameters={"frames": "5"}, command_line="rm -rf / # {frame}")
    assert not Submission.objects.exists()


def test_the_templates_own_command_line_sent_back_needs_no_permission(user):
    version = version_of("render-frames")

    submission = services.submission_create(user=user, template_version=version, parameters={"frames": "5"},
                                            command_line=version.spec["command_line"])

    assert submission.command_line == ""


def test_an_engineer_may_write_a_command_line_and_its_placeholders_are_still_quoted(engineer):
    submission = services.submission_create(user=engineer, template_version=version_of("render-frames"),
                                            parameters={"frames": "2"}, command_line="echo custom {frame}")

    assert [t.command_line for t in expand(submission)] == ["/bin/sh -c 'echo custom 1'",
                                                            "/bin/sh -c 'echo custom 2'"]


@pytest.mark.parametrize("command_line", ["echo {nobody}", "echo {frame!r}", "echo '{frame}'", "   "])
def test_a_free_form_command_line_with_bad_placeholders_is_refused(engineer, command_line):
    with pytest.raises(SubmissionError) as caught:
        services.submission_create(user=engineer, template_version=version_of("render-frames"),
                                   parameters={"frames": "2"}, command_line=command_line)

    assert "command_line" in caught.value.field_errors and not Submission.objects.exists()


# --- CSV fan-out --------------------------------------------------------------------------------------------


@pytest.fixture
def csv_version(engineer):
    template = JobTemplate.objects.create(name="Per sample", slug="per-sample")
    return services.job_template_version_create(user=engineer, template=template, spec={
        "pool": {"pool_id": "demo-pool"},
        "command_line": "echo {row.sample} {row.depth}",
        "parameters": [{"name": "table", "type": "file", "extensions": [".csv"], "required": True}],
        "fan_out": {"kind": "csv", "parameter": "table"},
    })


def test_a_csv_fan_out_records_its_rows_with_the_submission(user, csv_version):
    table = InputFile(name="samples.csv", url="https://blob.example/samples.csv", size=30,
                      content=b"sample,depth\nS1,10\nS2,20\n")

    submission = services.submission_create(user=user, template_version=csv_version, parameters={},
                                            uploaded_files={"table": [table]})

    assert submission.total_tasks == 2
    assert submission.csv_rows == [{"sample": "S1", "depth": "10"}, {"sample": "S2", "depth": "20"}]


def test_a_csv_without_a_column_the_command_uses_is_refused(user, csv_version):
    table = InputFile(name="samples.csv", url="https://blob.example/samples.csv", size=30, content=b"sample\nS1\n")

    with pytest.raises(SubmissionError) as caught:
        services.submission_create(user=user, template_version=csv_version, parameters={},
                                   uploaded_files={"table": [table]})

    assert caught.value.field_errors == {"table": "the CSV file has no column named depth."}


# --- template versions --------------------------------------------------------------------------------------


def test_template_versions_need_the_permission_and_are_numbered(user, engineer):
    template = JobTemplate.objects.get(slug="render-frames")
    spec = template.current_version().spec

    with pytest.raises(PermissionDenied):
        services.job_template_version_create(user=user, template=template, spec=spec)
    second = services.job_template_version_create(user=engineer, template=template, spec=spec)

    assert second.number == 2 and second.created_by == engineer and template.current_version() == second


def test_a_bad_spec_is_refused_with_its_problems(engineer):
    template = JobTemplate.objects.get(slug="render-frames")

    with pytest.raises(SubmissionError, match="names no parameter"):
        services.job_template_version_create(user=engineer, template=template,
                                             spec={**template.current_version().spec, "command_line": "echo {x}"})
    assert template.versions.count() == 1


def test_a_version_used_by_a_submission_cannot_change(user):
    version = version_of("render-frames")
    services.submission_create(user=user, template_version=version, parameters={"frames": "5"})

    version.spec = {**version.spec, "command_line": "echo changed {frame}"}
    with pytest.raises(ValidationError, match="cannot change"):
        version.full_clean()

    unused = JobTemplateVersion.objects.get(pk=version_of("python-script").pk)
    unused.spec = {**unused.spec, "priority": 5}
    unused.full_clean()
