"""How fast localbatch accepts tasks: 10,000 through the SDK's create_tasks, with 4 threads and with 1, and the
latency of raw create_task_collection calls of 100 tasks.

The job's pool has no nodes, so nothing runs while tasks are being added."""

import argparse

import _common as c

GOAL_PER_SECOND = 1000


def task_options(prefix: str, count: int):
    from azure.batch import models
    return [models.BatchTaskCreateOptions(id=f"{prefix}-{i:05d}", command_line="/bin/true") for i in range(count)]


def add_all(client, job_id: str, count: int, concurrency: int) -> float:
    tasks = task_options("t", count)
    with c.Timer() as timer:
        result = client.create_tasks(job_id, tasks, max_concurrency=concurrency)
    # Batch spells the status "Success"; the SDK's enum compares without case.
    added = sum(1 for r in result.result_values if r.status.lower() == "success")
    if added != count:
        raise RuntimeError(f"only {added} of {count} tasks were added to {job_id}")
    return timer.seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--raw-calls", type=int, default=20, help="create_task_collection calls of 100 tasks each")
    args = c.arguments(parser, smoke={"tasks": 300, "raw_calls": 3})
    from azure.batch import models
    c.header(f"localbatch: add {args.tasks:,} tasks through azure-batch create_tasks (pool with 0 nodes)")
    with c.localbatch_server() as server:
        client = c.batch_client(server)
        c.make_pool(client, "empty", nodes=0)
        for job in ("add-4", "add-1", "add-raw"):
            c.make_job(client, job, "empty")

        four = add_all(client, "add-4", args.tasks, 4)
        one = add_all(client, "add-1", args.tasks, 1)

        latencies = []
        for call in range(args.raw_calls):
            group = models.BatchTaskGroup(task_values=task_options(f"raw{call:02d}", 100))
            with c.Timer() as timer:
                response = client.create_task_collection("add-raw", group)
            if any(r.status.lower() != "success" for r in response.result_values):
                raise RuntimeError("a raw create_task_collection call rejected tasks")
            latencies.append(timer.seconds)
        counts = client.get_job_task_counts("add-4").task_counts
        client.close()

    rate4, rate1 = args.tasks / four, args.tasks / one
    mean = sum(latencies) / len(latencies)
    c.result("create_tasks(max_concurrency=4)", rate4, "tasks/s", f">= {GOAL_PER_SECOND}/s", rate4 >= GOAL_PER_SECOND,
             f"max_concurrency=1 {rate1:.0f} tasks/s")
    c.result("  wall time, max_concurrency=4", four, "s")
    c.result("create_tasks(max_concurrency=1)", rate1, "tasks/s")
    c.result("  wall time, max_concurrency=1", one, "s")
    c.result("create_task_collection(100 tasks), mean", mean * 1000, "ms/call",
             compared=f"p50 {c.percentile(latencies, 50) * 1000:.1f} ms, "
                      f"p95 {c.percentile(latencies, 95) * 1000:.1f} ms, "
                      f"= {100 / mean:.0f} tasks/s on one connection, {args.raw_calls} calls")
    c.result("  tasks still active after adding (job add-4)", counts.active, "tasks",
             compared=f"should be {args.tasks}: nothing ran")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
