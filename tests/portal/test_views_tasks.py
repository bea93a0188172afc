"""A task's page: what it ran, where and when, how it ended, its timeline, and where its output loads."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from portal.jobs import selectors
from portal.models import JobState, TaskState
from tests.factories import JobFactory, NodeFactory, PoolFactory, TaskFactory, UserFactory
from tests.personas import client_for
from tests.portal.pages import text

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "task"}
POLL = 'hx-trigger="every 5s'


def test_anonymous_is_sent_to_login(client):
    task = TaskFactory()

    response = client.get(reverse("task_detail", args=[task.pk]))

    assert response.status_code == 302
    assert response.url == f"{reverse('login')}?next=/tasks/{task.pk}/"


def test_an_inactive_user_cannot_see_a_task(client):
    task = TaskFactory()
    client.force_login(UserFactory(is_active=False))

    assert client.get(reverse("task_detail", args=[task.pk])).status_code == 302


def test_task_detail_404s_for_a_missing_task(signed_in):
    assert signed_in.get(reverse("task_detail", args=[31337])).status_code == 404


def test_task_detail_shows_command_environment_node_timings_and_retries(signed_in):
    pool = PoolFactory(pool_id="render")
    node = NodeFactory(pool=pool, node_id="tvm-0042")
    job = JobFactory(job_id="frames", pool_id="render")
    start = timezone.now() - timedelta(minutes=30)
    task = TaskFactory(job=job, task_id="frame-7", command_line="blender -b scene.blend -f 7",
                       environment=[{"name": "FRAME", "value": "7"}, {"name": "QUALITY", "value": "high"}],
                       node_id="tvm-0042", pool_id="render", creation_time=start - timedelta(minutes=2),
                       start_time=start, end_time=start + timedelta(seconds=95), duration_seconds=95.0,
                       retry_count=2, max_task_retry_count=3, exit_code=0)

    page = text(signed_in.get(reverse("task_detail", args=[task.pk])))

    assert "blender -b scene.blend -f 7" in page
    assert "FRAME" in page and "QUALITY" in page and "high" in page
    assert f'href="/pools/{pool.pk}/#node-{node.node_id}"' in page
    assert "1 min 35 s" in page  # ran for
    assert "2 min 0 s" in page  # waited for
    assert "2 of 3" in page and "attempt 3" in page
    assert "succeeded" in page
    assert f'href="/jobs/{job.pk}/"' in page


def test_task_detail_explains_a_failure(signed_in):
    task = TaskFactory(failed=True, exit_code=137, failure_category="usererror", failure_code="FailureExitCode",
                       failure_message="The task process exited with an unexpected exit code")

    page = text(signed_in.get(reverse("task_detail", args=[task.pk])))

    assert "Why it failed" in page
    assert "exited with code <strong class=\"mono\">137</strong>" in page
    assert "FailureExitCode" in page and "usererror" in page
    assert "The task process exited with an unexpected exit code" in page


def test_the_failure_card_shows_the_error_line_the_failures_page_groups_by(signed_in):
    task = TaskFactory(failed=True, exit_code=1, failure_code="FailureExitCode", error_line="ERROR: <b>disk</b> full")

    page = text(signed_in.get(reverse("task_detail", args=[task.pk])))
    failures = text(signed_in.get(reverse("failure_triage")))

    shown = '<code class="sig-line">ERROR: &lt;b&gt;disk&lt;/b&gt; full</code>'
    card = page[page.index('class="card failure-card"'):page.index("</section>", page.index("failure-card"))]
    assert shown in card and shown in failures


def test_task_timeline_follows_the_task_through_its_states():
    created = timezone.now() - timedelta(minutes=10)
    waiting = TaskFactory.build(state=TaskState.ACTIVE, creation_time=created, job=JobFactory.build())
    running = TaskFactory.build(state=TaskState.RUNNING, creation_time=created,
                                start_time=created + timedelta(seconds=30), job=JobFactory.build())
    failed = TaskFactory.build(failed=True, creation_time=created, start_time=created + timedelta(seconds=30),
                               end_time=created + timedelta(seconds=90), job=JobFactory.build(), retry_count=1)
    gone = TaskFactory.build(creation_time=created, gone_at=timezone.now(), job=JobFactory.build())

    assert [s.label for s in selectors.task_timeline(waiting)] == ["Created, waiting for a node"]
    assert [s.label for s in selectors.task_timeline(running)] == ["Created, waiting for a node", "Started running"]
    steps = selectors.task_timeline(failed)
    assert [s.label for s in steps] == ["Created, waiting for a node", "Started running", "Failed"]
    assert [s.after_seconds for s in steps] == [30.0, 60.0, None]
    assert steps[1].note == "attempt 2" and steps[2].note == "exit code 1" and steps[2].current
    assert selectors.task_timeline(gone)[-1].label == "Deleted in Batch"


def test_a_gap_under_a_second_between_timeline_steps_is_not_shown(signed_in):
    created = timezone.now() - timedelta(minutes=10)
    task = TaskFactory(creation_time=created, start_time=created + timedelta(milliseconds=1),
                       end_time=created + timedelta(seconds=42), state=TaskState.COMPLETED)

    steps = selectors.task_timeline(task)
    page = text(signed_in.get(reverse("task_detail", args=[task.pk])))

    assert [s.after_seconds for s in steps] == [None, pytest.approx(41.999), None]
    assert "ms until the next step" not in page and "42.0 s until the next step" in page


def test_task_detail_loads_the_output_viewer_after_the_page(signed_in):
    task = TaskFactory()

    response = signed_in.get(reverse("task_detail", args=[task.pk]))

    assert "logs/_output.html" in [t.name for t in response.templates]
    # The page itself never waits on Batch: the viewer is fetched once it has loaded.
    assert 'id="output"' in text(response)
    assert f'hx-get="{reverse("task_output", args=[task.pk])}" hx-trigger="load"' in text(response)


def test_task_detail_polls_while_the_task_can_change(signed_in):
    running = TaskFactory(state=TaskState.RUNNING)
    waiting = TaskFactory(state=TaskState.ACTIVE)
    done = TaskFactory()
    in_finished_job = TaskFactory(state=TaskState.ACTIVE, job=JobFactory(state=JobState.COMPLETED))
    gone = TaskFactory(state=TaskState.RUNNING, gone_at=timezone.now())

    for task in (running, waiting):
        assert POLL in text(signed_in.get(reverse("task_detail", args=[task.pk])))
    for task in (done, in_finished_job, gone):
        assert POLL not in text(signed_in.get(reverse("task_detail", args=[task.pk])))


def test_task_detail_htmx_gets_only_the_live_part(signed_in):
    task = TaskFactory(state=TaskState.RUNNING, command_line="sleep 100")

    page = text(signed_in.get(reverse("task_detail", args=[task.pk]), **HTMX))

    assert page.lstrip().startswith('<div id="task"')
    assert POLL in page and "Timeline" in page
    # The command line and the output do not change, so the poll does not carry them.
    assert "sleep 100" not in page and 'id="output"' not in page and "<html" not in page


def test_a_task_deleted_in_batch_is_shown_as_history(signed_in):
    task = TaskFactory(gone_at=timezone.now() - timedelta(hours=1))

    page = text(signed_in.get(reverse("task_detail", args=[task.pk])))

    assert "deleted in Batch 1 h ago" in page and "Deleted in Batch" in page


def test_task_detail_escapes_everything_from_batch(signed_in):
    evil = "<script>alert(1)</script>"
    task = TaskFactory(task_id="<script>id</script>", display_name=evil, command_line=f"echo '{evil}'",
                       environment=[{"name": "<script>n</script>", "value": evil}], failed=True,
                       failure_message=evil, failure_code="<script>c</script>", node_id="<script>node</script>")

    page = text(signed_in.get(reverse("task_detail", args=[task.pk])))

    assert "<script>" not in page
    assert "echo &#x27;&lt;script&gt;alert(1)&lt;/script&gt;&#x27;" in page
    assert "&lt;script&gt;n&lt;/script&gt;" in page


def test_task_detail_makes_a_fixed_number_of_queries(signed_in, django_assert_max_num_queries):
    pool = PoolFactory(pool_id="render")
    NodeFactory(pool=pool, node_id="tvm-0001")
    task = TaskFactory(job=JobFactory(pool_id="render"), pool_id="render", node_id="tvm-0001")
    TaskFactory.create_batch(30, job=task.job)

    # session, user, the role check (user and group permissions), task with its job, its attempts, node with its
    # pool, History, the accounts (whether to name the task's)
    with django_assert_max_num_queries(9):
        response = signed_in.get(reverse("task_detail", args=[task.pk]))
    # An error page is cheap too: the budget counts only if the page itself was served.
    assert response.status_code == 200


def test_a_poll_brings_the_header_actions_so_terminate_goes_when_the_task_ends(portal_admin):
    admin = client_for(portal_admin)
    running = TaskFactory(state=TaskState.RUNNING)
    done = TaskFactory(job=running.job)

    while_running = text(admin.get(reverse("task_detail", args=[running.pk]), **HTMX))
    after_the_end = text(admin.get(reverse("task_detail", args=[done.pk]), **HTMX))

    assert 'id="task-actions" hx-swap-oob="true"' in while_running and 'id="task-terminate"' in while_running
    assert 'id="task-actions" hx-swap-oob="true"' in after_the_end
    assert 'id="task-terminate"' not in after_the_end and 'id="task-delete"' in after_the_end
    # The whole page has the actions once, in its header, not out of band.
    page = text(admin.get(reverse("task_detail", args=[done.pk])))
    assert page.count('id="task-actions"') == 1 and "hx-swap-oob" not in page
