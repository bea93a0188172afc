"""Retrying what failed, once the job has ended, in a real browser: a submission of four frames whose odd frames
fail on their first run ends with two failures; "Retry failed tasks" on the submission page counts first, then
submits those two only, as a new job with the same task ids, which completes; each page links to the other."""

import pytest
from playwright.sync_api import expect

from portal.models import JobTemplate, JobTemplateVersion, Submission
from tests.e2e import test_submit as submit_flow
from tests.e2e.test_submit import log_in, watch

# The submit test's fixtures, as this module's own: the live portal on localbatch and Azurite, the shipped examples.
browser_storage = submit_flow.browser_storage
example_templates = submit_flow.example_templates
portal_backends = submit_flow.portal_backends

pytestmark = pytest.mark.django_db(transaction=True)


def flaky_frames(marks) -> None:
    """render-frames, changed so that an odd frame fails the first time it runs (a marker file in `marks` says it
    has run) and Batch does not retry it by itself."""
    template = JobTemplate.objects.get(slug="render-frames")
    version = template.current_version()
    command = (f"if [ $(( {{frame}} % 2 )) -eq 1 ] && [ ! -e {marks}/f{{frame}} ]; then touch {marks}/f{{frame}}; "
               "echo frame {frame} failed >&2; exit 3; fi; echo frame {frame} ok")
    JobTemplateVersion.objects.create(template=template, number=version.number + 1,
                                      spec={**version.spec, "command_line": command,
                                            "constraints": {"max_task_retry_count": 0}})


def test_retry_failed_runs_only_the_failed_tasks_of_an_ended_job_again(page, live_server, portal_backends,
                                                                       submitter, tmp_path, batch_client):
    account = portal_backends
    flaky_frames(tmp_path)
    log_in(page, live_server, submitter.username)
    page.goto(f"{live_server.url}/submit/render-frames/")
    page.get_by_label("Frames").fill("4")
    page.get_by_label("Seconds per frame").fill("0")
    page.get_by_role("button", name="Preview").click()
    page.get_by_role("button", name="Submit").click()
    page.locator("#submission-state").wait_for()
    watch(page, account, "#job-progress", "Completed 4/4")
    assert "2 failed" in page.locator("#job-progress").inner_text()
    parent_url = page.url

    # The header's actions are not polled: the page offers the retry once reloaded after the job ended.
    page.reload()
    page.locator("#submission-retry-failed").click()
    expect(page.locator("#retry-count")).to_have_text("This runs 2 tasks again; 2 succeeded and are not re-run.")
    page.locator("#retry-confirm").click()

    page.locator("#submission-state").wait_for()
    expect(page.locator("#tasks-added")).to_contain_text("2 / 2 tasks added")
    expect(page.locator("#retry-of")).to_contain_text("its 2 failed tasks only")
    watch(page, account, "#job-progress", "Completed 2/2")
    assert "2 succeeded" in page.locator("#job-progress").inner_text()
    assert "failed" not in page.locator("#job-progress").inner_text()
    retry = Submission.objects.get(retry_of__isnull=False)
    assert sorted(task.id for task in batch_client.list_tasks(retry.job_id)) == ["t00001", "t00003"]

    page.locator("#retry-of a").click()
    assert page.url == parent_url
    expect(page.locator("#retries")).to_contain_text(retry.job_id)
