"""Job page server time on PostgreSQL for a 100,000-task job with "Why is it waiting?" shown, compared with the same
page without it (settings.WAITING_REASONS off), requests interleaved in the same run.

The situation is the costliest the reasons read: the job's pool has 16 nodes whose every slot is busy with a job of
higher priority, and the job uses task dependencies, so every reason is checked (the pool, an aggregate over its
nodes, the pool's busy jobs, the failed-dependency look-up). The whole page and its htmx poll of the summary (what
a browser asks every 5 s) are each timed both ways."""

import argparse
import time

import _pages as p
from _common import arguments, percentile, result, setup_django

GOAL_RATIO = 1.1
NODES = 16


def time_both_ways(client, url: str, requests: int, headers: dict | None) -> tuple[list[float], list[float]]:
    """Seconds per request of `url` with the reasons and without, taking turns request by request so whatever else
    the machine does slows both alike."""
    from django.conf import settings

    with_times: list[float] = []
    without_times: list[float] = []
    for flag in (True, False):
        settings.WAITING_REASONS = flag
        for _ in range(min(p.WARMUP, requests)):
            if client.get(url, headers=headers or {}).status_code != 200:
                raise RuntimeError(f"GET {url} failed")
    for _ in range(requests):
        for flag, times in ((True, with_times), (False, without_times)):
            settings.WAITING_REASONS = flag
            started = time.perf_counter()
            client.get(url, headers=headers or {})
            times.append(time.perf_counter() - started)
    settings.WAITING_REASONS = True
    return with_times, without_times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=50)
    args = arguments(parser, smoke={"tasks": 2_000, "requests": 3})

    url = setup_django()
    from django.conf import settings
    from django.urls import reverse

    from portal.models import Job, Node, Pool

    p.header(f"Job page of a {args.tasks:,}-task job with 'Why is it waiting?' against without it", url)
    account = p.fresh_account("bench-pages-waiting")
    pool = Pool.objects.create(account=account, pool_id="render-pool", state="active", allocation_state="steady",
                               target_dedicated_nodes=NODES, current_dedicated_nodes=NODES, task_slots_per_node=1)
    Node.objects.bulk_create([Node(pool=pool, node_id=f"tvm-{n:03d}", state="running", running_tasks_count=1,
                                   running_task_slots_count=1) for n in range(NODES)])
    Job.objects.create(account=account, job_id="render-0412", pool_id="render-pool", state="active", priority=100,
                       task_running=NODES, creation_time=p.now(), last_synced_at=p.now())
    big = Job.objects.create(account=account, job_id="bench-waiting", pool_id="render-pool", state="active",
                             uses_task_dependencies=True, creation_time=p.now(), last_synced_at=p.now())
    p.copy_tasks(big, p.task_rows(big, args.tasks, seed=1))
    p.analyze()
    client = p.signed_in_client()

    page_url = reverse("job_detail", args=[big.pk])
    page = client.get(page_url).content.decode()
    expected = f"tasks wait: all {NODES} slots are busy with job render-0412 (priority 100 &gt; yours 0)"
    if expected not in page:
        raise RuntimeError(f"the job page does not explain why its tasks wait: {expected!r} missing")
    settings.WAITING_REASONS = False
    if "Why is it waiting?" in client.get(page_url).content.decode():
        raise RuntimeError("WAITING_REASONS off still shows the reasons")
    settings.WAITING_REASONS = True

    shapes = [("whole job page", None), ("htmx poll of the summary", {"HX-Request": "true",
                                                                      "HX-Target": "job-summary"})]
    for label, headers in shapes:
        with_times, without_times = time_both_ways(client, page_url, args.requests, headers)
        with_p95, without_p95 = (percentile(t, 95) * 1000 for t in (with_times, without_times))
        with_p50, without_p50 = (percentile(t, 50) * 1000 for t in (with_times, without_times))
        ratio = with_p95 / without_p95
        result(f"p95 {label} with the reasons", with_p95, "ms", f"<= {GOAL_RATIO}x without", ratio <= GOAL_RATIO,
               f"without the reasons {without_p95:.1f} ms, same run, interleaved; ratio {ratio:.2f}x "
               f"(medians {with_p50:.1f} vs {without_p50:.1f} ms, {with_p50 / without_p50:.2f}x)")

    print("  the reasons' queries on the big job (EXPLAIN ANALYZE: first plan line, index used, time):")
    queries_with = p.queries_of(client, page_url, shapes[1][1])
    settings.WAITING_REASONS = False
    queries_without = p.queries_of(client, page_url, shapes[1][1])
    settings.WAITING_REASONS = True
    extra = [sql for sql in queries_with if sql not in queries_without and "django_session" not in sql]
    print(f"    {len(queries_with)} queries with, {len(queries_without)} without: {len(extra)} more")
    for sql in extra:
        plan = p.explain(sql)
        timing = next((line.strip() for line in plan if line.startswith("Execution Time")), "")
        print(f"    {plan[0].strip()[:60]:<60} index {','.join(p.indexes_in(plan)) or '-':<28} {timing}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
