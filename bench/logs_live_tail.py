"""Following a running task's output through the log viewer's tail view, against a task on localbatch writing
1 MB/s of 100-byte lines that carry the time they were written.

1. Latency: a watcher polling the real tail view every 2 s, as the page does: time from a line being written to it
   being in a tail response (p50/p95), compared in the same run with a watcher reading the file straight from
   localbatch with the SDK every 2 s (properties, then a ranged download of everything new).
2. Fan-in: 20 watchers of one running task polling the tail view every 2 s: file requests reaching localbatch per
   second, compared with 20 watchers each reading straight from Batch (what every viewer costs without the
   shared tail)."""

import argparse
import os
import re
import sys
import threading
import time

import _pages as p
from _common import (
    arguments,
    batch_client,
    localbatch_server,
    make_job,
    make_pool,
    percentile,
    result,
    setup_django,
    wait_for,
)

KEY_VARIABLE = "BENCH_LOGS_BATCH_KEY"
POLL_SECONDS = 2.0
LINE_BYTES = 100
# One tick of the writer: 200 lines every 20 ms is 1 MB/s.
WRITER = """
import sys, time
rate, seconds, line = {rate}, {seconds}, {line}
per_tick, tick = max(1, int(rate * 0.02) // line), 0.02
end = time.time() + seconds
out = sys.stdout.buffer
next_at = time.time()
while time.time() < end:
    stamp = ("%.6f " % time.time()).encode()
    row = stamp + b"x" * (line - len(stamp) - 1) + b"\\n"
    out.write(row * per_tick)
    out.flush()
    next_at += tick
    time.sleep(max(0.0, next_at - time.time()))
"""
STAMP = re.compile(r'<span class="lt">(\d{10}\.\d{6}) x')
AFTER = re.compile(r'data-after="(\d+)"')


class Counting:
    """The real gateway, counting the file requests (properties and ranged reads) that reach localbatch."""

    def __init__(self, gateway):
        self._gateway = gateway
        self._lock = threading.Lock()
        self.reads = 0
        self.sizes = 0

    def read_task_file(self, *args, **kwargs):
        with self._lock:
            self.reads += 1
        return self._gateway.read_task_file(*args, **kwargs)

    def get_task_file_size(self, *args, **kwargs):
        with self._lock:
            self.sizes += 1
        return self._gateway.get_task_file_size(*args, **kwargs)

    def reset(self):
        with self._lock:
            self.reads = self.sizes = 0

    def __getattr__(self, name):
        return getattr(self._gateway, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def close(self):
        pass


def client_for(user):
    from django.test import Client

    client = Client(SERVER_NAME="127.0.0.1")
    client.force_login(user)
    return client


def portal_watcher(user, url: str, start_after: int, stop: threading.Event, latencies: list, shown: list,
                   offset: float = 0.0):
    """Polls the tail view like the page: every POLL_SECONDS, with the `after` the last answer gave."""
    from django.db import connection

    client, after = client_for(user), start_after
    time.sleep(offset)
    next_at = time.monotonic()
    try:
        while not stop.is_set():
            response = client.get(url, {"path": "stdout.txt", "after": after}, secure=True)
            received = time.time()
            page = response.content.decode()
            stamps = [float(s) for s in STAMP.findall(page)]
            latencies.extend(received - s for s in stamps)
            shown.append(len(stamps))
            found = AFTER.search(page)
            after = int(found.group(1)) if found else after
            next_at += POLL_SECONDS
            stop.wait(max(0.0, next_at - time.monotonic()))
    finally:
        connection.close()


def sdk_watcher(server, job_id: str, task_id: str, start_after: int, stop: threading.Event, latencies: list,
                shown: list):
    """Reads straight from localbatch with the SDK every POLL_SECONDS: properties, then everything new."""
    client, after = batch_client(server), start_after
    next_at = time.monotonic()
    try:
        while not stop.is_set():
            size = int(client.get_task_file_properties(job_id, task_id, "stdout.txt").content_length)
            if size > after:
                data = b"".join(client.download_task_file(job_id, task_id, "stdout.txt",
                                                          ocp_range=f"bytes={after}-{size - 1}"))
                received = time.time()
                complete = data[:data.rfind(b"\n") + 1]
                stamps = [float(line[:17]) for line in complete.split(b"\n") if line]
                latencies.extend(received - s for s in stamps)
                shown.append(len(stamps))
                after += len(complete)
            next_at += POLL_SECONDS
            stop.wait(max(0.0, next_at - time.monotonic()))
    finally:
        client.close()


def direct_watcher(account, gateway, job_id: str, task_id: str, start_after: int, stop: threading.Event,
                   offset: float):
    """One viewer without the shared tail: its own bounded read of what follows its offset, every poll."""
    from portal.logs.windows import read_window

    after = start_after
    time.sleep(offset)
    next_at = time.monotonic()
    while not stop.is_set():
        window = read_window(account, job_id, task_id, "stdout.txt", start=after, hold_partial=True,
                             gateway=gateway)
        after = window.end
        next_at += POLL_SECONDS
        stop.wait(max(0.0, next_at - time.monotonic()))


def run_threads(threads, seconds: float, stop: threading.Event) -> float:
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each measurement")
    parser.add_argument("--rate", type=int, default=1_000_000, help="bytes per second the task writes")
    parser.add_argument("--watchers", type=int, default=20)
    args = arguments(parser, smoke={"seconds": 5.0, "rate": 100_000, "watchers": 4})

    url = setup_django()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.urls import reverse

    from batchsync.accounts import gateway_for
    from portal.logs import views as log_views
    from portal.logs import windows as log_windows
    from portal.models import Job, Task

    p.header("Log viewer: following a task that writes "
             f"{args.rate / 1e6:.1f} MB/s, polled every {POLL_SECONDS:.0f} s", url)
    print(f"  cache: {settings.CACHES['default']['BACKEND'].rsplit('.', 1)[-1]} ({settings.CACHE_REASON})")
    with localbatch_server() as server:
        client = batch_client(server)
        make_pool(client, "bench-tail-pool", nodes=1)
        make_job(client, "bench-tail-job", "bench-tail-pool")
        from azure.batch import models

        total = 3 * args.seconds + 60        # three measurements, with room to spare
        script = WRITER.format(rate=args.rate, seconds=total, line=LINE_BYTES)
        client.create_task("bench-tail-job", models.BatchTaskCreateOptions(
            id="writer", command_line=f"{sys.executable.rsplit('/', 1)[0]}/python -c '{script}'"))
        wait_for(lambda: client.get_task("bench-tail-job", "writer").state == "running", timeout=60,
                 message="the writer running")
        wait_for(lambda: _size(client) > 100_000, timeout=30, message="output")

        os.environ[KEY_VARIABLE] = server.account_key
        account = p.fresh_account("bench-tail", report_others=False)
        account.account_url, account.account_name, account.key_env_var = (
            server.endpoint, server.account_name, KEY_VARIABLE)
        account.save()
        job = Job.objects.create(account=account, job_id="bench-tail-job", pool_id="bench-tail-pool",
                                 state="active", creation_time=p.now(), last_synced_at=p.now())
        task = Task.objects.create(job=job, task_id="writer", state="running", creation_time=p.now(),
                                   last_synced_at=p.now())
        user, _ = get_user_model().objects.get_or_create(username="bench-tail", defaults={"is_superuser": True})
        user.is_superuser = True
        user.save()
        tail_url = reverse("task_output_tail", args=[task.pk])

        real_gateway = gateway_for(account)
        counting = Counting(real_gateway)
        log_views.gateway_for = log_windows.gateway_for = lambda _account: counting
        client_for(user).get(tail_url, {"path": "stdout.txt", "after": _size(client)}, secure=True)   # warm-up

        # 1. Latency: the portal's tail view and a direct SDK reader, side by side on the same task.
        stop = threading.Event()
        ours, ours_shown, sdk, sdk_shown = [], [], [], []
        start_after = _size(client)
        written_from = time.time()
        elapsed = run_threads([
            threading.Thread(target=portal_watcher, args=(user, tail_url, start_after, stop, ours, ours_shown)),
            threading.Thread(target=sdk_watcher, args=(server, "bench-tail-job", "writer", start_after, stop, sdk,
                                                       sdk_shown)),
        ], args.seconds, stop)
        written = (time.time() - written_from) * args.rate / LINE_BYTES
        if not ours or not sdk:
            print("  no lines reached a watcher: the writer may have stopped early")
            return 1
        result("written → in a tail response, p50", percentile(ours, 50), "s", "≤ 3 s", percentile(ours, 50) <= 3,
               f"SDK reader p50 {percentile(sdk, 50):.2f} s")
        result("written → in a tail response, p95", percentile(ours, 95), "s", "≤ 3 s", percentile(ours, 95) <= 3,
               f"SDK reader p95 {percentile(sdk, 95):.2f} s")
        result("lines shown per poll (newest kept when behind)", sum(ours_shown) / max(1, len(ours_shown)),
               "lines", "", None,
               f"SDK reader {sum(sdk_shown) / max(1, len(sdk_shown)):.0f} lines/poll (every line); "
               f"~{written / max(1, len(ours_shown)):.0f} written per poll; {elapsed:.0f} s")

        # 2. Fan-in: 20 people following the same running task through the portal…
        counting.reset()
        stop = threading.Event()
        start_after = _size(client)
        watchers = [threading.Thread(target=portal_watcher,
                                     args=(user, tail_url, start_after, stop, [], [], i * POLL_SECONDS / args.watchers))
                    for i in range(args.watchers)]
        elapsed = run_threads(watchers, args.seconds, stop)
        portal_reads, portal_sizes = counting.reads / elapsed, counting.sizes / elapsed

        # …and the same 20 each reading straight from Batch.
        direct = Counting(real_gateway)
        stop = threading.Event()
        start_after = _size(client)
        readers = [threading.Thread(target=direct_watcher,
                                    args=(account, direct, "bench-tail-job", "writer", start_after, stop,
                                          i * POLL_SECONDS / args.watchers))
                   for i in range(args.watchers)]
        direct_elapsed = run_threads(readers, args.seconds, stop)
        result(f"{args.watchers} watchers: range reads reaching Batch", portal_reads, "reads/s", "≤ 1/s",
               portal_reads <= 1,
               f"{args.watchers} direct readers {direct.reads / direct_elapsed:.1f} reads/s "
               f"(+{direct.sizes / direct_elapsed:.1f} properties/s); portal +{portal_sizes:.2f} properties/s")
        if client.get_task("bench-tail-job", "writer").state != "completed":
            client.terminate_task("bench-tail-job", "writer")
        real_gateway.close()
        client.close()
        account.jobs.all().delete()
    return 0


def _size(client) -> int:
    try:
        return int(client.get_task_file_properties("bench-tail-job", "writer", "stdout.txt").content_length)
    except Exception:  # noqa: BLE001 — no file yet, or the task is gone: nothing written
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
