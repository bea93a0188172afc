"""Opening, searching and downloading a 1 GiB stdout through the log viewer: first-screen server time, bytes read
from Batch, web memory growth, a bounded search, and download throughput against the SDK's own
download_task_file; then the archiver copying it to Blob (Azurite) and the same pages served from the saved copy,
against the storage SDK's own download, in one run."""

import argparse
import os
import resource
import shutil
import tracemalloc

import _pages as p
from _common import (
    Timer,
    arguments,
    azurite_server,
    batch_client,
    localbatch_server,
    make_job,
    make_pool,
    result,
    setup_django,
    wait_for,
)

MiB = 1024 * 1024
KEY_VARIABLE = "BENCH_LOGS_BATCH_KEY"


class Counting:
    """The real gateway, counting the bytes its file reads bring back from Batch."""

    def __init__(self, gateway):
        self._gateway = gateway
        self.bytes_read = 0
        self.requests = 0

    def read_task_file(self, *args, **kwargs):
        data = self._gateway.read_task_file(*args, **kwargs)
        self.bytes_read += len(data)
        self.requests += 1
        return data

    def get_task_file_size(self, *args, **kwargs):
        self.requests += 1
        return self._gateway.get_task_file_size(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._gateway, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def close(self):
        pass


def reader_client():
    """A test Client signed in as someone who may read every log, speaking HTTPS as production requires."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(username="bench-logs")
    user.is_superuser = True
    user.save()
    class HttpsClient(Client):
        def get(self, *args, **kwargs):
            return super().get(*args, secure=True, **kwargs)

    client = HttpsClient(SERVER_NAME="127.0.0.1")
    client.force_login(user)
    return client


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=1024, help="size of the task's stdout in MiB")
    args = arguments(parser, smoke={"mib": 8})
    free = shutil.disk_usage("/tmp").free
    size_mib = args.mib
    if free < 4 * args.mib * MiB:
        size_mib = min(256, args.mib)
        print(f"  only {free / MiB:,.0f} MiB free under /tmp: using a {size_mib} MiB stdout instead")
    size = size_mib * MiB

    url = setup_django()
    from django.urls import reverse

    from batchsync.accounts import gateway_for
    from portal.logs import views as log_views
    from portal.logs import windows as log_windows
    from portal.models import Job, Task

    p.header(f"Log viewer: a {size_mib:,} MiB stdout on localbatch", url)
    with localbatch_server() as server, azurite_server() as storage:
        from django.conf import settings

        from batchsync import archive
        from batchsync.accounts import blob_store
        settings.AZURE_STORAGE_CONNECTION_STRING = storage
        with blob_store() as store:
            store.ensure_containers()
        client = batch_client(server)
        make_pool(client, "bench-logs-pool", nodes=1)
        make_job(client, "bench-logs-job", "bench-logs-pool")
        from azure.batch import models
        # 128-byte lines, as a chatty program writes them; `yes` makes them at disk speed.
        line = "x" * 127
        client.create_task("bench-logs-job", models.BatchTaskCreateOptions(
            id="big", command_line=f"/bin/sh -c 'yes {line} | head -c {size}'"))
        wait_for(lambda: client.get_task("bench-logs-job", "big").state == "completed", timeout=600,
                 message="the big task completed")

        os.environ[KEY_VARIABLE] = server.account_key
        account = p.fresh_account("bench-logs", report_others=False)
        account.account_url, account.account_name, account.key_env_var = (
            server.endpoint, server.account_name, KEY_VARIABLE)
        account.save()
        job = Job.objects.create(account=account, job_id="bench-logs-job", pool_id="bench-logs-pool",
                                 state="completed", creation_time=p.now(), last_synced_at=p.now())
        task = Task.objects.create(job=job, task_id="big", state="completed", creation_time=p.now(),
                                   last_synced_at=p.now())
        web = reader_client()

        real_gateway = gateway_for(account)
        counting = Counting(real_gateway)
        log_views.gateway_for = log_windows.gateway_for = lambda _account: counting

        output_url = reverse("task_output", args=[task.pk])
        window_url = reverse("task_output_window", args=[task.pk])
        web.get(output_url)                       # warm-up: imports, template compilation, connections
        counting.bytes_read = counting.requests = 0

        rss_before = rss_mib()
        with Timer() as first:
            response = web.get(output_url)
        assert response.status_code == 200, response.status_code
        first_bytes, first_requests = counting.bytes_read, counting.requests
        with Timer() as head:
            web.get(window_url, {"path": "stdout.txt", "start": 0})
        head_bytes = counting.bytes_read - first_bytes
        # The same two requests again for their memory: tracemalloc would have slowed the timed ones.
        tracemalloc.start()
        web.get(output_url)
        web.get(window_url, {"path": "stdout.txt", "start": 0})
        _, view_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()

        result("first screen (file list + tail) server time", first.seconds * 1000, "ms", "≤ 300 ms",
               first.seconds <= 0.3, f"start of file {head.seconds * 1000:.1f} ms")
        result("first screen: bytes read from Batch", first_bytes / 1024, "KiB", "≤ 1024 KiB",
               first_bytes <= MiB,
               f"{first_requests} file requests besides the file list; start of file {head_bytes / 1024:.0f} KiB")

        download_url = reverse("task_output_download", args=[task.pk])

        def download() -> int:
            response = web.get(download_url, {"path": "stdout.txt"})
            return sum(len(chunk) for chunk in response.streaming_content)

        # Memory first, under tracemalloc; timing after, without it (tracemalloc slows every allocation).
        streamed = download()
        _, download_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert streamed == size, (streamed, size)
        with Timer() as sdk:
            direct = sum(len(chunk) for chunk in client.download_task_file("bench-logs-job", "big", "stdout.txt"))
        assert direct == size
        with Timer() as ours:
            download()
        rss_after = rss_mib()

        ours_rate, sdk_rate = size / MiB / ours.seconds, size / MiB / sdk.seconds
        result("download through the portal", ours_rate, "MiB/s", "≥ ½ of the SDK's", ours_rate >= sdk_rate / 2,
               f"SDK download_task_file {sdk_rate:.0f} MiB/s ({sdk.seconds:.1f} s vs {ours.seconds:.1f} s)")

        search_url = reverse("task_output_search", args=[task.pk])
        counting.bytes_read = 0
        with Timer() as searched:
            found = web.get(search_url, {"path": "stdout.txt", "q": "no such text"})
        assert found.status_code == 200 and b"No matches" in found.content
        result("search, one request (bounded scan)", searched.seconds * 1000, "ms", "≤ 2,000 ms",
               searched.seconds <= 2, f"{counting.bytes_read / MiB:.0f} MiB read from Batch of {size_mib:,} MiB; "
                                      "the page offers the next part")

        # The archiver copies the file to Blob; then the viewer and the download read the saved copy.
        rss_before_archive = rss_mib()
        with blob_store() as store, Timer() as archived:
            assert archive.archive_task(task, batch=counting, store=store)
        rss_after_archive = rss_mib()
        task.refresh_from_db()
        archive_rate = size / MiB / archived.seconds
        result("archiver: node → Blob copy", archive_rate, "MiB/s", "", None,
               f"SDK download_task_file alone {sdk_rate:.0f} MiB/s; RSS {rss_before_archive:.0f} → "
               f"{rss_after_archive:.0f} MiB")
        counting.bytes_read = counting.requests = 0
        with Timer() as saved_first:
            response = web.get(output_url)
        assert b"Saved copy in storage" in response.content
        with Timer() as saved_download:
            assert download() == size
        with blob_store() as store, Timer() as blob_sdk:
            direct = sum(len(c) for c in store._service.get_blob_client(
                store.containers.logs, "bench-logs-job/big/logs/stdout.txt").download_blob().chunks())
        assert direct == size
        saved_rate, blob_rate = size / MiB / saved_download.seconds, size / MiB / blob_sdk.seconds
        result("first screen from the saved copy", saved_first.seconds * 1000, "ms", "≤ 300 ms",
               saved_first.seconds <= 0.3, f"{counting.requests} file requests to Batch")
        result("download of the saved copy through the portal", saved_rate, "MiB/s", "≥ ½ of the SDK's",
               saved_rate >= blob_rate / 2, f"storage SDK download_blob {blob_rate:.0f} MiB/s")
        result("web memory: peak Python allocations", max(view_peak, download_peak) / MiB, "MiB", "≤ 50 MiB",
               max(view_peak, download_peak) <= 50 * MiB,
               f"viewer {view_peak / MiB:.1f} MiB, download {download_peak / MiB:.1f} MiB (tracemalloc)")
        result("web memory: RSS growth over the run", rss_after - rss_before, "MiB", "≤ 50 MiB",
               rss_after - rss_before <= 50, f"RSS {rss_before:.0f} → {rss_after:.0f} MiB")
        real_gateway.close()
        client.close()
        account.jobs.all().delete()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
