"""A 10,000-task sweep submitted through the submit form's final POST and carried to Batch by a real Celery worker on
a real Redis, with storage up, on PostgreSQL: from the POST to every task accepted by localbatch. Compared in the
same run with the portal's own transport alone (`gateway.add_tasks` of the same task specs, in this process) and
with the SDK's `create_tasks(max_concurrency=4)` of the same tasks; and with adding them one call each (a sample,
extrapolated to 10,000; the output says so).

What the timed part goes through: the POST (the real view, Django's test Client in this process), the submission
row and its audit event, the on-commit enqueue to Redis, the worker (`celery -A batchsync worker -Q submit`, its
own process) picking it up, creating the job and adding the tasks in chunks, recording progress in PostgreSQL. The
clock stops when the database says every task is accepted (the submission finalizing: its tasks all added, the job
next told to end when they complete): a trigger this run adds (and drops) on the submission table sends a NOTIFY
when the worker's update that records it commits, and this process waits for it on a LISTENing connection, so
waiting costs no queries and no CPU taken from the worker. The time until the submission is submitted (that one
more request done) is printed beside it. The tasks carry their
log-upload rules (an Azurite the script starts), as in production. The pool has no nodes, so nothing runs while
tasks are added. `--latency-ms` makes localbatch answer every request that much later (a region's round trip).
The compared add_tasks keeps as many requests in flight as the worker does (SUBMISSION_MAX_CONCURRENCY)."""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack, contextmanager

import _common as c
from submit_sweep import bare_create_tasks, batch_environment, one_call_each

RATIO_GOAL = 1.2          # POST → accepted, against the gateway's own add_tasks of the same tasks
SPEEDUP_GOAL = 100.0      # against one call each, at a region's round trip (--latency-ms 20)
CELERY = os.path.join(c.ROOT, ".venv", "bin", "celery")


def previewed(client, tasks: int) -> str:
    """Fill in “Render frames 1..N” and open its preview; the Submit button's signed payload."""
    from django.urls import reverse

    from portal.models import JobTemplate

    version = JobTemplate.objects.get(slug="render-frames").current_version()
    response = client.post(reverse("submit_form", args=["render-frames"]),
                           {"template_version": version.pk, "frames": str(tasks), "seconds_per_frame": "0"},
                           secure=True)
    page = response.content.decode()
    if f"This creates {tasks:,} tasks" not in page:
        raise RuntimeError(f"the preview did not show {tasks:,} tasks (status {response.status_code})")
    return re.search(r'name="payload" value="([^"]+)"', page).group(1)


@contextmanager
def final_notices(url: str):
    """A connection that hears, the moment it commits, every update that makes a submission finalizing, submitted
    or failed (the payload is `<public id> <state>`): a trigger and its function named for this run, dropped
    afterwards."""
    import dj_database_url
    import psycopg

    config = dj_database_url.parse(url)
    name = f"bench_final_{uuid.uuid4().hex[:8]}"
    conn = psycopg.connect(host=config["HOST"], port=config["PORT"] or 5432, user=config["USER"],
                           password=config["PASSWORD"] or None, dbname=config["NAME"], autocommit=True)
    try:
        conn.execute(f"CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN "
                     f"PERFORM pg_notify('{name}', NEW.public_id::text || ' ' || NEW.state); RETURN NEW; END $$ "
                     "LANGUAGE plpgsql")
        conn.execute(f"CREATE TRIGGER {name} AFTER UPDATE OF state ON portal_submission FOR EACH ROW "
                     "WHEN (NEW.state IN ('finalizing', 'submitted', 'failed') "
                     "AND OLD.state IS DISTINCT FROM NEW.state) "
                     f"EXECUTE FUNCTION {name}()")
        conn.execute(f"LISTEN {name}")
        yield conn
    finally:
        conn.execute(f"DROP TRIGGER IF EXISTS {name} ON portal_submission")
        conn.execute(f"DROP FUNCTION IF EXISTS {name}()")
        conn.close()


def submitted(client, notices, payload: str, tasks: int, worker: subprocess.Popen,
              log_path: str) -> tuple[float, float, str]:
    """POST the preview's Submit and wait until the worker has every task accepted, then until the submission is
    submitted: the seconds to each, and the job id."""
    from django.urls import reverse

    from portal.models import Submission

    started = time.perf_counter()
    response = client.post(reverse("submit_confirm", args=["render-frames"]), {"payload": payload, "submit": "1"},
                           secure=True)
    public_id = response["Location"].rstrip("/").rsplit("/", 1)[-1]
    accepted = finished = None
    while finished is None:
        # Notices of earlier submissions (the warm-up's) may be queued: only this one's stop the clocks.
        for notice in notices.notifies(timeout=1.0):
            notice_id, state = notice.payload.split(" ", 1)
            if notice_id != public_id:
                continue
            if accepted is None:
                accepted = time.perf_counter()   # finalizing; or submitted/failed, had finalizing been skipped
            if state in ("submitted", "failed"):
                finished = time.perf_counter()
                break
        else:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with {worker.returncode}; see {log_path}")
            if time.perf_counter() - started > 600:
                raise RuntimeError(f"not submitted after 600 s; see {log_path}")
    row = Submission.objects.filter(public_id=public_id).values("state", "tasks_added", "error_message",
                                                                 "job_id").get()
    if row["state"] != "submitted" or row["tasks_added"] != tasks:
        raise RuntimeError(f"the submission ended {row['state']} with {row['tasks_added']} tasks added: "
                           f"{row['error_message']}")
    assert accepted is not None
    return accepted - started, finished - started, row["job_id"]


def start_worker(log_path: str) -> subprocess.Popen:
    """The submit queue's worker, as production runs it (its own process; the environment setup_django set)."""
    log = open(log_path, "wb")
    return subprocess.Popen([CELERY, "-A", "batchsync", "worker", "-Q", "submit", "--pool", "solo", "--loglevel",
                             "WARNING", "--without-mingle", "--without-gossip", "--hostname", "bench-submit@%h"],
                            cwd=c.ROOT, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=10_000)
    # Five, not three: on a shared machine one slow round moves a median of three a long way.
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of the POST and the compared calls")
    parser.add_argument("--one-by-one-sample", type=int, default=300)
    parser.add_argument("--latency-ms", type=int, default=0,
                        help="added by localbatch to every request, to stand in for the network to a real account")
    args = c.arguments(parser, smoke={"tasks": 200, "rounds": 1, "one_by_one_sample": 20})

    url = c.database_url()
    c.header(f"a {args.tasks:,}-task sweep: the submit form's POST → a real worker → all tasks accepted, vs the "
             f"gateway's add_tasks and the SDK's create_tasks; database {url.split('@')[-1]}; {args.latency_ms} ms "
             "added per request")
    with c.localbatch_server() as server, c.azurite_server() as storage, ExitStack() as stack:
        # A Redis namespace of this run's own: the worker consumes only what this run enqueues.
        c.setup_django(url, **batch_environment(server), AZURE_STORAGE_CONNECTION_STRING=storage,
                       REDIS_KEY_PREFIX=f"bench-{uuid.uuid4().hex[:8]}:")
        from django.test import Client

        from batchsync.accounts import blob_store, default_account, gateway_for
        from batchsync.gateway import convert
        from batchsync.submit import expand, max_concurrency
        from portal.models import Submission

        with blob_store() as store:
            store.ensure_containers()
        notices = stack.enter_context(final_notices(url))
        log_path = os.path.join(server.data_dir, "worker.log")
        worker = start_worker(log_path)
        try:
            client = Client(SERVER_NAME="127.0.0.1")
            client.force_login(c.user_with_role("bench-form-submitter", "Submitter"))
            batch = c.batch_client(server)
            c.make_pool(batch, "demo-pool", nodes=0)
            if args.latency_ms:
                from localbatch import admin
                admin.set_faults(server.endpoint, server.account_name, server.account_key, delay_ms=args.latency_ms)
            # A first small submission warms the worker up (imports, connections) and shows it consumes.
            submitted(client, notices, previewed(client, 10), 10, worker, log_path)

            posts, ends, gateway_times, sdk_times, job_ids = [], [], [], [], []
            for round_number in range(args.rounds):
                seconds, end, job_id = submitted(client, notices, previewed(client, args.tasks), args.tasks, worker,
                                                 log_path)
                posts.append(seconds)
                ends.append(end)
                job_ids.append(job_id)
                specs = list(expand(Submission.objects.get(job_id=job_id)))
                with gateway_for(default_account()) as gateway:
                    gateway_job = c.make_job(batch, f"gateway-{round_number}", "demo-pool")
                    with c.Timer() as timer:
                        outcome = gateway.add_tasks(gateway_job, specs, max_concurrency=max_concurrency())
                    if outcome.failures:
                        raise RuntimeError(f"add_tasks refused {len(outcome.failures)} tasks")
                    gateway_times.append(timer.seconds)
                options = [convert.task_create_options(spec) for spec in specs]
                sdk_times.append(bare_create_tasks(batch, c.make_job(batch, f"sdk-{round_number}", "demo-pool"),
                                                   options))
                print(f"  round {round_number + 1}: POST → accepted {seconds:.2f} s (submitted {end:.2f} s), "
                      "gateway.add_tasks "
                      f"{gateway_times[-1]:.2f} s, SDK create_tasks {sdk_times[-1]:.2f} s; load average "
                      f"{os.getloadavg()[0]:.1f}", flush=True)

            sample = options[:args.one_by_one_sample]
            sample_seconds = one_call_each(batch, c.make_job(batch, "one-by-one", "demo-pool"), sample)
            accepted = batch.get_job_task_counts(job_ids[0]).task_counts.active
            batch.close()
        finally:
            worker.terminate()
            worker.wait(timeout=30)

    median, gateway_median, sdk_median = (statistics.median(t) for t in (posts, gateway_times, sdk_times))
    one_by_one = sample_seconds / len(sample) * args.tasks
    ratio = median / gateway_median
    c.result("POST → worker → all tasks accepted", median, "s",
             compared=f"median of {len(posts)}: {', '.join(f'{s:.2f}' for s in posts)} s; "
                      f"{args.tasks / median:.0f} tasks/s")
    c.result("... and the submission marked submitted", statistics.median(ends), "s",
             compared="one request more: the job told to end when its tasks complete")
    c.result(f"gateway.add_tasks(max_concurrency={max_concurrency()}) of the same tasks", gateway_median, "s",
             compared=f"median of {len(gateway_times)}: {', '.join(f'{s:.2f}' for s in gateway_times)} s")
    c.result("SDK create_tasks(max_concurrency=4) of the same tasks", sdk_median, "s",
             compared=f"median of {len(sdk_times)}: {', '.join(f'{s:.2f}' for s in sdk_times)} s")
    # Each round's POST and add_tasks run back to back: their ratio is less moved by the machine's load drifting.
    paired = statistics.median(post / gateway for post, gateway in zip(posts, gateway_times, strict=True))
    c.result("POST → accepted ÷ gateway.add_tasks", ratio, "x", f"<= {RATIO_GOAL}", ratio <= RATIO_GOAL,
             compared=f"÷ SDK create_tasks {median / sdk_median:.2f} x; median of each round's own ratio "
                      f"{paired:.2f} x")
    speedup = one_by_one / median
    c.result(f"one call each, extrapolated from {len(sample)}", one_by_one, "s",
             compared=f"measured {sample_seconds:.2f} s for {len(sample)} create_task calls "
                      f"({sample_seconds / len(sample) * 1000:.1f} ms each) × {args.tasks:,}")
    c.result("one call each ÷ POST → accepted", speedup, "x",
             f">= {SPEEDUP_GOAL:g} at a region's round trip (--latency-ms 20)",
             speedup >= SPEEDUP_GOAL if args.latency_ms >= 20 else None)
    c.result("  tasks in the first job", accepted, "tasks", compared=f"should be {args.tasks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
