"""Task sync into the mirror on PostgreSQL: the initial pass over a 100,000-task job (tasks/s), then an
incremental pass after 1% of the tasks changed, compared with the initial pass measured in the same run.

Also printed for comparison: listing the same tasks through the gateway alone (no database), and a
full reconcile pass in which nothing changed."""

import argparse
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import _common as c

KEY_VARIABLE = "BENCH_BATCH_ACCOUNT_KEY"
INITIAL_GOAL = 5_000          # tasks/s
INCREMENTAL_GOAL = 5.0        # % of the initial pass
ACCOUNT_NAME = "bench-sync-tasks"


def fresh_account(server):
    """A mirror account for this localbatch, without rows from an earlier run."""
    from portal.models import BatchAccount
    os.environ[KEY_VARIABLE] = server.account_key
    c.remove_account(ACCOUNT_NAME)
    return BatchAccount.objects.create(name=ACCOUNT_NAME, account_url=server.endpoint,
                                       account_name=server.account_name, key_env_var=KEY_VARIABLE)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--changed", type=float, default=0.01, help="share of tasks changed before the second pass")
    parser.add_argument("--overlap-seconds", type=float, default=None,
                        help="override batchsync.sync.mirror.OVERLAP (default: the production value) to iterate faster")
    args = c.arguments(parser, smoke={"tasks": 1_000, "overlap_seconds": 1.0})
    c.setup_django()

    from azure.batch import models
    from django.db import connection

    # The SDK logs every request at INFO; a benchmark of 100 pages has no use for that.
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("batchsync").setLevel(logging.WARNING)

    from batchsync import sync
    from batchsync.accounts import gateway_for
    from portal.models import Job, Task

    if args.overlap_seconds is not None:
        sync.mirror.OVERLAP = timedelta(seconds=args.overlap_seconds)
    c.header(f"batchsync: task sync of a {args.tasks:,}-task job into {connection.vendor} "
             f"({connection.settings_dict['NAME']}), OVERLAP {sync.mirror.OVERLAP.total_seconds():g} s")

    with c.localbatch_server() as server:
        client = c.batch_client(server)
        c.make_pool(client, "empty", nodes=0)   # no nodes: every task stays active
        c.make_job(client, "big", "empty")
        with c.Timer() as adding:
            client.create_tasks("big", [models.BatchTaskCreateOptions(id=f"t{i:06d}", command_line="/bin/true")
                                        for i in range(args.tasks)], max_concurrency=4)
        print(f"  added {args.tasks:,} tasks in {adding.seconds:.1f} s", flush=True)
        created_until = time.time()

        account = fresh_account(server)
        sync.sync_jobs(account)
        job = Job.objects.get(account=account, job_id="big")

        with gateway_for(account) as gateway, c.Timer() as listing:
            listed = sum(1 for _ in gateway.list_tasks("big"))
        assert listed == args.tasks

        # The incremental pass re-reads the last OVERLAP before the previous pass began (late
        # changes). For its figure to be about the changed 1% only, the initial pass starts once the
        # tasks' creation lies further back than that, as it does in steady state.
        wait = created_until + sync.mirror.OVERLAP.total_seconds() + 1 - time.time()
        if wait > 0:
            print(f"  waiting {wait:.0f} s so the creations lie more than OVERLAP before the initial pass", flush=True)
            time.sleep(wait)

        with c.Timer() as initial:
            first = sync.sync_job_tasks(job)
        assert first.tasks == args.tasks, first

        changed = [f"t{i:06d}" for i in range(0, args.tasks, round(1 / args.changed))]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda task_id: client.terminate_task("big", task_id), changed))
        c.wait_for(lambda: client.get_job_task_counts("big").task_counts.completed == len(changed),
                   message="terminated tasks completed")

        with c.Timer() as incremental:
            second = sync.sync_job_tasks(job)
        with c.Timer() as reconcile:
            third = sync.reconcile_job_tasks(job)
        client.close()

    rows = Task.objects.filter(job=job)
    stored, completed = rows.count(), rows.filter(state="completed").count()
    # The pages_* benchmarks share this database, and its 100,000 rows would weigh on their figures.
    c.remove_account(ACCOUNT_NAME)
    if stored != args.tasks or completed != len(changed):
        print(f"  MIRROR WRONG: {stored} rows, {completed} completed", file=sys.stderr)
        return 1

    rate = args.tasks / initial.seconds
    share = incremental.seconds / initial.seconds * 100
    c.result("initial sync, tasks/s", rate, "tasks/s", f">= {INITIAL_GOAL:,}", rate >= INITIAL_GOAL,
             f"{initial.seconds:.2f} s for {args.tasks:,}; gateway listing alone {listing.seconds:.2f} s "
             f"({args.tasks / listing.seconds:,.0f} tasks/s)")
    c.result(f"incremental sync, {len(changed):,} changed", incremental.seconds, "s",
             compared=f"listed {second.tasks_listed:,}, wrote {second.tasks:,}")
    c.result("incremental ÷ initial", share, "%", f"<= {INCREMENTAL_GOAL:g} %", share <= INCREMENTAL_GOAL,
             f"initial {initial.seconds:.2f} s, incremental {incremental.seconds:.3f} s, same run")
    c.result("full reconcile, nothing changed", reconcile.seconds, "s",
             compared=f"listed {third.tasks_listed:,}, wrote {third.tasks:,}, gone {third.gone}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
