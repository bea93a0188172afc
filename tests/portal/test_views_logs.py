"""The log viewer's views against real task files on localbatch: the viewer, windows, the live tail, the
download; escaping, refused names, access, and what a person sees when there is no file to show."""

import re

import pytest
from django.core.cache import cache
from django.urls import reverse

from batchsync import logs
from portal.models import TaskState
from portal.views import logs as log_views
from tests.factories import JobFactory, TaskFactory, UserFactory
from tests.localbatch.helpers import wait_for, wait_task_completed
from tests.logfiles import CountingGateway, add_task, file_size
# Fixtures, imported so pytest finds them here.
from tests.logfiles import account, batch_job, gateway  # noqa: F401

pytestmark = pytest.mark.django_db

VIEWS = ["task_output", "task_output_window", "task_output_tail", "task_output_download"]
# printf's format: \\047 is a single quote, \\033 the ESC that starts a colour code.
PAYLOAD = ("<script>window.pwned = 1</script> & \"quoted\" \\047single\\047 <img src=x onerror=alert(1)>\\n"
           "\\033[31mred error\\033[0m \\033[1;32mbold green\\033[0m\\n")


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def counted(monkeypatch, gateway):
    """Every gateway the views open is this one, counting its reads (which still go to localbatch)."""
    counting = CountingGateway(gateway)
    opened = lambda account: counting
    monkeypatch.setattr(log_views, "gateway_for", opened)
    monkeypatch.setattr(logs, "gateway_for", opened)
    # The views close what they open; this one belongs to the fixture.
    monkeypatch.setattr(counting, "close", lambda: None)
    return counting


def task_row(account, task_id, state=TaskState.COMPLETED):
    job = JobFactory(account=account, job_id="logs-job", pool_id="logs-pool")
    return TaskFactory(job=job, task_id=task_id, state=state)


def body(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


@pytest.mark.parametrize("name", VIEWS)
def test_anonymous_is_sent_to_login(client, name):
    task = TaskFactory()
    response = client.get(reverse(name, args=[task.pk]) + "?after=0")
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


@pytest.mark.parametrize("name", VIEWS)
def test_a_missing_task_is_404_and_an_inactive_user_is_sent_to_login(client, signed_in, name):
    assert signed_in.get(reverse(name, args=[31337]) + "?after=0").status_code == 404
    task = TaskFactory()
    client.force_login(UserFactory(is_active=False))
    assert client.get(reverse(name, args=[task.pk]) + "?after=0").status_code == 302


def test_output_that_holds_markup_is_escaped_and_its_colours_become_spans(
        signed_in, account, batch_client, batch_job, counted):
    add_task(batch_client, "payload", f"printf '{PAYLOAD}'; echo oops >&2")
    wait_task_completed(batch_client, "logs-job", "payload")
    task = task_row(account, "payload")

    page = body(signed_in.get(reverse("task_output", args=[task.pk])))

    assert "<script>window.pwned" not in page and "<img src=x" not in page
    assert "&lt;script&gt;window.pwned = 1&lt;/script&gt; &amp; &quot;quoted&quot; &#x27;single&#x27;" in page
    assert '<span class="ansi-red">red error</span>' in page
    assert '<span class="ansi-green ansi-bold">bold green</span>' in page
    # The picker lists the task's files, stdout first; the first lines are numbered and linkable.
    options = re.findall(r'<option value="([^"]+)"', page)
    assert options[:2] == ["stdout.txt", "stderr.txt"]
    assert 'id="L1"' in page and 'href="#L2"' in page
    # A finished task is not polled.
    assert "every 2s" not in page and "The task has ended" in page

    stderr = body(signed_in.get(reverse("task_output", args=[task.pk]), {"path": "stderr.txt"}))
    assert "oops" in stderr and "red error" not in stderr


@pytest.mark.parametrize("name", ["../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd", "/etc/passwd",
                                  "wd\\..\\..\\x", "%252e%252e/x", "stdout.txt\x00", "wd/./x"])
def test_path_tricks_are_404_and_nothing_is_sent_to_batch(signed_in, account, counted, name):
    task = task_row(account, "any")
    for view in VIEWS:
        # The name goes in the query string exactly as a browser would send it.
        url = reverse(view, args=[task.pk]) + "?after=0&path=" + name.replace("\x00", "%00")
        assert signed_in.get(url).status_code == 404, (view, name)
    assert counted.calls == 0


def test_a_task_that_has_not_started_says_so_and_checks_again(signed_in, account, batch_client, counted):
    from tests.localbatch.helpers import make_job, make_pool
    make_pool(batch_client, "empty-pool", nodes=0)
    make_job(batch_client, "logs-job", "empty-pool")
    add_task(batch_client, "waiting", "echo never")
    task = task_row(account, "waiting", state=TaskState.ACTIVE)

    page = body(signed_in.get(reverse("task_output", args=[task.pk])))

    assert "This task has not started on a node yet" in page
    assert "every 5s" in page        # it will start; the viewer asks again


def test_a_task_deleted_in_batch_says_the_node_no_longer_has_the_file(
        signed_in, account, batch_client, batch_job, counted):
    add_task(batch_client, "deleted", "echo bye")
    wait_task_completed(batch_client, "logs-job", "deleted")
    batch_client.delete_task("logs-job", "deleted")
    task = task_row(account, "deleted")

    page = body(signed_in.get(reverse("task_output", args=[task.pk])))
    assert "The node no longer has this file" in page and "every 5s" not in page
    assert signed_in.get(reverse("task_output_download", args=[task.pk])).status_code == 404


def test_a_running_task_is_followed_and_each_poll_brings_only_the_new_lines(
        signed_in, account, gateway, batch_client, batch_job, counted, tmp_path):
    go = tmp_path / "go"
    add_task(batch_client, "follow", f"echo one; echo two; while [ ! -e {go} ]; do sleep 0.05; done; echo three")
    wait_for(lambda: file_size(gateway, "follow") == 8, message="two lines")
    task = task_row(account, "follow", state=TaskState.RUNNING)

    page = body(signed_in.get(reverse("task_output", args=[task.pk])))
    tail_url = reverse("task_output_tail", args=[task.pk])
    assert f'hx-get="{tail_url}?path=stdout.txt&after=8&line=3" hx-trigger="every 2s"' in page
    assert 'id="L2"' in page and ">two<" in page

    nothing_new = body(signed_in.get(tail_url, {"path": "stdout.txt", "after": 8, "line": 3}))
    assert 'class="log-line"' not in nothing_new and "every 2s" in nothing_new

    go.touch()
    wait_task_completed(batch_client, "logs-job", "follow")
    task.state = TaskState.COMPLETED     # as the sync records it
    task.save()
    last = body(signed_in.get(tail_url, {"path": "stdout.txt", "after": 8, "line": 3}))
    assert 'id="L3"' in last and ">three<" in last and ">two<" not in last
    # The poller comes back without a trigger: polling stops.
    assert 'hx-swap-oob="true"' in last and "every 2s" not in last and "The task has ended" in last


def test_windows_move_through_a_big_file_with_known_line_numbers(
        signed_in, account, batch_client, batch_job, counted):
    add_task(batch_client, "lines", "seq 1 100000")
    wait_task_completed(batch_client, "logs-job", "lines")
    task = task_row(account, "lines")
    window_url = reverse("task_output_window", args=[task.pk])

    first = body(signed_in.get(window_url, {"path": "stdout.txt", "start": 0}))
    assert 'id="L1"' in first and re.search(r'id="L(\d+)"><a class="ln" href="#L\1"[^>]*>\1</a><span class="lt">\1<', first)
    next_start, next_line = re.search(r'start=(\d+)&line=(\d+)', first).groups()

    later = body(signed_in.get(window_url, {"path": "stdout.txt", "start": next_start, "line": next_line}))
    # Line n holds the number n, so each shown number must match its text.
    for number, text in re.findall(r'id="L(\d+)"><a[^>]*>\d+</a><span class="lt">([^<]*)<', later):
        assert number == text
    end = body(signed_in.get(window_url, {"path": "stdout.txt"}))
    assert ">100000<" in end and "unnumbered" in end     # the tail of a big file has no known line numbers
    end_start = re.search(r'end=(\d+)', end).group(1)
    earlier = body(signed_in.get(window_url, {"path": "stdout.txt", "end": end_start}))
    assert 'class="log-line"' in earlier
    assert max(counted.reads) <= logs.WINDOW_BYTES


def test_download_streams_the_whole_file_as_an_attachment(signed_in, account, batch_client, batch_job, counted):
    add_task(batch_client, "dl", "head -c 6000000 /dev/urandom; printf '<script>alert(1)</script>'")
    wait_task_completed(batch_client, "logs-job", "dl")
    task = task_row(account, "dl")
    expected = b"".join(batch_client.download_task_file("logs-job", "dl", "stdout.txt"))

    response = signed_in.get(reverse("task_output_download", args=[task.pk]), {"path": "stdout.txt"})

    assert response.status_code == 200 and response.streaming
    assert response["Content-Disposition"] == 'attachment; filename="logs-job-dl-stdout.txt"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Type"] == "application/octet-stream"
    assert b"".join(response.streaming_content) == expected
    assert int(response["Content-Length"]) == len(expected) == 6000025
    assert max(counted.reads) <= logs.DOWNLOAD_CHUNK_BYTES and len(counted.reads) == 2


def test_when_a_retry_starts_the_file_again_the_viewer_is_replaced_not_appended_to(
        signed_in, account, gateway, batch_client, counted, tmp_path):
    from azure.batch import models

    from tests.localbatch.helpers import make_job, make_pool
    make_pool(batch_client, "retry-pool", nodes=1)
    make_job(batch_client, "logs-job", "retry-pool")
    marker, go = tmp_path / "marker", tmp_path / "go"
    script = (f"if [ -e {marker} ]; then echo second attempt; sleep 30; "
              f"else touch {marker}; seq 1 100; while [ ! -e {go} ]; do sleep 0.05; done; exit 1; fi")
    batch_client.create_task("logs-job", models.BatchTaskCreateOptions(
        id="retried", command_line=f"/bin/sh -c '{script}'",
        constraints=models.BatchTaskConstraints(max_task_retry_count=1)))
    wait_for(lambda: file_size(gateway, "retried") == 292, message="the first attempt's 100 lines")
    task = task_row(account, "retried", state=TaskState.RUNNING)
    tail_url = reverse("task_output_tail", args=[task.pk])
    assert "every 2s" in body(signed_in.get(reverse("task_output", args=[task.pk])))

    go.touch()
    wait_for(lambda: file_size(gateway, "retried") == len("second attempt\n"), message="the retry's output")
    cache.clear()        # past the shared tail's second
    response = signed_in.get(tail_url, {"path": "stdout.txt", "after": 292, "line": 101})

    assert response["HX-Retarget"] == "#log-viewer" and response["HX-Reswap"] == "outerHTML"
    page = body(response)
    assert 'id="log-viewer"' in page and ">second attempt<" in page and 'id="L1"' in page
    batch_client.terminate_task("logs-job", "retried")
