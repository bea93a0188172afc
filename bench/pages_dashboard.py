"""Dashboard server time on PostgreSQL with 1,000 jobs, 20 pools and about 1,000,000 tasks finished over the last
day, compared in the same run with the same page over the same jobs and pools with a hundredth of the tasks (about
10,000 finished), and with the page counting its chart on every request as before the rollups
(portal/dashboard/rollups.py). The two mirrors are two accounts, each page showing its own (`?account=`), timed
request by request in turn so the machine's load slows both alike.

The chart's counts are refreshed as beat does (once, untimed, before each measurement; the refresh's own time is
printed); EXPLAIN shows which index each of the page's queries uses.

The main figures render the whole page for every request (PAGE_SHARED_SECONDS and DASHBOARD_SHARED_SECONDS 0): what
the viewer who refreshes the shared page pays. With the defaults (2 s) most viewers are served that rendering; their
figure is printed beside it. The finish estimates of the page's jobs read each job's pace (its recent endings and run
times, portal/jobs/estimates.py) once per ESTIMATE_PACE_SECONDS (60 s) for every viewer; the page reading them on
every request, as before, is timed beside it (what the request that reads them again pays, once a minute)."""

import argparse
from datetime import timedelta

import _pages as p
from _common import arguments, percentile, result, setup_django

GOAL_MS = 50.0
GOAL_RATIO = 1.2


def fill(account, *, pools: int, nodes_per_pool: int, jobs: int, tasks_per_job: int, seed: int) -> None:
    """Pools with nodes in a mix of states; jobs, most of them still running; their tasks ending over 24 h."""
    import random

    from portal.models import Job, Node, Pool

    rnd = random.Random(seed)
    t_now = p.now()
    node_states = ["running"] * 6 + ["idle"] * 3 + ["starting", "starttaskfailed", "offline"]
    pool_rows = Pool.objects.bulk_create(
        Pool(account=account, pool_id=f"pool-{i:02d}", state="active", allocation_state="steady",
             vm_size="standard_d4s_v5", target_dedicated_nodes=nodes_per_pool, current_dedicated_nodes=nodes_per_pool,
             last_synced_at=t_now) for i in range(pools))
    Node.objects.bulk_create(
        Node(pool=pool, node_id=f"tvm-{i:04d}", state=rnd.choice(node_states), last_synced_at=t_now)
        for pool in pool_rows for i in range(nodes_per_pool))
    job_rows = Job.objects.bulk_create(
        Job(account=account, job_id=f"job-{i:05d}", display_name=f"Job {i}", pool_id=f"pool-{i % pools:02d}",
            # A quarter finished; the rest still running, as on a busy day.
            state="completed" if i % 4 == 0 else "active",
            creation_time=t_now - timedelta(minutes=jobs - i), last_synced_at=t_now) for i in range(jobs))
    for i, job in enumerate(job_rows):
        p.copy_tasks(job, p.task_rows(job, tasks_per_job, seed=seed + i, done=0.7,
                                      ended_within=timedelta(hours=24)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1_000)
    parser.add_argument("--pools", type=int, default=20)
    parser.add_argument("--tasks-per-job", type=int, default=1_400, help="7 in 10 of them finished in the last day")
    parser.add_argument("--requests", type=int, default=50)
    args = arguments(parser, smoke={"jobs": 20, "pools": 3, "tasks_per_job": 20, "requests": 3})

    url = setup_django()
    import time

    from django.conf import settings
    from django.db import connection

    shared_seconds = 2, 2.0   # the settings' defaults (bench/_common.py turns page sharing off for benchmarks)
    # Every request renders the whole page (see the docstring); `shared` below times the defaults.
    settings.PAGE_SHARED_SECONDS, settings.DASHBOARD_SHARED_SECONDS = 0, 0

    def both(headers: dict | None = None) -> tuple[list[float], list[float]]:
        """The big mirror's dashboard and the small one's, request by request in turn (p.time_pages), so the load
        of the machine slows both alike."""
        big_times, small_times = p.time_pages(client, [big_url, small_url], args.requests, headers)
        return big_times, small_times

    def shared() -> tuple[list[float], list[float]]:
        settings.PAGE_SHARED_SECONDS, settings.DASHBOARD_SHARED_SECONDS = shared_seconds
        try:
            return both()
        finally:
            settings.PAGE_SHARED_SECONDS, settings.DASHBOARD_SHARED_SECONDS = 0, 0

    def paced_per_request() -> tuple[list[float], list[float]]:
        """The pages reading their jobs' paces on every request (ESTIMATE_PACE_SECONDS 0), as before they were
        shared."""
        kept, settings.ESTIMATE_PACE_SECONDS = settings.ESTIMATE_PACE_SECONDS, 0
        try:
            return both()
        finally:
            settings.ESTIMATE_PACE_SECONDS = kept

    from portal.dashboard import rollups
    from portal.models import Task

    def refreshed() -> float:
        """Beat's refresh, full (the first of the day): its time, which no request pays."""
        from django.core.cache import cache
        cache.delete(rollups.CACHE_KEY)
        started = time.perf_counter()
        rollups.refresh()
        return time.perf_counter() - started

    def ended_in_a_day(account) -> int:
        return Task.objects.filter(job__account=account, end_time__gte=p.now() - timedelta(hours=24)).count()

    p.header(f"Dashboard: {args.jobs:,} jobs, {args.pools} pools, {args.jobs * args.tasks_per_job:,} tasks "
             f"against the same with {args.jobs * max(1, args.tasks_per_job // 100):,} tasks", url)
    client = p.signed_in_client()

    # Two accounts, each the dashboard of its own (`?account=`): the big mirror, and the same pools and jobs with a
    # hundredth of the tasks (only the volume of finished tasks differs), timed in turn. The small one is filled
    # first and its chart counted alone (the chart counts every account).
    small = p.fresh_account("bench-pages-dashboard-small", report_others=False)
    big = p.fresh_account("bench-pages-dashboard")   # reports other benchmarks' rows, once both are emptied
    big_url, small_url = f"/?account={big.name}", f"/?account={small.name}"
    fill(small, pools=args.pools, nodes_per_pool=10, jobs=args.jobs, tasks_per_job=max(1, args.tasks_per_job // 100),
         seed=7)
    p.analyze()
    small_ended = ended_in_a_day(small)
    small_refresh = refreshed()
    settings.DASHBOARD_ROLLUP_STALE_SECONDS = -1            # as before the rollups: counted on every request
    small_counting = p.time_pages(client, [small_url], args.requests)[0]
    settings.DASHBOARD_ROLLUP_STALE_SECONDS = 90

    fill(big, pools=args.pools, nodes_per_pool=10, jobs=args.jobs, tasks_per_job=args.tasks_per_job, seed=11)
    p.analyze()
    ended = ended_in_a_day(big)
    print(f"  filled: {ended:,} tasks ended in the last 24 h (small mirror: {small_ended:,})")
    big_refresh = refreshed()
    started = time.perf_counter()
    rollups.refresh()                                       # beat's every-30-s refresh: the recent hours only
    incremental = time.perf_counter() - started
    big_times, small_times = both()
    poll_times = p.time_pages(client, [big_url], args.requests, {"HX-Request": "true", "HX-Target": "dashboard"})[0]
    big_shared, small_shared = shared()
    big_pacing, small_pacing = paced_per_request()
    settings.DASHBOARD_ROLLUP_STALE_SECONDS = -1
    big_counting = p.time_pages(client, [big_url], args.requests)[0]
    settings.DASHBOARD_ROLLUP_STALE_SECONDS = 90

    big_p95, small_p95, poll_p95 = (percentile(t, 95) * 1000 for t in (big_times, small_times, poll_times))
    small_counting_p95, big_counting_p95 = (percentile(t, 95) * 1000 for t in (small_counting, big_counting))
    small_pacing_p95, big_pacing_p95 = (percentile(t, 95) * 1000 for t in (small_pacing, big_pacing))
    ratio = big_p95 / small_p95
    result("p95 dashboard, full page", big_p95, "ms", f"<= {GOAL_MS:.0f} ms and <= {GOAL_RATIO}x the small one",
           big_p95 <= GOAL_MS and ratio <= GOAL_RATIO,
           f"the same jobs and pools with {small_ended:,} finished tasks {small_p95:.1f} ms ({ratio:.2f}x), in turn; "
           f"reading the jobs' paces per request as before: {big_pacing_p95:.1f} ms big, {small_pacing_p95:.1f} ms "
           f"small ({big_pacing_p95 / small_pacing_p95:.2f}x), in turn; counting the chart per request as before: "
           f"{big_counting_p95:.1f} ms big, {small_counting_p95:.1f} ms small (measured alone, before the big fill)")
    result("p95 dashboard, htmx poll (every 5 s)", poll_p95, "ms", f"<= {GOAL_MS:.0f} ms", poll_p95 <= GOAL_MS,
           f"median {percentile(poll_times, 50) * 1000:.1f} ms")
    big_shared_p95, small_shared_p95 = (percentile(t, 95) * 1000 for t in (big_shared, small_shared))
    result(f"p95 dashboard, shared for {shared_seconds[0]} s (the defaults)", big_shared_p95, "ms", "", None,
           f"the small mirror {small_shared_p95:.1f} ms ({big_shared_p95 / small_shared_p95:.2f}x); "
           "every request rendering the whole page: the figures above")
    print(f"  beat's refresh of the chart (no request waits for it): full {big_refresh * 1000:.0f} ms "
          f"(small mirror {small_refresh * 1000:.0f} ms), every 30 s after that {incremental * 1000:.0f} ms")

    print("  EXPLAIN ANALYZE of the dashboard's queries (first plan line, index used, time), the jobs' paces read "
          "again (once per ESTIMATE_PACE_SECONDS: the last queries on portal_task):")
    settings.ESTIMATE_PACE_SECONDS = 0
    for sql in p.queries_of(client, big_url):
        if sql.split(" FROM ")[1].startswith(('"django_session"', '"auth_user"', '"auth_permission"')):
            continue  # the session, the signed-in user and their role: every page's, not the dashboard's
        plan = p.explain(sql)
        table = next((t for t in ("portal_task", "portal_job", "portal_node", "portal_pool", "portal_batchaccount")
                      if t in sql), "?")
        seq = [line.strip() for line in plan if "Seq Scan" in line]
        timing = next((line.strip() for line in plan if line.startswith("Execution Time")), "")
        print(f"    {table:<20} {plan[0].strip()[:52]:<52} index {','.join(p.indexes_in(plan)) or '-':<34}"
              f"{' SEQ SCAN ' + seq[0].split(' on ')[-1].split()[0] if seq else ''} {timing}")
    connection.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
