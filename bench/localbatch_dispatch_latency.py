"""How soon localbatch starts a task on an idle slot: 200 tasks added one at a time to an idle pool.

Measured on the server's clock (the task's creationTime to its executionInfo.startTime) and, as the
compared figure, as a client sees it (create_task called to a back-to-back get_task poll first
seeing the task running). A second pass polls every 20 ms instead, to show what tight polling
itself costs the server."""

import argparse
import time
from dataclasses import dataclass

import _common as c

# Tasks are added every few ms and each runs 50+ ms, so several overlap: 32 slots keep one free.
NODES, SLOTS_PER_NODE = 4, 8
GOAL_P50_MS, GOAL_P95_MS = 50, 200


@dataclass
class Pass:
    server_side: list[float]   # creationTime -> executionInfo.startTime, seconds
    observed: list[float]      # create_task called -> a poll sees running, seconds
    creates: list[float]       # the create_task call alone, seconds
    polls: int
    most_running: int


def run_pass(client, job_id: str, tasks: int, poll_interval: float) -> Pass:
    """Add `tasks` tasks one at a time, each after the previous was seen running."""
    from azure.batch import models
    observed, creates, polls = [], [], 0
    for i in range(tasks):
        task_id = f"d{i:04d}"
        started = time.perf_counter()
        client.create_task(job_id, models.BatchTaskCreateOptions(id=task_id, command_line="sleep 0.05"))
        creates.append(time.perf_counter() - started)
        while True:
            polls += 1
            if client.get_task(job_id, task_id, select=["state"]).state in ("running", "completed"):
                observed.append(time.perf_counter() - started)
                break
            if poll_interval:
                time.sleep(poll_interval)
    c.wait_for(lambda: client.get_job_task_counts(job_id).task_counts.completed == tasks,
               message=f"all tasks of {job_id} completed")
    tasks = list(client.list_tasks(job_id, select=["id", "creationTime", "executionInfo"]))
    server_side = [(t.execution_info.start_time - t.creation_time).total_seconds() for t in tasks]
    return Pass(server_side, observed, creates, polls, most_running(tasks))


def most_running(tasks) -> int:
    """The most tasks that ran at the same time (server clock): shows a slot was always free."""
    events = sorted([(t.execution_info.start_time, 1) for t in tasks]
                    + [(t.execution_info.end_time, -1) for t in tasks])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


def ms(values, pct: float) -> float:
    return c.percentile(values, pct) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=200)
    args = c.arguments(parser, smoke={"tasks": 10})
    c.header(f"localbatch: dispatch latency, {args.tasks} tasks of 'sleep 0.05' added one at a time to an idle "
             f"pool ({NODES} nodes x {SLOTS_PER_NODE} slots)")
    with c.localbatch_server() as server:
        client = c.batch_client(server)
        c.make_pool(client, "idle", nodes=NODES, slots=SLOTS_PER_NODE)
        c.make_job(client, "dispatch", "idle")
        c.make_job(client, "relaxed", "idle")
        tight = run_pass(client, "dispatch", args.tasks, 0)
        relaxed = run_pass(client, "relaxed", args.tasks, 0.02)
        client.close()

    p50, p95 = ms(tight.server_side, 50), ms(tight.server_side, 95)
    c.result("added -> running, server clock, p50", p50, "ms", f"<= {GOAL_P50_MS} ms", p50 <= GOAL_P50_MS,
             f"client-observed p50 {ms(tight.observed, 50):.1f} ms")
    c.result("added -> running, server clock, p95", p95, "ms", f"<= {GOAL_P95_MS} ms", p95 <= GOAL_P95_MS,
             f"client-observed p95 {ms(tight.observed, 95):.1f} ms")
    c.result("added -> running, server clock, max", max(tight.server_side) * 1000, "ms")
    c.result("create_task call -> poll sees running, p50", ms(tight.observed, 50), "ms",
             compared=f"the create_task call alone p50 {ms(tight.creates, 50):.1f} ms, "
                      f"p95 {ms(tight.creates, 95):.1f} ms")
    c.result("create_task call -> poll sees running, p95", ms(tight.observed, 95), "ms")
    c.result("create_task call -> poll sees running, max", max(tight.observed) * 1000, "ms",
             compared=f"{tight.polls / args.tasks:.1f} get_task polls per task, back to back")
    c.result("server clock, client polling every 20 ms, p50", ms(relaxed.server_side, 50), "ms",
             compared=f"p95 {ms(relaxed.server_side, 95):.1f} ms, max {max(relaxed.server_side) * 1000:.1f} ms")
    c.result("most tasks running at once", tight.most_running, "tasks",
             compared=f"{relaxed.most_running} in the 20 ms pass; {NODES * SLOTS_PER_NODE} slots, "
                      "so one was always idle")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
