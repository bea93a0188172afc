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
import json
import math
import random
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

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
    durations: list[float]   # each ended task's run time (end − start), in the order of end_times


@dataclass
class Run:
    spec: Spec
    created: datetime
    snapshots: list[Snapshot] = field(default_factory=list)
    finished: datetime | None = None


# Shapes of job: task counts, pools and duration distributions of different spread (a uniform's, a lognormal's with
# sigma from 0.5 to 1.0, an exponential's, a mix of short and long tasks), on 1 to 12 slots.
JOBS = [
    Spec("lognormal-short", 160, 2, 4, "lognormal 0.8 0.5"),
    Spec("lognormal-wide", 90, 2, 2, "lognormal 1.2 0.9"),
    Spec("uniform", 80, 1, 6, "uniform 0.5 3.0"),
    Spec("lognormal-many-slots", 240, 3, 4, "lognormal 0.6 1.0"),
    Spec("long-tail", 60, 2, 3, "lognormal 2.0 0.6"),
    Spec("one-slot", 40, 1, 1, "uniform 0.3 1.2"),
    Spec("exponential", 120, 2, 3, "exponential 1.2"),
    Spec("short-and-long", 120, 2, 4, "mixed 0.5 4.0 0.2"),
    Spec("many-nodes", 200, 6, 2, "lognormal 1.0 0.7"),
    Spec("few-long", 32, 2, 2, "uniform 3.0 6.0"),
]


def durations(spec: Spec, rng: random.Random) -> list[float]:
    kind, *numbers = spec.durations.split()
    a, b = float(numbers[0]), float(numbers[1]) if len(numbers) > 1 else 0.0
    if kind == "lognormal":
        return [min(rng.lognormvariate(math.log(a), b), 15.0) for _ in range(spec.tasks)]
    if kind == "exponential":
        return [min(rng.expovariate(1 / a), 15.0) for _ in range(spec.tasks)]
    if kind == "mixed":   # "mixed SHORT LONG SHARE": a share of the tasks take LONG seconds, the rest SHORT (±20 %)
        return [(b if rng.random() < float(numbers[2]) else a) * rng.uniform(0.8, 1.2) for _ in range(spec.tasks)]
    return [rng.uniform(a, b) for _ in range(spec.tasks)]


def snapshot(client, job_id: str, seen: dict[str, tuple[datetime, float]]) -> Snapshot:
    """The job's counts and the end times and run times of its ended tasks. Only tasks that changed lately are
    listed (`seen` keeps those ended before): listing every task of ten jobs twice a second would load localbatch
    more and more as the jobs go on, and slow the very jobs being measured."""
    at = datetime.now(timezone.utc)
    counts = client.get_job_task_counts(job_id).task_counts
    since = max((end for end, _ in seen.values()), default=None)
    where = "state eq 'completed'"
    if since is not None:
        # A margin for endings written out of order: ids already seen are not counted twice.
        margin = (since - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        where += f" and stateTransitionTime ge datetime'{margin}'"
    for t in client.list_tasks(job_id, filter=where, select=["id", "state", "executionInfo"]):
        info = t.execution_info
        if t.id not in seen and info and info.end_time:
            seen[t.id] = (info.end_time, (info.end_time - info.start_time).total_seconds() if info.start_time else 0.0)
    ended = [pair for pair in seen.values() if pair[0] <= at]
    return Snapshot(at, counts.active, counts.running, counts.completed, [end for end, _ in ended],
                    [took for _, took in ended])


ACCOUNT_NAME = "bench-eta-backtest"
KEY_VARIABLE = "BENCH_ETA_BACKTEST_KEY"


def mirror_jobs(server) -> int:
    """The finished jobs into the benchmark database's mirror through the portal's own sync (batchsync), under an
    account of this benchmark's, emptied first: history for part 2 to replay. Returns the jobs mirrored."""
    import os

    from batchsync import sync
    from portal.models import BatchAccount, Job
    c.remove_account(ACCOUNT_NAME)
    os.environ[KEY_VARIABLE] = server.account_key
    account = BatchAccount.objects.create(name=ACCOUNT_NAME, account_url=server.endpoint,
                                          account_name=server.account_name, key_env_var=KEY_VARIABLE)
    sync.sync_account(account, full=True)
    return Job.objects.filter(account=account).count()


def run_jobs(rounds: list[list[Spec]], node_start: float, interval: float, seed: int,
             mirror: bool = False) -> list[Run]:
    """Each round's jobs side by side on one localbatch, round after round (so the machine's load stays that of one
    round however many jobs are measured)."""
    from azure.batch import models
    rng = random.Random(seed)
    runs: list[Run] = []
    with c.localbatch_server(node_start_seconds=node_start) as server:
        client = c.batch_client(server, pool_maxsize=20)
        for number, specs in enumerate(rounds, 1):
            started: list[Run] = []
            for spec in specs:
                pool_id, job_id = f"pool-{spec.name}", f"job-{spec.name}"
                client.create_pool(models.BatchPoolCreateOptions(
                    id=pool_id, vm_size="standard_d2s_v3", target_dedicated_nodes=spec.nodes,
                    task_slots_per_node=spec.slots,
                    task_scheduling_policy=models.BatchTaskSchedulingPolicy(node_fill_type="spread")))
                c.make_job(client, job_id, pool_id)
                started.append(Run(spec, client.get_job(job_id).creation_time))
                client.create_tasks(job_id, [
                    models.BatchTaskCreateOptions(id=f"t{i:04d}", command_line=f"/bin/sh -c 'sleep {seconds:.3f}'")
                    for i, seconds in enumerate(durations(spec, rng))], max_concurrency=4)
            print(f"  round {number}/{len(rounds)}: {len(specs)} jobs submitted ({sum(s.tasks for s in specs):,} "
                  f"tasks); snapshots every {interval} s", flush=True)

            def follow(run: Run) -> None:
                job_id = f"job-{run.spec.name}"
                seen: dict[str, tuple[datetime, float]] = {}
                while True:
                    shot = snapshot(client, job_id, seen)
                    run.snapshots.append(shot)
                    if shot.completed >= run.spec.tasks:
                        run.finished = max(shot.end_times)
                        return
                    time.sleep(interval)

            threads = [threading.Thread(target=follow, args=(run,)) for run in started]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=900)
            runs += started
            # The pools go once their round has ended: their nodes' processes would only load the next round.
            for spec in specs:
                client.begin_delete_pool(f"pool-{spec.name}")
        client.close()
        if mirror:
            print(f"  {mirror_jobs(server)} jobs synced into the mirror (account {ACCOUNT_NAME})", flush=True)
    return runs


def save(runs: list[Run], path: str) -> None:
    """The snapshots as JSON, so the estimator can be scored again on the same runs (--replay)."""
    data = [{"spec": vars(run.spec), "created": run.created.isoformat(), "finished": run.finished.isoformat()
             if run.finished else None,
             "snapshots": [{"at": shot.at.isoformat(), "active": shot.active, "running": shot.running,
                            "completed": shot.completed, "end_times": [end.isoformat() for end in shot.end_times],
                            "durations": shot.durations} for shot in run.snapshots]} for run in runs]
    with open(path, "w") as out:
        json.dump(data, out)


def load(path: str) -> list[Run]:
    with open(path) as given:
        data = json.load(given)
    when = datetime.fromisoformat
    return [Run(Spec(**item["spec"]), when(item["created"]),
                [Snapshot(when(shot["at"]), shot["active"], shot["running"], shot["completed"],
                          [when(end) for end in shot["end_times"]], shot["durations"])
                 for shot in item["snapshots"]],
                when(item["finished"]) if item["finished"] else None) for item in data]


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
                                running=shot.running, durations=shot.durations)
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
        rows = sorted(Task.objects.filter(job=job, start_time__isnull=False, end_time__isnull=False)
                      .values_list("start_time", "end_time"), key=lambda row: row[1])
        if len(rows) < 8:
            continue
        ends = [end for _, end in rows]
        took = [(end - start).total_seconds() for start, end in rows]
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
            portal = from_end_times(now=now, end_times=ends[:k], remaining=total - k, running=running,
                                    durations=took[:k])
            p = k / total
            naive = elapsed * (1 - p) / p
            error = (portal.finish_at - finished).total_seconds() / actual if portal.finish_at else math.inf
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
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each job shape (task durations drawn afresh), one round each")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every job's task count")
    parser.add_argument("--node-start-seconds", type=float, default=8.0)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between snapshots of a job")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--db-jobs", type=int, default=200, help="finished jobs of the mirror to replay (0: none)")
    parser.add_argument("--db-max-tasks", type=int, default=20_000)
    parser.add_argument("--save", metavar="FILE", help="write the localbatch runs' snapshots to FILE (JSON)")
    parser.add_argument("--replay", metavar="FILE",
                        help="score the estimator on the snapshots saved in FILE instead of running jobs")
    args = c.arguments(parser, smoke={"jobs": 3, "repeat": 1, "scale": 0.25, "node_start_seconds": 2.0, "db_jobs": 20})
    c.setup_django()
    rounds = [[Spec(f"{s.name}-{n}", max(8, round(s.tasks * args.scale)), s.nodes, s.slots, s.durations)
               for s in JOBS[:args.jobs]] for n in range(1, args.repeat + 1)]
    if args.replay:
        runs = load(args.replay)
        c.header(f"ETA backtest: {len(runs)} jobs' snapshots replayed from {args.replay}")
    else:
        c.header(f"ETA backtest: {sum(len(r) for r in rounds)} jobs in {len(rounds)} rounds on localbatch (nodes start "
                 f"in {args.node_start_seconds} s), then finished jobs of the benchmark database's mirror")
        with c.Timer() as timer:
            runs = run_jobs(rounds, args.node_start_seconds, args.interval, args.seed, mirror=args.db_jobs > 0)
        print(f"  localbatch part took {timer.seconds:.0f} s")
        if args.save:
            save(runs, args.save)
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
    if args.db_jobs and not args.replay:
        replayed, history = database_errors(args.db_jobs, args.db_max_tasks)
        print(f"  database: {replayed} finished jobs replayed")
        if replayed:
            report("database: portal's median |error|", history, goal=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
