"""Failure triage page server time on PostgreSQL with 100,000 tasks of which 20,000 failed in about 30 signatures,
compared with the job list page in the same run.

Each triage shape (the default last 7 days, the last 24 hours, all time, one pool, one job) is timed against the
job list, requests interleaved; the retry confirm page of the largest group (a dry-run count per job) is measured
too. EXPLAIN ANALYZE of the triage queries shows which index each one uses."""

import argparse
import random
import re
from datetime import timedelta

import _pages as p
from _common import arguments, percentile, result, setup_django

GOAL_MS = 150.0


def signatures(n: int) -> list[tuple[str, int | None, str]]:
    """n signatures as Batch and the archiver would leave them: exit codes with error lines, wall-clock kills and
    ended tasks without, a few upload errors."""
    lines = ["ERROR: disk full on /mnt/scratch", "Traceback (most recent call last):", "Segmentation fault",
             "FileNotFoundError: [Errno 2] No such file or directory: 'input.csv'", "fatal: could not read frame",
             "java.lang.OutOfMemoryError: Java heap space", "ImportError: No module named 'numpy'",
             "error: license server unreachable", "Killed", "panic: runtime error: index out of range"]
    out = [("MaxWallClockTimeExceeded", None, ""), ("TaskEnded", None, ""), ("FileUploadContainerNotFound", 0, "")]
    code = 1
    while len(out) < n:
        for line in lines:
            if len(out) < n:
                out.append(("FailureExitCode", code, line))
        code += 1
    return out


def rows(jobs, per_job: int, failed_per_job: int, sigs, seed: int):
    """Tasks of each job: `failed_per_job` failed (signatures Zipf-like: a few big groups, a long tail), the rest
    mostly succeeded, some running or waiting; ends spread over the last 6 days."""
    rnd = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(len(sigs))]
    t_now = p.now()
    for job in jobs:
        created = t_now - timedelta(days=6, hours=1)
        for i in range(per_job):
            task_id = f"task-{i:06d}"
            end = t_now - timedelta(days=6) * rnd.random()
            duration = rnd.uniform(5, 900)
            start = end - timedelta(seconds=duration)
            if i < failed_per_job:
                code, exit_code, line = rnd.choices(sigs, weights)[0]
                values = ("completed", exit_code, "failure", "usererror", code, "The task failed", start, end,
                          duration, line)
            elif i < per_job * 0.9:
                values = ("completed", 0, "success", "", "", "", start, end, duration, "")
            elif i < per_job * 0.95:
                values = ("running", None, "", "", "", "", start, None, None, "")
            else:
                values = ("active", None, "", "", "", "", None, None, None, "")
            state, exit_code, result_, category, code, message, start_, end_, duration_, line = values
            yield (job.pk, task_id, f"Frame {i}", state, "running" if end_ else "active", end_ or start_ or created,
                   created, f"render --frame {i}", exit_code, result_, category, code, message, 0, 0, start_, end_,
                   duration_, f"tvm-{rnd.randint(1, 50):03d}" if start_ else "", job.pool_id, 1, "[]", t_now, line)


def copy(rows_) -> None:
    from django.db import connection

    with connection.cursor() as cursor, cursor.cursor.copy(
            f"COPY portal_task ({', '.join(p.TASK_COLUMNS)}) FROM STDIN") as out:
        for row in rows_:
            out.write_row(row)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--failed", type=int, default=20_000)
    parser.add_argument("--signatures", type=int, default=30)
    parser.add_argument("--requests", type=int, default=50)
    args = arguments(parser, smoke={"jobs": 5, "tasks": 2_000, "failed": 400, "signatures": 10, "requests": 3})

    url = setup_django()
    from urllib.parse import urlencode

    from django.contrib.auth import get_user_model
    from django.db.models import Count
    from django.urls import reverse

    from portal.jobs.triage import failure_triage, triage_filters_from
    from portal.models import Job, Pool, Task

    p.header(f"Failure triage: {args.tasks:,} tasks in {args.jobs} jobs, {args.failed:,} failed in about "
             f"{args.signatures} signatures, against the job list", url)
    account = p.fresh_account("bench-pages-triage")
    pools = ["gpu", "cpu"]
    for pool_id in pools:
        Pool.objects.create(account=account, pool_id=pool_id, state="active", allocation_state="steady")
    jobs = [Job.objects.create(account=account, job_id=f"bench-triage-{i:03d}", pool_id=pools[i % 2],
                               state="active", creation_time=p.now() - timedelta(days=6, hours=2),
                               last_synced_at=p.now()) for i in range(args.jobs)]
    copy(rows(jobs, args.tasks // args.jobs, args.failed // args.jobs, signatures(args.signatures), seed=1))
    p.analyze()
    client = p.signed_in_client()
    user = get_user_model().objects.get(username="bench-pages")

    ours = Task.objects.filter(job__account=account)
    failed = ours.filter(result="failure").count()
    groups = ours.filter(result="failure").values("failure_code", "exit_code", "error_line").annotate(
        n=Count("*")).count()
    print(f"  filled: {ours.count():,} tasks, {failed:,} failed in {groups} signatures")

    job_list = reverse("job_list")
    triage_url = reverse("failure_triage")
    shapes = [
        ("default: last 7 days", ""),
        ("last 24 hours", "?range=24h"),
        ("all time", "?range=all"),
        ("one pool (gpu)", "?pool=gpu"),
        ("one job", f"?range=all&job={jobs[0].pk}"),
    ]
    figures = []
    for label, query in shapes:
        triage_times, list_times = p.time_pages(client, [triage_url + query, job_list], args.requests)
        triage_p95, list_p95 = (percentile(t, 95) * 1000 for t in (triage_times, list_times))
        ratio = triage_p95 / list_p95
        met = triage_p95 <= GOAL_MS
        shown = client.get(triage_url + query).content.decode().count('class="card triage-group"')
        figures.append((label, triage_url + query, triage_p95))
        result(f"p95 triage, {label}", triage_p95, "ms", f"<= {GOAL_MS:.0f} ms",
               met, f"job list {list_p95:.1f} ms, ratio {ratio:.2f}x; {shown} groups shown")

    # The retry confirm page of the largest group: a dry-run count in every job it touches.
    filters = triage_filters_from({})
    biggest = failure_triage(user=user, filters=filters).groups[0]
    retry = reverse("failure_retry") + "?" + urlencode({**filters.params, **biggest.signature.params})
    # As an administrator, who may act on every job: each job then gets its dry run (a Viewer's are all skipped).
    admin, _ = get_user_model().objects.get_or_create(username="bench-triage-admin", defaults={"is_superuser": True})
    admin_client = type(client)(SERVER_NAME="127.0.0.1")
    admin_client.force_login(admin)
    retry_times, list_times = p.time_pages(admin_client, [retry, job_list], max(10, args.requests // 5))
    retry_p95, list_p95 = (percentile(t, 95) * 1000 for t in (retry_times, list_times))
    counted = re.search(r'id="retry-count"><strong>([^<]+)<', admin_client.get(retry).content.decode()).group(1)
    result("p95 retry confirm page, largest group", retry_p95, "ms", "(information: one dry run per job)", None,
           f"{biggest.count:,} tasks in {biggest.job_count} jobs (“{counted}”); job list {list_p95:.1f} ms")

    print("  queries of the default triage page, and EXPLAIN ANALYZE of those on portal_task:")
    sqls = p.queries_of(client, triage_url)
    print(f"    {len(sqls)} queries in all, {sum('portal_task' in s for s in sqls)} on portal_task")
    for sql in sqls:
        if "portal_task" not in sql:
            continue
        plan = p.explain(sql)
        indexes = p.indexes_in(plan)
        seq = any("Seq Scan on portal_task" in line for line in plan)
        timing = next((line.strip() for line in plan if line.startswith("Execution Time")), "")
        kind = "GROUP BY" if "GROUP BY" in sql else "examples" if "LIMIT" in sql else "other"
        print(f"    {kind:<9} {plan[0].strip()[:50]:<50} index {','.join(indexes) or '-':<34}"
              f"{' SEQ SCAN' if seq else ''} {timing}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
