"""One sync pass (batchsync.sync.sync_account) against a Batch that answers every request late (localbatch's
delayMs fault standing in for a real region's round trip), into the mirror on PostgreSQL.

1. 200 active jobs of 20 tasks at 100 ms per request: the pass when every job changed (a task of each ended), and
   the steady pass when none did; each compared with the same pass one request at a time (workers=1), and with
   the same pass at 0 ms (the CPU and database time it costs here), same run.
2. A 20,000-task job submitted a minute ago, 1% of its tasks changed: the incremental pass (the job's task pass
   and the whole account pass) compared with the job's full pass, same run."""

import argparse
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import _common as c

KEY_VARIABLE = "BENCH_SYNC_PASS_BATCH_KEY"
ACCOUNT_NAME = "bench-sync-pass"
PASS_GOAL = 2.0            # s, 200 jobs x 20 tasks at 100 ms
INCREMENTAL_GOAL = 5.0     # % of the big job's full pass


def fresh_account(server):
    from portal.models import BatchAccount
    os.environ[KEY_VARIABLE] = server.account_key
    c.remove_account(ACCOUNT_NAME)
    return BatchAccount.objects.create(name=ACCOUNT_NAME, account_url=server.endpoint,
                                       account_name=server.account_name, key_env_var=KEY_VARIABLE)


def set_delay(server, delay_ms: int) -> None:
    from localbatch.admin import set_faults
    set_faults(server.endpoint, server.account_name, server.account_key, delay_ms=delay_ms)


def end_one_task_per_job(client, server, job_ids: list[str], round_: int) -> None:
    """A change in every job (its task number `round_` terminated), made without the delay."""
    set_delay(server, 0)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda job_id: client.terminate_task(job_id, f"t{round_:02d}"), job_ids))
    # Batch's counts reflect the change before the pass asks for them.
    c.wait_for(lambda: client.get_job_task_counts(job_ids[-1]).task_counts.completed == round_ + 1,
               message="terminated tasks completed")


def many_jobs(args, sync) -> tuple[list[str], dict]:
    from azure.batch import models

    from portal.models import Task

    figures: dict = {}
    with c.localbatch_server() as server:
        client = c.batch_client(server, pool_maxsize=16)
        c.make_pool(client, "empty", nodes=0)
        job_ids = [c.make_job(client, f"job-{n:04d}", "empty") for n in range(args.jobs)]

        def add(job_id: str) -> None:
            client.create_tasks(job_id, [models.BatchTaskCreateOptions(id=f"t{i:02d}", command_line="/bin/true")
                                         for i in range(args.tasks_per_job)])

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(add, job_ids))
        account = fresh_account(server)
        with c.Timer() as first:
            sync.sync_account(account)   # the mirror holds every job and task, as in steady state
        print(f"  {args.jobs} jobs x {args.tasks_per_job} tasks created and mirrored (first pass at 0 ms: "
              f"{first.seconds:.2f} s)", flush=True)

        # The pass at the given delay, the same one request at a time, and the same with no delay at all: what
        # the pass costs in CPU and database time here, the floor no concurrency goes below.
        for round_, (workers, delay) in enumerate(((None, args.delay_ms), (1, args.delay_ms), (None, 0))):
            end_one_task_per_job(client, server, job_ids, round_)
            set_delay(server, delay)
            with c.Timer() as changed:
                stats = sync.sync_account(account, workers=workers)
            assert stats.tasks == args.jobs and not stats.failed, stats
            with c.Timer() as quiet:
                steady = sync.sync_account(account, workers=workers)
            assert steady.tasks == 0, steady
            name = "sequential" if workers == 1 else "concurrent" if delay else "no delay"
            # A job last listed over QUIET_RELIST ago is listed again even when quiet (slow sequential passes).
            figures[name] = (changed.seconds, stats.requests, quiet.seconds, steady.requests, steady.quiet)
        client.close()
    completed = Task.objects.filter(job__account__name=ACCOUNT_NAME, state="completed").count()
    if completed != 3 * args.jobs:
        raise SystemExit(f"MIRROR WRONG: {completed} completed tasks, expected {3 * args.jobs}")
    return job_ids, figures


def big_job(args, sync) -> dict:
    from azure.batch import models

    from portal.models import Job, Task

    with c.localbatch_server() as server:
        client = c.batch_client(server, pool_maxsize=16)
        c.make_pool(client, "empty", nodes=0)
        c.make_job(client, "big", "empty")
        submitted = time.time()
        client.create_tasks("big", [models.BatchTaskCreateOptions(id=f"t{i:06d}", command_line="/bin/true")
                                    for i in range(args.big_tasks)], max_concurrency=4)
        account = fresh_account(server)
        wait = submitted + args.submitted_ago - time.time()
        if wait > 0:
            print(f"  {args.big_tasks:,} tasks added; waiting {wait:.0f} s so they were submitted "
                  f"{args.submitted_ago:g} s before the passes", flush=True)
            time.sleep(wait)
        set_delay(server, args.delay_ms)
        with c.Timer() as full:
            first = sync.sync_account(account)   # the job's first listing: all of it
        assert first.tasks == args.big_tasks, first
        job = Job.objects.get(account=account, job_id="big")

        changed = [f"t{i:06d}" for i in range(0, args.big_tasks, round(1 / args.changed))]
        set_delay(server, 0)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda task_id: client.terminate_task("big", task_id), changed))
        c.wait_for(lambda: client.get_job_task_counts("big").task_counts.completed == len(changed),
                   message="terminated tasks completed")
        set_delay(server, args.delay_ms)
        with c.Timer() as incremental:
            second = sync.sync_account(account)
        # The same change once more, measured on the job's own task pass (no pools, job list or counts).
        more = [f"t{i + 1:06d}" for i in range(0, args.big_tasks, round(1 / args.changed))]
        set_delay(server, 0)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda task_id: client.terminate_task("big", task_id), more))
        c.wait_for(lambda: client.get_job_task_counts("big").task_counts.completed == 2 * len(changed),
                   message="terminated tasks completed")
        set_delay(server, args.delay_ms)
        with c.Timer() as job_pass:
            third = sync.sync_job_tasks(job)
        with c.Timer() as reconcile:
            fourth = sync.reconcile_job_tasks(job)
        client.close()
    done = Task.objects.filter(job=job, state="completed").count()
    if done != 2 * len(changed):
        raise SystemExit(f"MIRROR WRONG: {done} completed tasks, expected {2 * len(changed)}")
    return {"full": (full.seconds, first), "incremental": (incremental.seconds, second),
            "job_pass": (job_pass.seconds, third), "reconcile": (reconcile.seconds, fourth), "changed": len(changed)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--tasks-per-job", type=int, default=20)
    parser.add_argument("--delay-ms", type=int, default=100, help="added to every request to Batch")
    parser.add_argument("--big-tasks", type=int, default=20_000)
    parser.add_argument("--changed", type=float, default=0.01, help="share of the big job's tasks changed")
    parser.add_argument("--submitted-ago", type=float, default=60.0,
                        help="seconds between the big job's submission and the passes")
    parser.add_argument("--overlap-seconds", type=float, default=None,
                        help="override batchsync.sync.mirror.OVERLAP (default: the production value)")
    args = c.arguments(parser, smoke={"jobs": 20, "tasks_per_job": 5, "delay_ms": 20, "big_tasks": 2_000,
                                      "submitted_ago": 3.0, "overlap_seconds": 1.0})
    if args.tasks_per_job < 4:
        parser.error("--tasks-per-job must be at least 4 (three rounds of changes)")
    c.setup_django()
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("batchsync").setLevel(logging.WARNING)

    from django.conf import settings
    from django.db import connection

    from batchsync import sync

    if args.overlap_seconds is not None:
        sync.mirror.OVERLAP = timedelta(seconds=args.overlap_seconds)
    c.header(f"batchsync: one sync pass at {args.delay_ms} ms per request into {connection.vendor} "
             f"({connection.settings_dict['NAME']}), SYNC_CONCURRENCY {settings.SYNC_CONCURRENCY}, "
             f"OVERLAP {sync.mirror.OVERLAP.total_seconds():g} s")
    try:
        _, figures = many_jobs(args, sync)
        big = big_job(args, sync)
    finally:
        c.remove_account(ACCOUNT_NAME)

    work = f"{args.jobs} jobs x {args.tasks_per_job} tasks"
    (changed, changed_requests, quiet, quiet_requests, skipped) = figures["concurrent"]
    (changed_seq, changed_seq_requests, quiet_seq, quiet_seq_requests, skipped_seq) = figures["sequential"]
    floor, _, floor_quiet, _, _ = figures["no delay"]
    c.result(f"pass, every job changed ({work})", changed, "s", f"<= {PASS_GOAL:g} s", changed <= PASS_GOAL,
             f"one request at a time {changed_seq:.2f} s ({changed_seq / changed:.1f}x); "
             f"{changed_requests} vs {changed_seq_requests} requests; the same pass at 0 ms {floor:.2f} s")
    c.result(f"pass, nothing changed ({work})", quiet, "s", f"<= {PASS_GOAL:g} s", quiet <= PASS_GOAL,
             f"one request at a time {quiet_seq:.2f} s ({quiet_seq / quiet:.1f}x); "
             f"{quiet_requests} vs {quiet_seq_requests} requests; {skipped} vs {skipped_seq} jobs not listed; "
             f"at 0 ms {floor_quiet:.2f} s")
    full_s, first = big["full"]
    inc_s, second = big["incremental"]
    job_s, third = big["job_pass"]
    rec_s, fourth = big["reconcile"]
    c.result(f"big job: full pass ({args.big_tasks:,} tasks)", full_s, "s",
             compared=f"listed {first.tasks_listed:,}, wrote {first.tasks:,}, {first.requests} requests")
    share = inc_s / full_s * 100
    c.result(f"big job: account pass, {big['changed']:,} changed", share, "% full", f"<= {INCREMENTAL_GOAL:g} %",
             share <= INCREMENTAL_GOAL, f"{inc_s:.3f} s vs full pass {full_s:.2f} s; listed "
             f"{second.tasks_listed:,}, wrote {second.tasks:,}, {second.requests} requests")
    share = job_s / full_s * 100
    c.result(f"big job: its task pass, {big['changed']:,} changed", share, "% full", f"<= {INCREMENTAL_GOAL:g} %",
             share <= INCREMENTAL_GOAL, f"{job_s:.3f} s vs full pass {full_s:.2f} s; listed "
             f"{third.tasks_listed:,}, wrote {third.tasks:,}")
    c.result("big job: full reconcile, nothing changed", rec_s, "s",
             compared=f"listed {fourth.tasks_listed:,}, wrote {fourth.tasks:,}, gone {fourth.gone}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
