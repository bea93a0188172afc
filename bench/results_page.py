"""Results of a big job: 10,000 tasks with 3 output files each (30,000 blobs in an Azurite this script starts).

(1) The results page's first screen (Django test Client, in-process, PostgreSQL; one page of files listed from
storage), p95, against the bare storage SDK listing the same first page in the same run, requests interleaved.
(2) The job's results as one streamed zip: throughput, against the storage SDK's `download_blob` of the same blobs,
and the web process's memory while it streams (RSS before and after, peak RSS)."""

import argparse
import os
import resource
import time
from concurrent.futures import ThreadPoolExecutor

import _pages as p
from _common import arguments, azurite_server, percentile, result, setup_django

GOAL_MS = 300.0
MiB = 1024 * 1024


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--files", type=int, default=3, help="output files per task")
    parser.add_argument("--file-bytes", type=int, default=8192, help="size of each output file")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--upload-threads", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1, help="zip and SDK downloads, alternated; the best of each")
    args = arguments(parser, smoke={"tasks": 40, "requests": 3, "rounds": 1})

    url = setup_django()
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from azure.storage.blob import BlobServiceClient
    from django.conf import settings
    from django.urls import reverse

    from batchsync.accounts import blob_store
    from portal.models import Job
    from portal.results import selectors

    blobs = args.tasks * args.files
    p.header(f"Results: a {args.tasks:,}-task job with {args.files} output files each ({blobs:,} blobs of "
             f"{args.file_bytes:,} bytes in Azurite)", url)
    # In memory: 30,000 uploads into Azurite's on-disk store take ten minutes (it rewrites its metadata file).
    with azurite_server(in_memory=True) as storage:
        settings.AZURE_STORAGE_CONNECTION_STRING = storage
        with blob_store() as store:
            store.ensure_containers()
        account = p.fresh_account("bench-results", report_others=False)
        job = Job.objects.create(account=account, job_id="bench-results-job", pool_id="bench-pool", state="completed",
                                 creation_time=p.now(), last_synced_at=p.now())
        p.copy_tasks(job, p.task_rows(job, args.tasks, seed=3, done=1.0, failed=0.0))
        p.analyze()

        # The blobs, as the tasks' output rules leave them: <job>/<task>/outputs/<name>, uploaded concurrently.
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=args.upload_threads)
        session.mount("http://", adapter)
        service = BlobServiceClient.from_connection_string(
            storage, transport=RequestsTransport(session=session, session_owner=False))
        container = service.get_container_client(settings.STORAGE_OUTPUTS_CONTAINER)
        names = [f"{job.job_id}/task-{i:06d}/outputs/{kind}" for i in range(args.tasks)
                 for kind in ("counts.csv", "summary.txt", "plot.png", "extra-1.bin", "extra-2.bin")[:args.files]]
        payload = os.urandom(args.file_bytes)
        started = time.perf_counter()
        def upload(name: str) -> None:
            # upload_blob returns a client per blob: dropped at once, so the uploads leave memory as it was.
            container.upload_blob(name, payload, overwrite=True)

        with ThreadPoolExecutor(args.upload_threads) as pool:
            for _ in pool.map(upload, names):
                pass
        upload_seconds = time.perf_counter() - started
        print(f"  uploaded {blobs:,} blobs in {upload_seconds:.1f} s ({blobs / upload_seconds:,.0f} blobs/s, "
              f"{args.upload_threads} threads); RSS now {rss_mib():.0f} MiB, peak so far {peak_rss_mib():.0f} MiB",
              flush=True)

        # (1) The first screen: one page of PAGE_SIZE files, against the SDK listing the same page alone.
        client = p.signed_in_client()
        page_url = reverse("job_results", args=[job.pk])
        shown = client.get(page_url).content.decode().count('class="mono result-name"')
        if shown != min(selectors.PAGE_SIZE, blobs):
            raise RuntimeError(f"the results page showed {shown} files")

        def sdk_first_page() -> int:
            pages = container.list_blobs(name_starts_with=f"{job.job_id}/",
                                         results_per_page=selectors.PAGE_SIZE).by_page()
            return len(list(next(pages)))

        page_times, sdk_times = [], []
        for _ in range(min(p.WARMUP, args.requests)):
            client.get(page_url)
            sdk_first_page()
        for _ in range(args.requests):
            started = time.perf_counter()
            response = client.get(page_url)
            page_times.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"GET {page_url} answered {response.status_code}")
            started = time.perf_counter()
            sdk_first_page()
            sdk_times.append(time.perf_counter() - started)
        page_p95, sdk_p95 = percentile(page_times, 95) * 1000, percentile(sdk_times, 95) * 1000
        result("results page first screen, p95", page_p95, "ms", f"<= {GOAL_MS:.0f} ms", page_p95 <= GOAL_MS,
               f"storage SDK listing the same first page of {selectors.PAGE_SIZE} p95 {sdk_p95:.1f} ms "
               f"(page p50 {percentile(page_times, 50) * 1000:.1f} ms; {shown} files shown of {blobs:,})")

        # (2) The zip, streamed and consumed chunk by chunk, against list + download_blob of every blob; alternated,
        # so a cold cache or a busy neighbour weighs on both.
        zip_url = reverse("job_results_zip", args=[job.pk])
        data_mib = blobs * args.file_bytes / MiB
        zip_runs, sdk_runs, growth = [], [], []
        for _ in range(args.rounds):
            rss_before = rss_mib()
            started = time.perf_counter()
            response = client.get(zip_url)
            if response.status_code != 200:
                raise RuntimeError(f"GET {zip_url} answered {response.status_code}")
            zipped = sum(len(chunk) for chunk in response.streaming_content)
            zip_runs.append(time.perf_counter() - started)
            rss_after = rss_mib()
            growth.append((rss_before, rss_after))

            started = time.perf_counter()
            fetched = 0
            for blob in container.list_blobs(name_starts_with=f"{job.job_id}/"):
                fetched += len(container.download_blob(blob.name).readall())
            sdk_runs.append(time.perf_counter() - started)
            if fetched != blobs * args.file_bytes:
                raise RuntimeError(f"download_blob read {fetched} bytes")
        zip_seconds, sdk_seconds = min(zip_runs), min(sdk_runs)
        rss_before, rss_after = growth[0][0], growth[-1][1]
        zip_rate, sdk_rate = data_mib / zip_seconds, data_mib / sdk_seconds
        result("results zip throughput (file bytes)", zip_rate, "MiB/s", ">= 1/2 the SDK's", zip_rate >= sdk_rate / 2,
               f"storage SDK list + download_blob of the same {blobs:,} blobs {sdk_rate:.1f} MiB/s "
               f"(ratio {zip_rate / sdk_rate:.2f}x; zip of {zipped / MiB:.1f} MiB in {zip_seconds:.1f} s vs "
               f"{sdk_seconds:.1f} s; best of {args.rounds})")
        result(f"web memory over {args.rounds} zips: RSS growth", rss_after - rss_before, "MiB", "flat",
               None, f"RSS {rss_before:.0f} → {rss_after:.0f} MiB; peak RSS of the process {peak_rss_mib():.0f} MiB "
               f"for {data_mib:.0f} MiB of files")
        service.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
