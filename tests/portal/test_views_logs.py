"""The log viewer's views against real task files on localbatch and saved copies in a real Azurite: the viewer,
windows, the live tail, the download; which copy is shown (node or storage) and what happens when Batch deletes
the task, job or pool; search; links to saved copies; a job's logs as one zip; escaping, refused names, access,
and what a person sees when there is no file to show."""

import io
import re
import urllib.error
import urllib.request
import zipfile
from html import unescape

import pytest
from azure.batch import models
from django.core.cache import cache
from django.urls import reverse

from batchsync import archive
from batchsync.sync import sync_account
from portal import downloads
from portal.logs import search
from portal.logs import views as log_views
from portal.logs import windows as log_windows
from portal.logs.files import DOWNLOAD_CHUNK_BYTES
from portal.logs.windows import WINDOW_BYTES
from portal.models import AuditEvent, Job, Task, TaskState
from tests.factories import JobFactory, TaskFactory, UserFactory
from tests.localbatch.helpers import make_job, make_pool, wait_for, wait_task_completed
from tests.logfiles import CountingGateway, add_task, file_size, save_copy

# Fixtures, imported so pytest finds them here.

pytestmark = pytest.mark.django_db

VIEWS = ["task_output", "task_output_window", "task_output_tail", "task_output_download", "task_output_search"]
# printf's format: \\047 is a single quote, \\033 the ESC that starts a colour code.
PAYLOAD = ("<script>window.pwned = 1</script> & \"quoted\" \\047single\\047 <img src=x onerror=alert(1)>\\n"
           "\\033[31mred error\\033[0m \\033[1;32mbold green\\033[0m\\n")


@pytest.fixture(autouse=True)
def empty_cache(local_cache):
    return local_cache


@pytest.fixture(autouse=True)
def saved_logs(store):
    """Every view test runs with the real Azurite store the views read saved copies from."""
    return store


@pytest.fixture
def counted(monkeypatch, gateway):
    """Every gateway the views open is this one, counting its reads (which still go to localbatch)."""
    counting = CountingGateway(gateway)

    def opened(account):
        return counting

    monkeypatch.setattr(log_views, "gateway_for", opened)
    monkeypatch.setattr(log_windows, "gateway_for", opened)
    # The views close what they open; this one belongs to the fixture.
    monkeypatch.setattr(counting, "close", lambda: None)
    return counting


def task_row(account, task_id, state=TaskState.COMPLETED):
    job = Job.objects.filter(account=account, job_id="logs-job").first() or JobFactory(
        account=account, job_id="logs-job", pool_id="logs-pool")
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
    # A NUL in a query string is refused before any view (portal/request_guard.py); in a form, by the view.
    refused = 400 if "\x00" in name else 404
    for view in VIEWS:
        # The name goes in the query string exactly as a browser would send it.
        url = reverse(view, args=[task.pk]) + "?after=0&q=x&path=" + name.replace("\x00", "%00")
        assert signed_in.get(url).status_code == refused, (view, name)
    link = signed_in.post(reverse("task_output_link", args=[task.pk]), {"path": name})
    assert link.status_code == 404, name
    assert counted.calls == 0


def test_a_task_that_has_not_started_says_so_and_checks_again(signed_in, account, batch_client, counted):
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
    assert f'hx-get="{tail_url}?path=stdout.txt&after=8&from=0&line=3" hx-trigger="every 2s"' in page
    assert ">bytes 0–8 of 8<" in page and "Live from node" in page
    assert 'id="L2"' in page and ">two<" in page

    nothing_new = body(signed_in.get(tail_url, {"path": "stdout.txt", "after": 8, "line": 3}))
    assert 'class="log-line"' not in nothing_new and "every 2s" in nothing_new

    go.touch()
    wait_task_completed(batch_client, "logs-job", "follow")
    task.state = TaskState.COMPLETED     # as the sync records it
    task.save()
    last = body(signed_in.get(tail_url, {"path": "stdout.txt", "after": 8, "from": 0, "line": 3}))
    assert 'id="L3"' in last and ">three<" in last and ">two<" not in last
    # The byte counter and the copy the page reads from follow too (out of band): the task no longer writes.
    assert '<span id="log-bytes" hx-swap-oob="true">bytes 0–14 of 14</span>' in last
    assert 'id="log-source" hx-swap-oob="true">From node' in last and "Live from node" not in last
    # The poller comes back without a trigger: polling stops.
    assert 'hx-swap-oob="true"' in last and "every 2s" not in last and "The task has ended" in last


def test_windows_move_through_a_big_file_with_known_line_numbers(
        signed_in, account, batch_client, batch_job, counted):
    add_task(batch_client, "lines", "seq 1 100000")
    wait_task_completed(batch_client, "logs-job", "lines")
    task = task_row(account, "lines")
    window_url = reverse("task_output_window", args=[task.pk])

    first = body(signed_in.get(window_url, {"path": "stdout.txt", "start": 0}))
    assert 'id="L1"' in first
    assert re.search(r'id="L(\d+)"><a class="ln" href="#L\1"[^>]*>\1</a><span class="lt">\1<', first)
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
    assert max(counted.reads) <= WINDOW_BYTES


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
    assert max(counted.reads) <= DOWNLOAD_CHUNK_BYTES and len(counted.reads) == 2


def test_when_a_retry_starts_the_file_again_the_viewer_is_replaced_not_appended_to(
        signed_in, account, gateway, batch_client, counted, tmp_path):
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


def test_a_viewer_far_behind_a_fast_task_skips_to_the_newest_lines_and_says_so(
        signed_in, account, gateway, batch_client, batch_job, counted, tmp_path):
    go = tmp_path / "go"
    add_task(batch_client, "fast", f"echo first; while [ ! -e {go} ]; do sleep 0.05; done; seq 1 100000; sleep 30")
    wait_for(lambda: file_size(gateway, "fast") == 6, message="the first line")
    task = task_row(account, "fast", state=TaskState.RUNNING)
    go.touch()
    wait_for(lambda: file_size(gateway, "fast") == 6 + 588895, message="100,000 lines more")

    tail = body(signed_in.get(reverse("task_output_tail", args=[task.pk]),
                              {"path": "stdout.txt", "after": 6, "line": 2}))

    assert "not shown: the task writes faster than this page follows" in tail and ">100000<" in tail
    assert 'id="L' not in tail           # what follows a gap has no known line numbers
    assert sum(counted.reads) <= WINDOW_BYTES     # one window, not everything in between
    batch_client.terminate_task("logs-job", "fast")


# --- saved copies -----------------------------------------------------------------------------------------------

def test_a_finished_task_with_a_saved_copy_is_read_from_storage_and_the_page_says_so(
        signed_in, account, batch_client, batch_job, counted, store):
    add_task(batch_client, "kept", "echo from the node")
    wait_task_completed(batch_client, "logs-job", "kept")
    task = task_row(account, "kept")
    save_copy(store, "logs-job", "kept", "stdout.txt", b"saved line 1\nsaved line 2\n")

    page = body(signed_in.get(reverse("task_output", args=[task.pk])))

    assert ">saved line 2<" in page and "from the node" not in page
    assert "Saved copy in storage, saved" in page and "Get a download link" in page
    assert (counted.size_calls, counted.reads) == (0, [])      # no byte of the file came from the node
    download = signed_in.get(reverse("task_output_download", args=[task.pk]))
    assert b"".join(download.streaming_content) == b"saved line 1\nsaved line 2\n"
    assert (counted.size_calls, counted.reads) == (0, [])
    # A file that is not saved (not stdout/stderr) still comes from the node, which says so.
    stderr = body(signed_in.get(reverse("task_output", args=[task.pk]), {"path": "stderr.txt"}))
    assert "From node" in stderr


def test_a_running_task_is_read_live_from_its_node(signed_in, account, gateway, batch_client, batch_job, counted,
                                                   store, tmp_path):
    go = tmp_path / "go"
    add_task(batch_client, "live", f"echo running; while [ ! -e {go} ]; do sleep 0.05; done")
    wait_for(lambda: file_size(gateway, "live") == 8, message="a line")
    task = task_row(account, "live", state=TaskState.RUNNING)
    task.node_id = batch_client.get_task("logs-job", "live").node_info.node_id
    task.save()
    save_copy(store, "logs-job", "live", "stdout.txt", b"an older attempt's copy\n")

    page = body(signed_in.get(reverse("task_output", args=[task.pk])))

    assert ">running<" in page and "older attempt" not in page
    assert f'Live from node <span class="mono">{task.node_id}</span>' in page
    go.touch()


def test_a_log_stays_readable_after_its_job_and_its_pool_are_deleted_in_batch(
        signed_in, account, gateway, batch_client, batch_job, store):
    add_task(batch_client, "survivor", "seq 1 5000; echo 'ERROR: bad frame 7' >&2; exit 2")
    wait_task_completed(batch_client, "logs-job", "survivor")
    sync_account(account)
    task = Task.objects.get(job__account=account, task_id="survivor")
    assert archive.archive_finished_tasks(wait=60).saved == 2

    batch_client.begin_delete_job("logs-job").result()
    batch_client.begin_delete_pool("logs-pool").result()
    sync_account(account, full=True)
    task.refresh_from_db()
    assert task.gone_at is not None and task.job.gone_at is not None      # the rows stay, marked gone
    assert task.error_line == "ERROR: bad frame 7"

    page = body(signed_in.get(reverse("task_output", args=[task.pk])))
    assert "Saved copy in storage" in page and ">5000<" in page
    options = re.findall(r'<option value="([^"]+)"', page)
    assert options == ["stdout.txt", "stderr.txt"]
    first = body(signed_in.get(reverse("task_output_window", args=[task.pk]), {"path": "stdout.txt", "start": 0}))
    assert 'id="L1"' in first and ">1<" in first
    found = body(signed_in.get(reverse("task_output_search", args=[task.pk]), {"path": "stdout.txt", "q": "4999"}))
    assert "1 match</strong>" in found and "<mark>4999</mark>" in found
    download = signed_in.get(reverse("task_output_download", args=[task.pk]), {"path": "stderr.txt"})
    assert b"".join(download.streaming_content) == b"ERROR: bad frame 7\n"


def test_when_the_node_copy_went_before_it_was_saved_the_page_says_so_and_never_fails(
        signed_in, account, batch_client, batch_job, store):
    add_task(batch_client, "lost", "echo bye")
    wait_task_completed(batch_client, "logs-job", "lost")
    batch_client.delete_task("logs-job", "lost")
    task = task_row(account, "lost")
    assert archive.archive_finished_tasks(wait=60).gone == 2      # marked: nothing to save, not tried again
    task.refresh_from_db()
    assert task.logs_saved_at is not None

    for view in ("task_output", "task_output_window", "task_output_search"):
        page = body(signed_in.get(reverse(view, args=[task.pk]), {"q": "bye"}))
        assert "cleaned up before it could be saved" in page, view
    assert signed_in.get(reverse("task_output_download", args=[task.pk])).status_code == 404
    assert signed_in.post(reverse("task_output_link", args=[task.pk]), {"path": "stdout.txt"}).status_code == 404


def test_a_running_task_whose_node_copy_vanished_shows_the_saved_copy_instead(
        signed_in, account, batch_client, batch_job, store):
    add_task(batch_client, "vanished", "echo hello")
    wait_task_completed(batch_client, "logs-job", "vanished")
    batch_client.delete_task("logs-job", "vanished")
    # The mirror has not caught up yet: it still thinks the task runs.
    task = task_row(account, "vanished", state=TaskState.RUNNING)
    save_copy(store, "logs-job", "vanished", "stdout.txt", b"hello\n")

    page = body(signed_in.get(reverse("task_output", args=[task.pk])))
    assert "Saved copy in storage" in page and ">hello<" in page and "every 2s" not in page

    # A tail poll that finds the node's copy gone swaps the whole viewer for the saved copy.
    response = signed_in.get(reverse("task_output_tail", args=[task.pk]), {"path": "stdout.txt", "after": 0})
    assert response["HX-Retarget"] == "#log-viewer" and "Saved copy in storage" in body(response)


# --- search -----------------------------------------------------------------------------------------------------

def test_search_counts_matches_and_moves_the_window_to_each_with_the_match_marked(
        signed_in, account, batch_client, batch_job, counted):
    add_task(batch_client, "numbers", "seq 1 100000")
    wait_task_completed(batch_client, "logs-job", "numbers")
    task = task_row(account, "numbers")
    url = reverse("task_output_search", args=[task.pk])
    expected = [n for n in range(1, 100001) if "9999" in str(n)]

    first = body(signed_in.get(url, {"path": "stdout.txt", "q": "9999"}))

    assert f"{len(expected)} matches</strong>" in first and "match 1" in first
    assert re.search(r'<div class="log-line log-hit" id="L9999"><a[^>]*>9999</a><span class="lt"><mark>9999</mark>',
                     first)
    assert "Previous" not in first and "hit=1" in first
    second = body(signed_in.get(url, {"path": "stdout.txt", "q": "9999", "hit": 1}))
    assert 'class="log-line log-hit" id="L19999"' in second and "match 2" in second
    last = body(signed_in.get(url, {"path": "stdout.txt", "q": "9999", "hit": -1}))
    assert f'class="log-line log-hit" id="L{expected[-1]}"' in last and "Next" not in last
    # Next and previous are answered from the first scan: after it, only the window around each match is read.
    scan, windows = counted.reads[0], counted.reads[2:]
    assert scan == 588895 and len(windows) == 2 and max(windows) <= WINDOW_BYTES


def test_search_is_plain_text_case_insensitive_and_its_marks_keep_output_inert(
        signed_in, account, batch_client, batch_job, counted):
    add_task(batch_client, "payload", f"printf '{PAYLOAD}'; printf 'a.*b A.*B Ünïcode ünÏcode\\n'")
    wait_task_completed(batch_client, "logs-job", "payload")
    task = task_row(account, "payload")
    url = reverse("task_output_search", args=[task.pk])

    page = body(signed_in.get(url, {"path": "stdout.txt", "q": "SCRIPT"}))
    assert "<script>" not in page and "&lt;<mark>script</mark>&gt;window.pwned" in page
    assert "&lt;/<mark>script</mark>&gt;" in page and "2 matches</strong>" in page
    # Not a regular expression: ".*" matches only itself.
    regexish = body(signed_in.get(url, {"path": "stdout.txt", "q": "a.*b"}))
    assert "2 matches</strong>" in regexish and "<mark>a.*b</mark> <mark>A.*B</mark>" in regexish
    assert "2 matches</strong>" in body(signed_in.get(url, {"path": "stdout.txt", "q": "ÜNÏCODE"}))
    # A search for markup finds the text and marks it escaped.
    img = body(signed_in.get(url, {"path": "stdout.txt", "q": "<img src=x"}))
    assert "<mark>&lt;img src=x</mark>" in img and "<img" not in img
    assert "Type between" in body(signed_in.get(url, {"path": "stdout.txt", "q": ""}))


def test_search_reads_at_most_its_bound_and_says_where_it_stopped(
        signed_in, account, batch_client, batch_job, counted, monkeypatch):
    add_task(batch_client, "long", "seq 1 100000")
    wait_task_completed(batch_client, "logs-job", "long")
    task = task_row(account, "long")
    monkeypatch.setattr(search, "SEARCH_SCAN_BYTES", 100_000)
    monkeypatch.setattr(search, "SEARCH_CHUNK_BYTES", 30_000)
    url = reverse("task_output_search", args=[task.pk])

    nothing = body(signed_in.get(url, {"path": "stdout.txt", "q": "99999"}))
    assert "No matches" in nothing and "in bytes 0–100000 of 588895" in nothing
    # The scan read exactly its bound, in chunks; then only the window shown.
    assert counted.reads[:4] == [30_000, 30_000, 30_000, 10_000] and counted.reads[4] <= WINDOW_BYTES
    assert "Search the next 100 KB" in nothing and "region=1&hit=0" in nothing
    last_region = 588895 // 100_000
    found = body(signed_in.get(url, {"path": "stdout.txt", "q": "99999", "region": last_region}))
    assert "1 match</strong>" in found and 'log-hit' in found and "<mark>99999</mark>" in found
    # Counting stops at the bound on matches.
    monkeypatch.setattr(search, "SEARCH_MAX_HITS", 5)
    many = body(signed_in.get(url, {"path": "stdout.txt", "q": "1"}))
    assert "More than 5 matches" in many


# --- links and zips ---------------------------------------------------------------------------------------------

def test_a_link_to_the_saved_copy_is_read_only_short_lived_and_audited(
        signed_in, account, batch_client, batch_job, store, user):
    add_task(batch_client, "linked", "echo on the node")
    wait_task_completed(batch_client, "logs-job", "linked")
    task = task_row(account, "linked")
    save_copy(store, "logs-job", "linked", "stdout.txt", b"<script>alert(1)</script>\n")
    url = reverse("task_output_link", args=[task.pk])

    assert signed_in.get(url).status_code == 405
    page = body(signed_in.post(url, {"path": "stdout.txt"}))

    link = unescape(re.search(r'href="([^"]+)" rel="noreferrer"', page).group(1))
    assert "sp=r&" in link and "se=" in link and "valid until" in page
    with urllib.request.urlopen(link) as response:
        assert response.read() == b"<script>alert(1)</script>\n"
        assert response.headers["Content-Disposition"].startswith("attachment")
    # Read-only: the same signature cannot write.
    request = urllib.request.Request(link, data=b"x", method="PUT", headers={"x-ms-blob-type": "BlockBlob"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request)
    assert refused.value.code == 403
    event = AuditEvent.objects.get(action="logs.download")
    assert event.actor_id == user.pk and event.details["kind"] == "link" and "sig" not in str(event.details)
    assert signed_in.post(url, {"path": "stderr.txt"}).status_code == 404     # no saved copy of that one


def test_all_logs_of_a_job_download_as_one_zip_from_storage_or_node(
        signed_in, account, batch_client, batch_job, store, counted):
    add_task(batch_client, "a", "echo a out; echo a err >&2")
    add_task(batch_client, "b", "head -c 3000000 /dev/urandom")
    add_task(batch_client, "c", "echo c")
    for task_id in "abc":
        wait_task_completed(batch_client, "logs-job", task_id)
    batch_client.delete_task("logs-job", "c")
    for task_id in "abc":
        task_row(account, task_id)
    save_copy(store, "logs-job", "a", "stdout.txt", b"a saved\n")
    job = Task.objects.get(task_id="a").job
    expected_b = b"".join(batch_client.download_task_file("logs-job", "b", "stdout.txt"))

    assert f'href="{reverse("job_logs_zip", args=[job.pk])}"' in body(signed_in.get(reverse("job_detail",
                                                                                           args=[job.pk])))
    response = signed_in.get(reverse("job_logs_zip", args=[job.pk]))

    assert response.status_code == 200 and response.streaming and response["Content-Type"] == "application/zip"
    archive_file = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive_file.testzip() is None
    assert archive_file.namelist() == ["a/stdout.txt", "a/stderr.txt", "b/stdout.txt", "b/stderr.txt", "MISSING.txt"]
    assert archive_file.read("a/stdout.txt") == b"a saved\n" and archive_file.read("a/stderr.txt") == b"a err\n"
    assert archive_file.read("b/stdout.txt") == expected_b
    missing = archive_file.read("MISSING.txt").decode()
    assert "c/stdout.txt: the node no longer has it" in missing and "c/stderr.txt" in missing
    assert max(counted.reads) <= DOWNLOAD_CHUNK_BYTES
    assert AuditEvent.objects.filter(action="logs.zip_download", details__tasks=3).count() == 1


def test_a_zip_of_more_tasks_than_it_may_hold_is_refused_plainly(signed_in, account, monkeypatch):
    monkeypatch.setattr(downloads, "ZIP_MAX_TASKS", 2)
    for task_id in ("t1", "t2", "t3"):
        task = task_row(account, task_id)
    response = signed_in.get(reverse("job_logs_zip", args=[task.job.pk]))
    assert response.status_code == 413 and b"more than 2 tasks" in response.content


def test_the_zip_needs_a_signed_in_reader(client, account, no_role):
    task = task_row(account, "t1")
    url = reverse("job_logs_zip", args=[task.job.pk])
    assert client.get(url).status_code == 302
    client.force_login(no_role)    # signed in, without a role
    assert client.get(url).status_code in (403, 404)
    assert client.post(reverse("task_output_link", args=[task.pk]), {"path": "stdout.txt"}).status_code in (403, 404)

