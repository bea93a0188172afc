"""A 10,000-task sweep on PostgreSQL: from `portal.submit.services.submission_create` to every task accepted by
localbatch, compared in the same run with a bare `create_tasks(max_concurrency=4)` of the same tasks and with
adding them one call each.

The submission is driven by `batchsync.submit.submit_submission` called in this process right after
`submission_create` returns, as the worker would run it (the form's pages are left out, bench/submit_from_post.py
measures those, and so is the broker hop: it adds milliseconds, not seconds). Both the sweep and the bare call are
timed over several alternating rounds, and the median is compared. One call each is measured on a sample and
extrapolated to 10,000; the output says so.
The job's pool has no nodes, so nothing runs while tasks are being added."""

import argparse
import statistics
import sys

import _common as c

RATIO_GOAL = 1.25       # sweep time ÷ bare create_tasks time, at most
SPEEDUP_GOAL = 20.0     # one call each ÷ sweep time, at least


def batch_environment(server) -> dict[str, str]:
    """The portal's default account pointed at the benchmark's localbatch."""
    return {"BATCH_ACCOUNT_URL": server.endpoint, "BATCH_ACCOUNT_NAME": server.account_name,
            "BATCH_ACCOUNT_KEY": server.account_key}


def sweep(user, version, tasks: int) -> tuple[float, str]:
    from batchsync.submit import submit_submission
    from portal.submit.services import submission_create

    with c.Timer() as timer:
        submission = submission_create(user=user, template_version=version,
                                       parameters={"frames": str(tasks), "seconds_per_frame": "0"})
        state = submit_submission(submission.pk)
    if state != "submitted":
        submission.refresh_from_db()
        raise RuntimeError(f"the sweep ended {state}: {submission.error_message}")
    return timer.seconds, submission.job_id


def bare_create_tasks(client, job_id: str, options) -> float:
    with c.Timer() as timer:
        result = client.create_tasks(job_id, options, max_concurrency=4)
    added = sum(1 for r in result.result_values if r.status.lower() == "success")   # Batch spells it "Success"
    if added != len(options):
        raise RuntimeError(f"only {added} of {len(options)} tasks were added to {job_id}")
    return timer.seconds


def one_call_each(client, job_id: str, options) -> float:
    with c.Timer() as timer:
        for option in options:
            client.create_task(job_id, option)
    return timer.seconds


def report(name: str, start: str, timings: list[float], bares: list[float], sample_seconds: float, sample: int,
           tasks: int, accepted: int) -> None:
    """The figures both submission benchmarks print: `name` (timed from `start`) against the bare create_tasks of
    the same rounds and against one call each, extrapolated from `sample` calls."""
    median, bare_median = statistics.median(timings), statistics.median(bares)
    one_by_one = sample_seconds / sample * tasks
    ratio, speedup = median / bare_median, one_by_one / median
    c.result(f"{name}: {start} → all tasks accepted", median, "s",
             compared=f"median of {len(timings)}: {', '.join(f'{s:.2f}' for s in timings)} s; "
                      f"{tasks / median:.0f} tasks/s")
    c.result("bare create_tasks(max_concurrency=4)", bare_median, "s",
             compared=f"median of {len(bares)}: {', '.join(f'{s:.2f}' for s in bares)} s")
    c.result(f"{name} ÷ bare create_tasks", ratio, "x", f"<= {RATIO_GOAL}", ratio <= RATIO_GOAL)
    c.result(f"one call each, extrapolated from {sample}", one_by_one, "s",
             compared=f"measured {sample_seconds:.2f} s for {sample} create_task calls "
                      f"({sample_seconds / sample * 1000:.1f} ms each) × {tasks:,}")
    c.result(f"one call each ÷ {name}", speedup, "x", f">= {SPEEDUP_GOAL:g}", speedup >= SPEEDUP_GOAL,
             compared=f"one call each ÷ bare create_tasks: {one_by_one / bare_median:.1f} x")
    c.result("  tasks in the first job", accepted, "tasks", compared=f"should be {tasks}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the sweep and the bare call")
    parser.add_argument("--one-by-one-sample", type=int, default=500)
    parser.add_argument("--latency-ms", type=int, default=0,
                        help="added by localbatch to every request, to stand in for the network to a real account")
    args = c.arguments(parser, smoke={"tasks": 200, "rounds": 1, "one_by_one_sample": 20})

    url = c.database_url()
    c.header(f"submission of a {args.tasks:,}-task sweep (range fan-out) vs bare create_tasks vs one call each; "
             f"database {url.split('@')[-1]}; {args.latency_ms} ms added per request")
    with c.localbatch_server() as server:
        c.setup_django(url, **batch_environment(server))

        from batchsync.gateway import convert
        from batchsync.submit import expand
        from portal.models import JobTemplate, Submission

        user = c.user_with_role("bench-submitter", "Submitter")
        version = JobTemplate.objects.get(slug="render-frames").current_version()
        client = c.batch_client(server)
        c.make_pool(client, "demo-pool", nodes=0)
        if args.latency_ms:
            from localbatch import admin
            admin.set_faults(server.endpoint, server.account_name, server.account_key, delay_ms=args.latency_ms)

        sweeps, bares, job_ids = [], [], []
        for round_number in range(args.rounds):
            seconds, job_id = sweep(user, version, args.tasks)
            sweeps.append(seconds)
            job_ids.append(job_id)
            # Exactly the task specs the submission sent, through the SDK's models.
            options = [convert.task_create_options(spec) for spec in expand(Submission.objects.get(job_id=job_id))]
            bare_job = c.make_job(client, f"bare-{round_number}", "demo-pool")
            bares.append(bare_create_tasks(client, bare_job, options))
            print(f"  round {round_number + 1}: sweep {seconds:.2f} s, bare create_tasks {bares[-1]:.2f} s",
                  flush=True)

        sample = options[:args.one_by_one_sample]
        one_job = c.make_job(client, "one-by-one", "demo-pool")
        sample_seconds = one_call_each(client, one_job, sample)
        counts = client.get_job_task_counts(job_ids[0]).task_counts
        client.close()

    report("sweep", "submission_create", sweeps, bares, sample_seconds, len(sample), args.tasks, counts.active)
    return 0


if __name__ == "__main__":
    sys.exit(main())
