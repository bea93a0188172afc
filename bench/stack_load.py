"""The production stack under load: gunicorn (gunicorn.conf.py), a worker per queue, one beat, Redis, localbatch and
Azurite, started by tests/stack.py (the launcher the production-stack test uses) on a PostgreSQL database of this
benchmark's own. `--users` signed-in people (asyncio + aiohttp, each its own session) request a mix of the dashboard,
the job list, the job page and a task page for `--seconds`, twice in the same run:

  1. idle sync: a job of `--tasks` tasks, already in the mirror, on a pool with no nodes, so nothing changes and
     each sync pass finds nothing to write;
  2. busy sync: the pool resized to `--nodes` x `--slots`, so tasks run (`sleep --task-seconds`) and end all the
     time, and the sync worker brings each change in while the same load runs.

Before them the same load runs `--warmup-seconds` unmeasured; between them the same users poll the dashboard alone
for `--dashboard-seconds` (issue 14's "50 viewers").
Prints requests/s and p50/p95/p99 of each, the tasks the sync brought in during the busy phase (it must have
worked), and what each request cost each process in CPU (CpuMeter). Fails only when a request answered an error or
the sync brought nothing in."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import _common

PASSWORD = "bench stack password 7"
POOL = "bench-stack-pool"
JOB = "bench-stack-job"
GOAL_RPS, GOAL_P95_MS = 150.0, 300.0


def fresh_database(url: str) -> None:
    """Drop and create the database: a run starts from nothing (no other benchmark's rows on its dashboard)."""
    import dj_database_url
    import psycopg
    from psycopg import sql

    config = dj_database_url.parse(url)
    with psycopg.connect(host=config["HOST"], port=config["PORT"] or 5432, user=config["USER"],
                         password=config["PASSWORD"] or None, dbname="postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(config["NAME"])))


def stack_database(suffix: str) -> str:
    """A database of this benchmark's own beside the benchmark database (`<name>_<suffix>`), made afresh and migrated,
    with Django set up on it; its URL."""
    base_url = _common.database_url()
    url = base_url.rsplit("/", 1)[0] + "/" + base_url.rsplit("/", 1)[1] + "_" + suffix
    fresh_database(url)
    _common.setup_django(url)
    return url


def viewer_with_password(username: str) -> None:
    """A Viewer who signs in over HTTP with PASSWORD (PBKDF2, as the production processes check it)."""
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    user = _common.user_with_role(username, "Viewer")
    user.password = PBKDF2PasswordHasher().encode(PASSWORD, PBKDF2PasswordHasher().salt())
    user.save(update_fields=["password"])


async def sign_in(base: str, gate: asyncio.Semaphore):
    """A session of its own, signed in (a few at a time: sign-in is deliberately slow, and not what is measured)."""
    import aiohttp

    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                    timeout=aiohttp.ClientTimeout(total=120))
    async with gate:
        async with session.get(f"{base}/login/") as page:
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', await page.text())
        if not token:
            raise RuntimeError("no CSRF token on the login page")
        form = {"username": "bench-stack", "password": PASSWORD, "next": "/", "csrfmiddlewaretoken": token.group(1)}
        async with session.post(f"{base}/login/", data=form, allow_redirects=False) as answer:
            if answer.status != 302:
                raise RuntimeError(f"sign-in answered {answer.status}")
    return session


async def user_loop(session, base: str, paths: list[str], offset: int, stop_at: float, latencies: list[float],
                    errors: list[str]) -> None:
    import aiohttp

    turn = offset
    while time.monotonic() < stop_at:
        path = paths[turn % len(paths)]
        turn += 1
        started = time.monotonic()
        try:
            async with session.get(base + path, allow_redirects=False) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            errors.append(f"{path}: {type(exc).__name__}")
            continue
        if status != 200:
            errors.append(f"{path}: {status}")
            continue
        latencies.append(time.monotonic() - started)


def _process_cpu() -> dict[int, tuple[int, float]]:
    """{pid: (session id, CPU seconds so far)} of every process on the machine, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[int(entry.name)] = (int(fields[3]), (int(fields[11]) + int(fields[12])) / tick)
    return found


class CpuMeter:
    """CPU seconds spent during a phase by each of the stack's processes (each service is a session of its own:
    gunicorn's workers count for `web`), by the database's backends serving it, and by this load client; what a
    request costs the machine, whatever else runs on it (which wall-clock figures cannot say). Sampled every
    second, so a process that ends during the phase (gunicorn replaces its workers after max_requests) counts up to
    its last sample."""

    def __init__(self, stack, database_pids) -> None:
        self.sessions = {service.process.pid: name for name, service in stack.services.items() if service.process}
        self.database_pids = database_pids
        self.first: dict[int, tuple[str, float]] = {}
        self.last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()

    def _sample(self, *, baseline: bool) -> None:
        processes = _process_cpu()
        seen = {pid: (self.sessions[session], cpu) for pid, (session, cpu) in processes.items()
                if session in self.sessions}
        seen.update({pid: ("postgresql", processes[pid][1]) for pid in self.database_pids() if pid in processes})
        for pid, entry in seen.items():
            # A process first seen during the phase started during it: all of its time counts.
            self.first.setdefault(pid, entry if baseline else (entry[0], 0.0))
            self.last[pid] = entry

    def _run(self) -> None:
        from django.db import connection

        while not self._stop.wait(1.0):
            self._sample(baseline=False)
        connection.close()   # this thread's own

    def __enter__(self) -> "CpuMeter":
        self._sample(baseline=True)
        self.client_before = sum(os.times()[:2])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(baseline=False)
        self.spent: dict[str, float] = {"client": sum(os.times()[:2]) - self.client_before}
        for pid, (name, cpu) in self.last.items():
            self.spent[name] = self.spent.get(name, 0.0) + cpu - self.first[pid][1]


def database_backends() -> list[int]:
    """The PostgreSQL backends connected to this benchmark's database (the stack's processes keep theirs open)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity"
                       " WHERE datname = current_database() AND pid <> pg_backend_pid()")
        return [row[0] for row in cursor.fetchall()]


def cpu_line(spent: dict[str, float], requests: int) -> str:
    """CPU milliseconds per request by process, and roughly what two CPUs could serve at that cost."""
    if not requests:
        return "no requests"
    groups = {"web": ["web"], "workers+beat": ["worker-submit", "worker-sync", "beat"], "postgresql": ["postgresql"],
              "localbatch": ["localbatch"], "redis+azurite": ["redis", "azurite"], "load client": ["client"]}
    per = {label: sum(spent.get(name, 0.0) for name in names) * 1000 / requests for label, names in groups.items()}
    total = sum(per.values())
    parts = ", ".join(f"{label} {ms:.1f}" for label, ms in per.items())
    # An estimate: /proc counts whole clock ticks, sampled once a second.
    return f"CPU per request (ms): {parts}; total {total:.1f} ms; 2 CPUs at that cost: ≈ {2000 / total:.0f} req/s"


def load(base: str, paths: list[str], users: int, seconds: float) -> tuple[list[float], list[str], float]:
    """`users` signed-in sessions requesting `paths` in turn for `seconds`: latencies, errors, wall time."""
    latencies: list[float] = []
    errors: list[str] = []

    async def everyone() -> float:
        gate = asyncio.Semaphore(4)
        sessions = await asyncio.gather(*(sign_in(base, gate) for _ in range(users)))
        try:
            stop_at = time.monotonic() + seconds
            started = time.monotonic()
            await asyncio.gather(*(user_loop(session, base, paths, n, stop_at, latencies, errors)
                                   for n, session in enumerate(sessions)))
            return time.monotonic() - started
        finally:
            for session in sessions:
                await session.close()

    load_before = os.getloadavg()[0]
    wall = asyncio.run(everyone())
    print(f"  phase done: {len(latencies):,} requests in {wall:.1f} s; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after", flush=True)
    return latencies, errors, wall


def summary(latencies: list[float], errors: list[str], wall: float) -> dict[str, float]:
    if not latencies:
        return {"rps": 0.0, "p50": 0.0, "p95": 0.0, "p99": 0.0, "errors": float(len(errors))}
    return {"rps": len(latencies) / wall, "p50": _common.percentile(latencies, 50) * 1000,
            "p95": _common.percentile(latencies, 95) * 1000, "p99": _common.percentile(latencies, 99) * 1000,
            "errors": float(len(errors))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup-seconds", type=float, default=10.0, help="the same load, unmeasured, first")
    parser.add_argument("--dashboard-seconds", type=float, default=30.0,
                        help="the dashboard alone, the same users, before the busy phase")
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--task-seconds", type=float, default=1.0)
    parser.add_argument("--web-workers", type=int, default=3, help="gunicorn processes (WEB_CONCURRENCY)")
    args = _common.arguments(parser, smoke={"users": 4, "seconds": 8.0, "dashboard_seconds": 4.0, "warmup_seconds": 2.0,
                                                       "tasks": 300, "nodes": 2, "slots": 4})

    url = stack_database("stack")

    from batchsync.gateway import BatchGateway, BlobStore, ImageSpec, JobSpec, PoolSpec, TaskSpec
    from portal.models import Job, Task, TaskState
    from tests.stack import LOCALBATCH_KEY, LOCALBATCH_NAME, Stack

    viewer_with_password("bench-stack")

    print(f"stack_load: gunicorn ({args.web_workers} processes, gunicorn.conf.py), a worker per queue, one beat, "
          f"Redis, localbatch, Azurite; PostgreSQL {url.rsplit('@', 1)[-1]}")
    print(f"  load: {args.users} signed-in users for {args.seconds:.0f} s per phase; dashboard, job list, job page, "
          f"task page in turn; {args.tasks:,}-task job", flush=True)
    stack = Stack(Path(tempfile.mkdtemp(prefix="bench-stack-")), url, web_workers=args.web_workers,
                  worker_concurrency=2)
    try:
        stack.start("redis", "localbatch", "azurite")
        with BlobStore(stack.storage_connection_string) as store:
            store.ensure_containers()
        image = ImageSpec(publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts",
                          node_agent_sku_id="batch.node.ubuntu 22.04")
        with BatchGateway(stack.batch_url, LOCALBATCH_NAME, LOCALBATCH_KEY) as gateway:
            gateway.create_pool(PoolSpec(id=POOL, vm_size="standard_d2s_v3", image=image,
                                         task_slots_per_node=args.slots))
            gateway.create_job(JobSpec(id=JOB, pool_id=POOL))
            gateway.add_tasks(JOB, [TaskSpec(id=f"t{n:06d}", command_line=f"sleep {args.task_seconds}")
                                    for n in range(args.tasks)])
        stack.manage("collectstatic", "--noinput")
        stack.start("web", "worker-submit", "worker-sync", "beat")

        def mirrored() -> bool:
            return Task.objects.filter(job__job_id=JOB).count() >= args.tasks
        _common.wait_for(mirrored, timeout=600, interval=1, message=f"the sync to bring in {args.tasks:,} tasks")
        job = Job.objects.get(job_id=JOB)
        task = Task.objects.filter(job=job).order_by("task_id").first()
        assert task is not None
        paths = ["/", "/jobs/", f"/jobs/{job.pk}/", f"/tasks/{task.pk}/"]
        # Unmeasured: every gunicorn process has loaded its templates and opened its connections, as a server that
        # has been up a while has, so the first phase is not the only one to pay for that.
        load(stack.url, paths, args.users, args.warmup_seconds)

        with CpuMeter(stack, database_backends) as idle_cpu:
            idle_run = load(stack.url, paths, args.users, args.seconds)
        idle = summary(*idle_run)
        # Issue 14's figure: the dashboard alone, as a team's open screens poll it (idle sync).
        with CpuMeter(stack, database_backends) as dashboard_cpu:
            dashboard_run = load(stack.url, ["/"], args.users, args.dashboard_seconds)
        dashboard = summary(*dashboard_run)

        with BatchGateway(stack.batch_url, LOCALBATCH_NAME, LOCALBATCH_KEY) as gateway:
            gateway.resize_pool(POOL, dedicated=args.nodes, low_priority=0)
        # Wait for the first tasks to run, so the measured phase is all churn.
        _common.wait_for(lambda: Task.objects.filter(job=job).exclude(state=TaskState.ACTIVE).exists(),
                         timeout=120, interval=0.5, message="the first tasks to start")
        before = Task.objects.filter(job=job, state=TaskState.COMPLETED).count()
        with CpuMeter(stack, database_backends) as busy_cpu:
            busy_run = load(stack.url, paths, args.users, args.seconds)
        busy = summary(*busy_run)
        synced = Task.objects.filter(job=job, state=TaskState.COMPLETED).count() - before
    except BaseException:
        print(stack.logs(), file=sys.stderr)
        raise
    finally:
        stack.stop()

    def line(figures: dict[str, float]) -> str:
        return (f"{figures['rps']:.1f} req/s, p50 {figures['p50']:.0f} ms, p95 {figures['p95']:.0f} ms, "
                f"p99 {figures['p99']:.0f} ms, {figures['errors']:.0f} errors")

    _common.result("busy sync: requests/s", busy["rps"], "req/s", f">= {GOAL_RPS:.0f}", busy["rps"] >= GOAL_RPS,
                   f"idle sync {idle['rps']:.1f} req/s")
    for pct in ("p50", "p95", "p99"):
        goal = f"<= {GOAL_P95_MS:.0f} ms" if pct == "p95" else ""
        _common.result(f"busy sync: {pct}", busy[pct], "ms", goal,
                       busy[pct] <= GOAL_P95_MS if pct == "p95" else None, f"idle sync {idle[pct]:.0f} ms")
    _common.result("dashboard alone: requests/s", dashboard["rps"], "req/s", f">= {GOAL_RPS:.0f}",
                   dashboard["rps"] >= GOAL_RPS, f"p95 {dashboard['p95']:.0f} ms (goal <= {GOAL_P95_MS:.0f} ms)")
    print(f"  dashboard alone ({args.users} viewers, idle sync): {line(dashboard)}")
    print(f"    {cpu_line(dashboard_cpu.spent, len(dashboard_run[0]) + len(dashboard_run[1]))}")
    print(f"  idle sync: {line(idle)}")
    print(f"    {cpu_line(idle_cpu.spent, len(idle_run[0]) + len(idle_run[1]))}")
    print(f"  busy sync: {line(busy)}; the sync brought in {synced:,} completed tasks during it")
    print(f"    {cpu_line(busy_cpu.spent, len(busy_run[0]) + len(busy_run[1]))}")
    if idle["errors"] or busy["errors"] or dashboard["errors"]:
        print("FAILED: requests answered errors", file=sys.stderr)
        return 1
    if synced <= 0:
        print("FAILED: the sync brought no task in during the busy phase", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
