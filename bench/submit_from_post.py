"""A 10,000-task sweep submitted through the submit form's final POST, on PostgreSQL: from the preview page's Submit
(the real view, through Django's test Client, in this process) to every task accepted by localbatch, compared in the
same run with a bare `create_tasks(max_concurrency=4)` of the same tasks and with adding them one call each.

The form is filled in and previewed first (not timed: the person reads the preview); the timed part is the POST of
the preview's Submit. Celery runs eagerly, so the view's on-commit `submit_submission_task.delay()` drives the
submission to the end inside that POST, as a worker would right after it (the broker hop is left out: it adds
milliseconds, not seconds). Several alternating rounds, medians compared; one call each is measured on a sample and
extrapolated to 10,000, and the output says so. The pool has no nodes, so nothing runs while tasks are added."""

import argparse
import re
import sys

import _common as c
from submit_sweep import bare_create_tasks, batch_environment, one_call_each, report


def previewed(client, tasks: int) -> str:
    """Fill in “Render frames 1..N” and open its preview; the Submit button's signed payload."""
    from django.urls import reverse

    from portal.models import JobTemplate

    version = JobTemplate.objects.get(slug="render-frames").current_version()
    response = client.post(reverse("submit_form", args=["render-frames"]),
                           {"template_version": version.pk, "frames": str(tasks), "seconds_per_frame": "0"},
                           secure=True)
    page = response.content.decode()
    if f"This creates {tasks:,} tasks" not in page:
        raise RuntimeError(f"the preview did not show {tasks:,} tasks (status {response.status_code})")
    return re.search(r'name="payload" value="([^"]+)"', page).group(1)


def submit_post(client, payload: str, tasks: int) -> tuple[float, str]:
    from django.urls import reverse

    from portal.models import Submission

    with c.Timer() as timer:
        response = client.post(reverse("submit_confirm", args=["render-frames"]), {"payload": payload, "submit": "1"},
                               secure=True)
    public_id = response["Location"].rstrip("/").rsplit("/", 1)[-1]
    submission = Submission.objects.get(public_id=public_id)
    if submission.state != "submitted" or submission.tasks_added != tasks:
        raise RuntimeError(f"the POST returned with the submission {submission.state}, {submission.tasks_added} "
                           f"tasks added: {submission.error_message}")
    return timer.seconds, submission.job_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the form POST and the bare call")
    parser.add_argument("--one-by-one-sample", type=int, default=300)
    parser.add_argument("--latency-ms", type=int, default=0,
                        help="added by localbatch to every request, to stand in for the network to a real account")
    args = c.arguments(parser, smoke={"tasks": 200, "rounds": 1, "one_by_one_sample": 20})

    url = c.database_url()
    c.header(f"a {args.tasks:,}-task sweep through the submit form's final POST vs bare create_tasks vs one call "
             f"each; database {url.split('@')[-1]}; {args.latency_ms} ms added per request")
    with c.localbatch_server() as server:
        c.setup_django(url, **batch_environment(server))
        from django.test import Client

        from batchsync.celery import app
        from batchsync.gateway import convert
        from batchsync.submit import expand
        from portal.models import Submission

        app.conf.task_always_eager = True
        # ALLOWED_HOSTS holds the loopback names, not the test client's default "testserver".
        client = Client(SERVER_NAME="127.0.0.1")
        client.force_login(c.user_with_role("bench-form-submitter", "Submitter"))
        batch = c.batch_client(server)
        c.make_pool(batch, "demo-pool", nodes=0)
        if args.latency_ms:
            from localbatch import admin
            admin.set_faults(server.endpoint, server.account_name, server.account_key, delay_ms=args.latency_ms)

        posts, bares, job_ids = [], [], []
        for round_number in range(args.rounds):
            payload = previewed(client, args.tasks)
            seconds, job_id = submit_post(client, payload, args.tasks)
            posts.append(seconds)
            job_ids.append(job_id)
            options = [convert.task_create_options(spec) for spec in expand(Submission.objects.get(job_id=job_id))]
            bare_job = c.make_job(batch, f"bare-form-{round_number}", "demo-pool")
            bares.append(bare_create_tasks(batch, bare_job, options))
            print(f"  round {round_number + 1}: form POST {seconds:.2f} s, bare create_tasks {bares[-1]:.2f} s",
                  flush=True)

        sample = options[:args.one_by_one_sample]
        one_job = c.make_job(batch, "one-by-one-form", "demo-pool")
        sample_seconds = one_call_each(batch, one_job, sample)
        counts = batch.get_job_task_counts(job_ids[0]).task_counts
        batch.close()

    report("form POST", "the final POST", posts, bares, sample_seconds, len(sample), args.tasks, counts.active)
    return 0


if __name__ == "__main__":
    sys.exit(main())
