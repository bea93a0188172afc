"""Node files in the portal against localbatch through the real SDK: a pool's start task output from the pool page,
a job preparation task's output from the job page, windows of a big file, escaping, refused paths, access, and a
node that is gone."""

import re

import pytest
from azure.batch import models
from azure.batch.models._models import BatchJobTerminateOptions
from django.test import Client
from django.urls import reverse

from batchsync.accounts import default_account
from batchsync.sync import sync_account
from portal import access
from portal.logs import node_file_views
from portal.models import Job, Node, Pool
from tests.factories import PoolFactory
from tests.localbatch.helpers import make_job, make_pool, task, wait_for, wait_task_completed
from tests.logfiles import shell_quote
from tests.personas import client_for
from tests.portal.pages import text

pytestmark = pytest.mark.django_db

# printf's format: \\047 is a single quote, \\033 the ESC that starts a colour code.
PAYLOAD = ("<script>window.pwned = 1</script> & <img src=x onerror=alert(1)>\\n"
           "\\033[31mred error\\033[0m\\n")


@pytest.fixture
def viewer_client(viewer) -> Client:
    client = Client()
    client.force_login(viewer)
    return client


class Counting:
    """The views' gateway, counting the node-file calls that reach Batch (the calls themselves are real)."""

    def __init__(self, monkeypatch):
        self.file_calls = 0
        real = node_file_views.gateway_for
        counter = self

        class Wrapped:
            def __init__(self, gateway):
                self._gateway = gateway

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self._gateway.close()

            def __getattr__(self, name):
                attr = getattr(self._gateway, name)
                if name in ("list_node_files", "read_node_file", "get_node_file_size"):
                    def counted(*args, **kwargs):
                        counter.file_calls += 1
                        return attr(*args, **kwargs)
                    return counted
                return attr

        monkeypatch.setattr(node_file_views, "gateway_for", lambda account: Wrapped(real(account)))


def sync():
    """A sync pass as the worker runs it, again while another test process holds the account's lock (tests on
    one machine share Redis and the in-memory test database's name)."""
    wait_for(lambda: not sync_account(default_account()).busy, message="a sync pass that was not busy")


def sh(script: str) -> str:
    return "/bin/sh -c " + shell_quote(script)


def failing_start_task_pool(batch_client, pool_id="setup") -> tuple[Pool, Node]:
    make_pool(batch_client, pool_id, nodes=1, start_task=models.BatchStartTask(
        command_line=sh(f"echo installing; printf '{PAYLOAD}'; echo 'E: Unable to locate package foo' >&2; exit 100"),
        wait_for_success=True))
    wait_for(lambda: [n.state for n in batch_client.list_nodes(pool_id)] == ["starttaskfailed"],
             message="the start task failed")
    sync()
    pool = Pool.objects.get(pool_id=pool_id)
    return pool, Node.objects.get(pool=pool)


def test_the_pool_page_links_each_node_to_its_start_task_output_which_reads_escaped_and_coloured(
        batch, batch_client, viewer_client):
    pool, node = failing_start_task_pool(batch_client)

    page = text(viewer_client.get(reverse("pool_detail", args=[pool.pk])))
    stdout_url = re.search(rf'id="node-out-{node.pk}" href="([^"]+)"', page).group(1).replace("&amp;", "&")
    stderr_url = re.search(rf'id="node-err-{node.pk}" href="([^"]+)"', page).group(1).replace("&amp;", "&")

    out = text(viewer_client.get(stdout_url))
    assert "installing" in out and 'id="L1"' in out and 'id="L3"' in out
    assert "<script>window.pwned" not in out and "<img src=x" not in out
    assert "&lt;script&gt;window.pwned = 1&lt;/script&gt; &amp; &lt;img src=x onerror=alert(1)&gt;" in out
    assert '<span class="ansi-red">red error</span>' in out
    # The picker offers the start task's other file; the page says which node and how the start task ended.
    assert "startup/stderr.txt" in out and node.node_id in out and "exit 100" in out
    err = text(viewer_client.get(stderr_url))
    assert "E: Unable to locate package foo" in err and "installing" not in err
    # The whole file downloads as it is on the node, never as a page.
    download = viewer_client.get(stderr_url + "&download=1")
    assert download.status_code == 200 and download["Content-Security-Policy"] == "sandbox"
    assert b"".join(download.streaming_content) == b"".join(
        batch_client.download_node_file(pool.pool_id, node.node_id, "startup/stderr.txt"))


def test_a_big_start_task_file_opens_at_its_tail_and_moves_by_windows(batch, batch_client, viewer_client):
    make_pool(batch_client, "chatty", nodes=1, start_task=models.BatchStartTask(
        command_line=sh("seq 1 20000"), wait_for_success=True))
    wait_for(lambda: [n.state for n in batch_client.list_nodes("chatty")] == ["idle"], message="an idle node")
    sync()
    pool = Pool.objects.get(pool_id="chatty")
    node = Node.objects.get(pool=pool)
    url = reverse("node_files", args=[pool.pk, node.node_id])

    tail = text(viewer_client.get(url, {"path": "startup/stdout.txt"}))
    assert ">20000<" in tail and ">1<" not in tail and "earlier in the file" in tail
    assert 'class="log unnumbered"' in tail          # the tail's line numbers are not known yet

    start = text(viewer_client.get(url, {"path": "startup/stdout.txt", "start": "0"}))
    assert 'id="L1"' in start and ">20000<" not in start
    later = re.search(r'href="([^"]+)">Load later', start).group(1).replace("&amp;", "&")
    following = text(viewer_client.get(later))
    first = int(re.search(r'id="L(\d+)"', following).group(1))
    # The next window continues exactly where the first stopped, numbered on: line n holds the number n.
    assert f'id="L{first}"' in following and re.search(rf'id="L{first}".*?<span class="lt">{first}</span>',
                                                        following)


def test_the_job_page_lists_where_the_preparation_task_ran_with_its_output(batch, batch_client, viewer_client):
    make_pool(batch_client, "prep-pool", nodes=1)
    make_job(batch_client, "with-prep", "prep-pool", job_preparation_task=models.BatchJobPreparationTask(
        command_line=sh("echo fetching reference data; echo 'warning: slow mirror' >&2")))
    batch_client.create_task("with-prep", task("t1", "echo hi"))
    wait_task_completed(batch_client, "with-prep", "t1")
    sync()
    job = Job.objects.get(job_id="with-prep")

    page = text(viewer_client.get(reverse("job_detail", args=[job.pk])))
    assert f'hx-get="{reverse("job_preparation", args=[job.pk])}" hx-trigger="load"' in page
    section = text(viewer_client.get(reverse("job_preparation", args=[job.pk])))
    assert "Preparation and release task output" in section and "succeeded" in section

    out_url = re.search(r'id="prep-out-1" href="([^"]+)"', section).group(1).replace("&amp;", "&")
    err_url = re.search(r'id="prep-err-1" href="([^"]+)"', section).group(1).replace("&amp;", "&")
    out = text(viewer_client.get(out_url))
    assert "fetching reference data" in out and "Preparation task of" in out and "with-prep" in out
    assert "warning: slow mirror" in text(viewer_client.get(err_url))


def test_a_job_without_a_preparation_task_shows_no_section(batch, batch_client, viewer_client):
    make_pool(batch_client, "pool-1", nodes=0)
    make_job(batch_client, "plain", "pool-1")
    sync()
    job = Job.objects.get(job_id="plain")
    section = text(viewer_client.get(reverse("job_preparation", args=[job.pk])))
    assert "Preparation and release task output" not in section and 'id="job-preparation" hidden' in section


BAD_PATHS = ["../../etc/passwd", "startup/../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd", "startup/%2e%2e/x",
             "/etc/passwd", "/startup/stdout.txt", "startup\\..\\..\\x", "startup\\stdout.txt", "%252e%252e/x",
             "startup/stdout.txt\x00", "startup/./stdout.txt", "startup", "startup/", "shared/secret.txt",
             "applications/x", "workitems/with-prep", "workitems/../startup/stdout.txt"]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_paths_outside_the_start_task_and_preparation_folders_are_refused_before_reading(
        batch, batch_client, viewer_client, monkeypatch, path):
    pool = PoolFactory(account=default_account(), pool_id="setup")
    counting = Counting(monkeypatch)
    # As a browser sends it: the query string percent-encodes only what it must.
    url, encoded = reverse("node_files", args=[pool.pk, "tvm-1"]), path.replace("\x00", "%00")
    # A NUL in a query string is refused before any view (portal/request_guard.py).
    refused = 400 if "\x00" in path else 404
    response = viewer_client.get(url + "?path=" + encoded)
    assert response.status_code == refused
    response = viewer_client.get(url + "?download=1&path=" + encoded)
    assert response.status_code == refused
    assert counting.file_calls == 0


def test_a_task_folder_that_is_not_the_jobs_preparation_folder_is_refused(batch, batch_client, viewer_client,
                                                                          monkeypatch):
    make_pool(batch_client, "prep-pool", nodes=1)
    make_job(batch_client, "with-prep", "prep-pool", job_preparation_task=models.BatchJobPreparationTask(
        command_line="echo prep"))
    batch_client.create_task("with-prep", task("t1", "echo the task's own output"))
    wait_task_completed(batch_client, "with-prep", "t1")
    sync()
    pool = Pool.objects.get(pool_id="prep-pool")
    node = Node.objects.get(pool=pool)
    counting = Counting(monkeypatch)
    url = reverse("node_files", args=[pool.pk, node.node_id])

    for path in ("workitems/with-prep/job-1/t1/stdout.txt", "workitems/nope/job-1/jobpreparation/stdout.txt",
                 "workitems/with-prep/job-1/jobrelease/stdout.txt"):
        assert viewer_client.get(url, {"path": path}).status_code == 404, path
    assert counting.file_calls == 0
    assert viewer_client.get(url, {"path": "workitems/with-prep/job-1/jobpreparation/stdout.txt"}).status_code == 200


def test_a_node_that_is_gone_says_so_plainly(batch, batch_client, viewer_client):
    pool, node = failing_start_task_pool(batch_client, "shrinking")
    batch_client.begin_resize_pool("shrinking", models.BatchPoolResizeOptions(target_dedicated_nodes=0)).result()
    wait_for(lambda: not list(batch_client.list_nodes("shrinking")), message="the node gone")

    page = text(viewer_client.get(reverse("node_files", args=[pool.pk, node.node_id])))
    assert "This node is no longer in the pool" in page and 'id="log-lines"' not in page
    download = viewer_client.get(reverse("node_files", args=[pool.pk, node.node_id]), {"download": "1"})
    assert download.status_code == 404 and b"no longer in the pool" in download.content
    # An id the pool never had reads the same, and a node id no node could have is refused.
    assert "no longer in the pool" in text(viewer_client.get(reverse("node_files", args=[pool.pk, "tvm-never"])))
    assert viewer_client.get(reverse("node_files", args=[pool.pk, "bad id!"])).status_code == 404


def test_a_file_the_node_does_not_have_says_so(batch, batch_client, viewer_client):
    pool, node = failing_start_task_pool(batch_client)
    page = text(viewer_client.get(reverse("node_files", args=[pool.pk, node.node_id]), {"path": "startup/wd/none.txt"}))
    assert "The node has no file by this name" in page


def test_anonymous_people_sign_in_and_missing_or_hidden_objects_are_404(batch, batch_client, client, viewer_client,
                                                                        monkeypatch):
    pool = PoolFactory(account=default_account(), pool_id="setup")
    job = Job.objects.create(account=pool.account, job_id="j", pool_id="setup")
    for url in (reverse("node_files", args=[pool.pk, "tvm-1"]), reverse("job_preparation", args=[job.pk])):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("login"))
    assert viewer_client.get(reverse("node_files", args=[31337, "tvm-1"])).status_code == 404
    assert viewer_client.get(reverse("job_preparation", args=[31337])).status_code == 404
    monkeypatch.setattr(access, "user_can_view_account", lambda *, user, account_id: False)
    assert viewer_client.get(reverse("node_files", args=[pool.pk, "tvm-1"])).status_code == 404
    assert viewer_client.get(reverse("job_preparation", args=[job.pk])).status_code == 404


def test_the_release_task_shows_beside_the_preparation_task_with_its_outcome_and_output(
        batch, batch_client, viewer_client, no_role, client):
    make_pool(batch_client, "release-pool", nodes=1)
    make_job(batch_client, "with-release", "release-pool",
             job_preparation_task=models.BatchJobPreparationTask(command_line=sh("echo preparing")),
             job_release_task=models.BatchJobReleaseTask(
                 command_line=sh(f"echo 'releasing <b>scratch</b>'; printf '{PAYLOAD}'; echo 'cleanup failed' >&2; "
                                 "exit 3")))
    batch_client.create_task("with-release", task("t1", "echo hi"))
    wait_task_completed(batch_client, "with-release", "t1")
    sync()
    job = Job.objects.get(job_id="with-release")
    section_url = reverse("job_preparation", args=[job.pk])
    before = text(viewer_client.get(section_url))
    assert "Preparation and release task output" in before and "Runs here when the job ends" in before
    assert 'id="release-out-1"' not in before

    batch_client.begin_terminate_job("with-release", BatchJobTerminateOptions(termination_reason="UserTerminate"),
                                     polling_interval=0.1).result()
    wait_for(lambda: batch_client.get_job("with-release").state == "completed", message="the job completed")
    sync()

    section = text(viewer_client.get(section_url))
    assert "failed" in section and "exit code 3" in section and "FailureExitCode" in section
    out_url = re.search(r'id="release-out-1" href="([^"]+)"', section).group(1).replace("&amp;", "&")
    err_url = re.search(r'id="release-err-1" href="([^"]+)"', section).group(1).replace("&amp;", "&")
    assert out_url.endswith("path=workitems/with-release/job-1/jobrelease/stdout.txt")
    out = text(viewer_client.get(out_url))
    assert "Release task of" in out and "releasing &lt;b&gt;scratch&lt;/b&gt;" in out and "<script>" not in out
    assert "cleanup failed" in text(viewer_client.get(err_url))
    assert viewer_client.get(out_url + "&download=1").status_code == 200
    # Reading it takes a role, and signing in.
    assert client_for(no_role).get(out_url).status_code in (302, 403, 404)
    assert client.get(out_url).status_code == 302 and client.get(section_url).status_code == 302
