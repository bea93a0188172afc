"""Shared pieces of the page benchmarks: a PostgreSQL mirror to fill, a signed-in test client, timing, EXPLAIN.

Pages are timed in-process with Django's test Client: the full middleware, view, queries and template,
without a network or a browser."""

import os
import random
import sys
import time
from datetime import datetime, timedelta, timezone

from _common import user_with_role

WARMUP = 5


def header(title: str, url: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
    safe_url = url.split("@")[-1]
    print(f"{title}\n  setup: Django test Client in-process, PostgreSQL {version} at {safe_url}; "
          f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]}")


def fresh_account(name: str, *, report_others: bool = True):
    """An empty mirror account called `name`; rows of an earlier run of the same benchmark go first.
    Other accounts in the database (another benchmark's) are left alone and reported."""
    from django.db import connection

    from portal.models import BatchAccount, Job, Pool, Task

    old = list(BatchAccount.objects.filter(name=name).values_list("pk", flat=True))
    if old:
        with connection.cursor() as cursor:
            # Raw deletes: the ORM would load 100,000 tasks to cascade them.
            cursor.execute("DELETE FROM portal_taskdependency WHERE job_id IN "
                           "(SELECT id FROM portal_job WHERE account_id = ANY(%s))", [old])
            cursor.execute("DELETE FROM portal_task WHERE job_id IN "
                           "(SELECT id FROM portal_job WHERE account_id = ANY(%s))", [old])
            cursor.execute("DELETE FROM portal_job WHERE account_id = ANY(%s)", [old])
            cursor.execute("DELETE FROM portal_node WHERE pool_id IN "
                           "(SELECT id FROM portal_pool WHERE account_id = ANY(%s))", [old])
            cursor.execute("DELETE FROM portal_pool WHERE account_id = ANY(%s)", [old])
            cursor.execute("DELETE FROM portal_batchaccount WHERE id = ANY(%s)", [old])
    others = (Job.objects.count(), Task.objects.count(), Pool.objects.count())
    if report_others and any(others):
        print(f"  note: this database also holds {others[0]:,} jobs, {others[1]:,} tasks and {others[2]:,} pools "
              "of other accounts; the dashboard shows every account's")
    return BatchAccount.objects.create(name=name, account_url="http://127.0.0.1:8089", account_name=name,
                                       last_synced_at=now())


def now() -> datetime:
    return datetime.now(timezone.utc)


TASK_COLUMNS = ("job_id", "task_id", "display_name", "state", "previous_state", "state_transition_time",
                "creation_time", "command_line", "exit_code", "result", "failure_category", "failure_code",
                "failure_message", "retry_count", "requeue_count", "start_time", "end_time", "duration_seconds",
                "node_id", "pool_id", "required_slots", "environment", "last_synced_at", "error_line")


def task_rows(job, n: int, *, seed: int = 1, done: float = 0.6, running: float = 0.02, failed: float = 0.03,
              ended_within: timedelta = timedelta(hours=6)):
    """n tasks of a job part-way through: `done` completed (of them `failed` failed), `running`
    running, the rest waiting; ends spread over the last `ended_within`. Yields rows for COPY (TASK_COLUMNS), with no
    error line (the failure triage benchmark writes its own)."""
    rnd = random.Random(seed)
    t_now = now()
    n_done, n_running = int(n * done), int(n * running)
    created = t_now - ended_within - timedelta(hours=1)
    for i in range(n):
        task_id = f"task-{i:06d}"
        if i < n_done:
            end = t_now - ended_within * rnd.random()
            duration = rnd.uniform(5, 900)
            start = end - timedelta(seconds=duration)
            bad = rnd.random() < failed
            state, result = "completed", "failure" if bad else "success"
            exit_code = rnd.choice((1, 2, 137)) if bad else 0
            failure = ("usererror", "FailureExitCode", "The task process exited with an unexpected exit code") \
                if bad else ("", "", "")
        elif i < n_done + n_running:
            start, end, duration = t_now - timedelta(seconds=rnd.uniform(1, 600)), None, None
            state, result, exit_code, failure = "running", "", None, ("", "", "")
        else:
            start = end = duration = None
            state, result, exit_code, failure = "active", "", None, ("", "", "")
        yield (job.pk, task_id, f"Frame {i}", state, "running" if end else "active", end or start or created,
               created, f"render --frame {i}", exit_code, result, *failure, 0, 0, start, end, duration,
               f"tvm-{rnd.randint(1, 50):03d}" if start else "", job.pool_id, 1, "[]", t_now, "")


def copy_tasks(job, rows) -> int:
    """COPY rows into portal_task and set the job's Batch task counts to match; returns the count."""
    from django.db import connection

    counts = {"active": 0, "running": 0, "completed": 0, "success": 0, "failure": 0}
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY portal_task ({', '.join(TASK_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                counts[row[3]] = counts.get(row[3], 0) + 1
                if row[9]:
                    counts[row[9]] += 1
    job.task_active, job.task_running, job.task_completed = counts["active"], counts["running"], counts["completed"]
    job.task_succeeded, job.task_failed = counts["success"], counts["failure"]
    job.save(update_fields=["task_active", "task_running", "task_completed", "task_succeeded", "task_failed"])
    return sum(counts[s] for s in ("active", "running", "completed"))


def analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        # Fresh statistics and visibility map, as autovacuum would leave them on a live system.
        cursor.execute("VACUUM ANALYZE portal_task")
        cursor.execute("VACUUM ANALYZE portal_job")
        cursor.execute("VACUUM ANALYZE portal_node")
        cursor.execute("VACUUM ANALYZE portal_pool")


def signed_in_client():
    """A test Client signed in as a Viewer: reading pages needs a role, and a Viewer acts on nothing."""
    from django.test import Client

    user = user_with_role("bench-pages", "Viewer")
    # ALLOWED_HOSTS holds the loopback names, not the test client's default "testserver".
    client = Client(SERVER_NAME="127.0.0.1")
    client.force_login(user)
    return client


def time_pages(client, urls: list[str], requests: int, headers: dict | None = None) -> list[list[float]]:
    """Seconds per request for `requests` GETs of each url, after a warm-up (never longer than the measurement);
    fails loudly on a non-200.

    The urls take turns request by request, so whatever else the machine is doing slows them alike
    and their ratio stays fair."""
    headers = headers or {}
    for url in urls:
        for _ in range(min(WARMUP, requests)):
            response = client.get(url, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"GET {url} answered {response.status_code}")
    times: list[list[float]] = [[] for _ in urls]
    for _ in range(requests):
        for i, url in enumerate(urls):
            started = time.perf_counter()
            client.get(url, headers=headers)
            times[i].append(time.perf_counter() - started)
    return times


def queries_of(client, url: str, headers: dict | None = None) -> list[str]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        client.get(url, headers=headers or {})
    return [q["sql"] for q in captured.captured_queries]


def indexes_in(plan: list[str]) -> list[str]:
    """Names of the indexes a plan scans ("Index Scan using x", "Bitmap Index Scan on x")."""
    import re

    scans = r"(?:Index Scan (?:Backward )?using|Index Only Scan (?:Backward )?using|Bitmap Index Scan on) (\w+)"
    return sorted(set(re.findall(scans, " ".join(plan))))


def explain(sql: str) -> list[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql)
        return [row[0] for row in cursor.fetchall()]
