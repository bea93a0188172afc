"""ETA backtest: how far the portal's finish estimate (portal.jobs.estimates) is from the real finish, at 25 %, 50 %
and 75 % progress, against the naive "elapsed × (1 − p) / p" on the same jobs in the same run.

Part 1, localbatch: several jobs run side by side, each on a pool of its own created with the job (so each job waits
for its nodes to start, --node-start-seconds), with varied task durations (lognormal sleeps of different medians and
spreads, and uniform ones) and slot counts. Every --interval seconds the script reads each job from Batch through the
SDK (task counts, and the end times of its ended tasks) and keeps the snapshot. After every job has ended, the
snapshot first reaching 25 / 50 / 75 % of tasks ended is fed to `portal.jobs.estimates.from_end_times` (the same
windows and the same `estimate` the job page uses), and the error is |estimated finish − actual finish| ÷ the actual
time remaining at that snapshot. The naive estimate uses the time since the job was created.

Part 2, the database: the latest finished jobs in the mirror of the benchmark database (every account's: part 1's
jobs, synced into it by batchsync, and any other history there) are replayed from their tasks' start and end times:
at the moment the k-th task ended (k = 25 / 50 / 75 % of the tasks), what the estimator would have said from the
end times up to then.

Median errors are printed for both estimators; the goal (issue 15) is ≤ 15 % at 50 % progress on part 1."""

import argparse
import math
import random
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import _common as c

PROGRESS = (0.25, 0.50, 0.75)
GOAL = 0.15


@dataclass
class Spec:
    name: str
    tasks: int
    nodes: int
    slots: int
    durations: str  # "lognormal MEDIAN SIGMA" or "uniform LOW HIGH", seconds


@dataclass
class Snapshot:
    at: datetime
    active: int
    running: int
    completed: int
    end_times: list[datetime]


@dataclass
class Run:
    spec: Spec
    created: datetime
    snapshots: list[Snapshot] = field(default_factory=list)
    finished: datetime | None = None


JOBS = [
    Spec("lognormal-short", 160, 2, 4, "lognormal 0.8 0.5"),
    Spec("lognormal-wide", 90, 2, 2, "lognormal 1.2 0.9"),
    Spec("uniform", 80, 1, 6, "uniform 0.5 3.0"),
    Spec("lognormal-many-slots", 240, 3, 4, "lognormal 0.6 1.0"),
    Spec("long-tail", 60, 2, 3, "lognormal 2.0 0.6"),
    Spec("one-slot", 40, 1, 1, "uniform 0.3 1.2"),
]


def durations(spec: Spec, rng: random.Random) -> list[float]:
    kind, a, b = spec.durations.split()
    if kind == "lognormal":
        return [min(rng.lognormvariate(math.log(float(a)), float(b)), 15.0) for _ in range(spec.tasks)]
    return [rng.uniform(float(a), float(b)) for _ in range(spec.tasks)]


def snapshot(client, job_id: str) -> Snapshot:
    at = datetime.now(timezone.utc)
    counts = client.get_job_task_counts(job_id).task_counts
    ended = [t.execution_info.end_time for t in client.list_tasks(job_id, select=["id", "state", "executionInfo"])
             if t.state == "completed" and t.execution_info and t.execution_info.end_time]
    return Snapshot(at, counts.active, counts.running, counts.completed, ended)


ACCOUNT_NAME = "bench-eta-backtest"
KEY_VARIABLE = "BENCH_ETA_BACKTEST_KEY"


def mirror_jobs(server) -> int:
    """The finished jobs into the benchmark database's mirror through the portal's own sync (batchsync), under an
    account of this benchmark's, emptied first: history for part 2 to replay. Returns the jobs mirrored."""
    import os

    from batchsync import sync
    from portal.models import BatchAccount, Job, Node, Pool, Task
    old = BatchAccount.objects.filter(name=ACCOUNT_NAME)
    Task.objects.filter(job__account__in=old).delete()
    Job.objects.filter(account__in=old).delete()
    Node.objects.filter(pool__account__in=old).delete()
    Pool.objects.filter(account__in=old).delete()
    old.delete()
    os.environ[KEY_VARIABLE] = server.account_key
    account = BatchAccount.objects.create(name=ACCOUNT_NAME, account_url=server.endpoint,
                                          account_name=server.account_name, key_env_var=KEY_VARIABLE)
    sync.sync_account(account, full=True)
    return Job.objects.filter(account=account).count()


def run_jobs(specs: list[Spec], node_start: float, interval: float, seed: int, mirror: bool = False) -> list[Run]:
    from azure.batch import models
    rng = random.Random(seed)
    runs: list[Run] = []
    with c.localbatch_server(node_start_seconds=node_start) as server:
        client = c.batch_client(server, pool_maxsize=20)
        for spec in specs:
            pool_id, job_id = f"pool-{spec.name}", f"job-{spec.name}"
            client.create_pool(models.BatchPoolCreateOptions(
                id=pool_id, vm_size="standard_d2s_v3", target_dedicated_nodes=spec.nodes,
                task_slots_per_node=spec.slots,
                task_scheduling_policy=models.BatchTaskSchedulingPolicy(node_fill_type="spread")))
            c.make_job(client, job_id, pool_id)
            runs.append(Run(spec, client.get_job(job_id).creation_time))
            client.create_tasks(job_id, [
                models.BatchTaskCreateOptions(id=f"t{i:04d}", command_line=f"/bin/sh -c 'sleep {seconds:.3f}'")
                for i, seconds in enumerate(durations(spec, rng))], max_concurrency=4)
        print(f"  {len(specs)} jobs submitted ({sum(s.tasks for s in specs):,} tasks); snapshots every {interval} s",
              flush=True)

        def follow(run: Run) -> None:
            job_id = f"job-{run.spec.name}"
            while True:
                shot = snapshot(client, job_id)
                run.snapshots.append(shot)
                if shot.completed >= run.spec.tasks:
                    run.finished = max(shot.end_times)
                    return
                time.sleep(interval)

        threads = [threading.Thread(target=follow, args=(run,)) for run in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=900)
        client.close()
        if mirror:
            print(f"  {mirror_jobs(server)} jobs synced into the mirror (account {ACCOUNT_NAME})", flush=True)
    return runs


def errors_at(run: Run) -> dict[float, tuple[float, float]]:
    """{progress: (portal's error, naive error)} as shares of the actual time remaining."""
    from portal.jobs.estimates import from_end_times
    assert run.finished is not None
    found: dict[float, tuple[float, float]] = {}
    for target in PROGRESS:
        shot = next((s for s in run.snapshots if s.completed >= target * run.spec.tasks), None)
        if shot is None or shot.completed >= run.spec.tasks:
            continue
        actual = (run.finished - shot.at).total_seconds()
        if actual <= 0:
            continue
        portal = from_end_times(now=shot.at, end_times=shot.end_times, remaining=shot.active + shot.running,
                                running=shot.running)
        p = shot.completed / run.spec.tasks
        naive = (shot.at - run.created).total_seconds() * (1 - p) / p
        # Signed here (later than the real finish: +), made absolute for the medians.
        portal_error = ((portal.finish_at - run.finished).total_seconds() / actual
                        if portal.finish_at else math.inf)
        found[target] = (portal_error, abs(naive - actual) / actual)
    return found


def database_errors(limit: int, max_tasks: int) -> tuple[int, dict[float, list[tuple[float, float]]]]:
    """Replays the latest finished jobs of the mirror; ({progress: [(portal, naive)]}, jobs replayed)."""
    from django.db.models import Q

    from portal.jobs.estimates import from_end_times
    from portal.models import Job, JobState, Task
    found: dict[float, list[tuple[float, float]]] = {p: [] for p in PROGRESS}
    # Every task ended: completed jobs, and jobs left active after their last task (Batch's default).
    jobs = (Job.objects.filter(Q(state=JobState.COMPLETED) | Q(task_active=0, task_running=0),
                               creation_time__isnull=False, task_completed__gte=8, task_completed__lte=max_tasks)
            .order_by("-creation_time")[:limit])
    replayed = 0
    for job in jobs:
        rows = list(Task.objects.filter(job=job, start_time__isnull=False, end_time__isnull=False)
                    .values_list("start_time", "end_time"))
        if len(rows) < 8:
            continue
        ends = sorted(end for _, end in rows)
        finished, total = ends[-1], len(rows)
        replayed += 1
        for target in PROGRESS:
            k = max(1, math.ceil(target * total))
            now = ends[k - 1]
            actual = (finished - now).total_seconds()
            elapsed = (now - job.creation_time).total_seconds()
            if actual <= 0 or elapsed <= 0:
                continue
            running = sum(1 for start, end in rows if start <= now < end)
            portal = from_end_times(now=now, end_times=ends[:k], remaining=total - k, running=running)
            p = k / total
            naive = elapsed * (1 - p) / p
            error = abs((portal.finish_at - finished).total_seconds()) / actual if portal.finish_at else math.inf
            found[target].append((error, abs(naive - actual) / actual))
    return replayed, found


def report(label: str, found: dict[float, list[tuple[float, float]]], goal: bool) -> None:
    for target in PROGRESS:
        pairs = found[target]
        if not pairs:
            print(f"  {label} at {target:.0%}: no job reached it")
            continue
        portal = statistics.median(abs(p) for p, _ in pairs)
        naive = statistics.median(n for _, n in pairs)
        unknown = sum(1 for p, _ in pairs if math.isinf(p))
        late = sum(1 for p, _ in pairs if p > 0)
        c.result(f"{label} at {target:.0%} ({len(pairs)} jobs, {late} late{f', {unknown} unknown' if unknown else ''})",
                 portal * 100, "%", goal=f"≤ {GOAL:.0%}" if goal and target == 0.5 else "",
                 met=portal <= GOAL if goal and target == 0.5 else None,
                 compared=f"naive elapsed×(1−p)/p {naive * 100:.1f} %")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=len(JOBS), help=f"how many of the {len(JOBS)} job shapes")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each job shape (task durations drawn afresh)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every job's task count")
    parser.add_argument("--node-start-seconds", type=float, default=8.0)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between snapshots of a job")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--db-jobs", type=int, default=200, help="finished jobs of the mirror to replay (0: none)")
    parser.add_argument("--db-max-tasks", type=int, default=20_000)
    args = c.arguments(parser, smoke={"jobs": 3, "repeat": 1, "scale": 0.25, "node_start_seconds": 2.0, "db_jobs": 20})
    c.setup_django()
    specs = [Spec(f"{s.name}-{n}", max(8, round(s.tasks * args.scale)), s.nodes, s.slots, s.durations)
             for n in range(1, args.repeat + 1) for s in JOBS[:args.jobs]]
    c.header(f"ETA backtest: {len(specs)} jobs on localbatch (nodes start in {args.node_start_seconds} s), then "
             f"finished jobs of the benchmark database's mirror")
    with c.Timer() as timer:
        runs = run_jobs(specs, args.node_start_seconds, args.interval, args.seed, mirror=args.db_jobs > 0)
    print(f"  localbatch part took {timer.seconds:.0f} s")
    found: dict[float, list[tuple[float, float]]] = {p: [] for p in PROGRESS}
    for run in runs:
        if run.finished is None:
            raise RuntimeError(f"job {run.spec.name} did not finish")
        per_job = errors_at(run)
        took = (run.finished - run.created).total_seconds()
        print(f"  {run.spec.name:<24} {run.spec.tasks:>4} tasks, {run.spec.nodes}×{run.spec.slots} slots, "
              f"{run.spec.durations:<18} {took:5.1f} s, {len(run.snapshots)} snapshots: " + ", ".join(
                  f"{p:.0%} {portal * 100:+.0f}/{naive * 100:.0f} %" for p, (portal, naive) in per_job.items())
              + " (portal, + when late / naive)")
        for target, pair in per_job.items():
            found[target].append(pair)
    report("localbatch: portal's median |error|", found, goal=True)
    if args.db_jobs:
        replayed, history = database_errors(args.db_jobs, args.db_max_tasks)
        print(f"  database: {replayed} finished jobs replayed")
        if replayed:
            report("database: portal's median |error|", history, goal=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
