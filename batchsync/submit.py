"""Sends submissions to Batch: the only writer of a Submission's progress.

`submit_submission` is a step machine — create the job, add its tasks chunk by chunk, let the job end by itself —
that can be stopped anywhere and run again: ids derive from the submission, Batch's "already exists" is success,
and every step is recorded with a conditional update under a lease, so two runs never both make progress.
`redrive_submissions` finds what a lost message or a dead worker left unfinished."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from itertools import chain, islice
from typing import Any

from django.conf import settings
from django.db.models import Exists, F, OuterRef, Q, Subquery
from django.utils import timezone

from portal.models import UNFINISHED_SUBMISSION_STATES, Job, Submission, SubmissionState
from portal.submit.render import expand_tasks, job_spec
from portal.submit.spec import TemplateSpec
from portal.submit.values import InputFile

from .accounts import AccountNotConfigured, blob_store, gateway_for
from .celery import app
from .gateway import (
    AlreadyExists,
    AuthFailed,
    BatchGateway,
    GatewayError,
    JobSpec,
    NotFound,
    Rejected,
    TaskFailure,
    TaskSpec,
    Transient,
)
from .gateway.client import REQUESTS_AHEAD_PER_THREAD, TASKS_PER_REQUEST

logger = logging.getLogger(__name__)

# Progress is recorded every 500 tasks (five requests): the page's count is never further behind Batch than that
# and a resumed submission repeats little, yet recording (one UPDATE) costs nothing measurable. Requests do not
# pause for it (see add_tasks' on_progress).
CHUNK_SIZE = 500
# addtaskcollection requests in flight at once for one submission (settings.SUBMISSION_MAX_CONCURRENCY). Adding is
# bound by the round trip to the region: at 20 ms a request, 8 in flight add 10,000 tasks in about 1.5 s where 4
# took 2–2.7 s (bench/submit_from_post.py); a busy Batch answers 429/503, which add_tasks retries with backoff.
MAX_CONCURRENCY = 8
# Our own time budget per chunk of an add_tasks call (the SDK's create_tasks would retry a 5xx forever); below
# the lease, so a run stuck on one chunk gives up (and retries later) before another run may take over.
CHUNK_BUDGET_SECONDS = 40.0
# How long a run holds a submission without recording progress (settings.SUBMISSION_LEASE_SECONDS).
LEASE_SECONDS = 45.0
# One run stops starting chunks after this and hands over to a fresh Celery task, so no task runs for long.
RUN_BUDGET_SECONDS = 120.0
# Transient failures retried with growing waits (2 s, 4 s, … capped at 5 min, with jitter): 15 attempts are
# about 40 minutes of Batch being unreachable before the person is told it failed.
MAX_ATTEMPTS = 15
MAX_RETRY_DELAY_SECONDS = 300.0
# An unfinished submission nobody holds and nothing touched for this long is re-driven.
STALE_SECONDS = 30.0
REDRIVE_BATCH = 500
# The reason Batch records for a job stopped because its submission failed part-way.
FAILED_TERMINATE_REASON = "SubmissionFailed"
# The Celery task that runs `submit_submission` (batchsync/tasks.py), enqueued by its stable name rather than
# imported: tasks.py imports this module, not the other way round.
SUBMIT_TASK = "batchsync.submit_submission"


def lease_seconds() -> float:
    """How long a run holds a submission without recording progress; longer than one chunk or one Batch call
    with the SDK's retries. A worker that dies holding it delays the re-drive by at most this."""
    return float(getattr(settings, "SUBMISSION_LEASE_SECONDS", LEASE_SECONDS))


def chunk_size() -> int:
    return int(getattr(settings, "SUBMISSION_CHUNK_SIZE", CHUNK_SIZE))


def max_concurrency() -> int:
    return int(getattr(settings, "SUBMISSION_MAX_CONCURRENCY", MAX_CONCURRENCY))


def chunk_budget_seconds() -> float:
    return float(getattr(settings, "SUBMISSION_CHUNK_BUDGET_SECONDS", CHUNK_BUDGET_SECONDS))


class _LeaseLost(Exception):
    """Another run took the submission over (our lease had expired); it carries on, this one stops."""


class _Run:
    """One run's hold on a submission: every write checks that the lease it set is still the row's."""

    def __init__(self, submission: Submission, lease: datetime | None):
        self.submission = submission
        self.lease = lease

    def advance(self, *, release: bool = False, expect: dict[str, object] | None = None, **changes: object) -> None:
        now = timezone.now()
        new_lease = None if release else now + timedelta(seconds=lease_seconds())
        updated = (Submission.objects.filter(pk=self.submission.pk, lease_expires_at=self.lease, **(expect or {}))
                   .update(lease_expires_at=new_lease, updated_at=now, **changes))
        if updated != 1:
            raise _LeaseLost()
        self.lease = new_lease
        for name, value in changes.items():
            if not hasattr(value, "resolve_expression"):
                setattr(self.submission, name, value)


def submit_submission(submission_id: int) -> str | None:
    """Take the submission one run further; returns its state after the run, or None if it was not ours to run
    (final already, held by another run, or waiting for its next retry). Safe to call any number of times."""
    run = _claim(submission_id)
    if run is None:
        return None
    submission = run.submission
    try:
        if submission.attempts > MAX_ATTEMPTS:
            _fail(run, None, f"Batch could not be reached for a long time ({MAX_ATTEMPTS} attempts); "
                             f"{_progress(submission)}.", job_may_exist=submission.state != SubmissionState.PENDING)
            return submission.state
        with gateway_for(submission.account) as gateway:
            _drive(run, gateway)
    except AccountNotConfigured as exc:
        # This worker lacks the account's credential: an operator sets it and restarts; until then, retried.
        _retry_later(run, exc)
    except _LeaseLost:
        logger.info("submission %s: another run took over", submission.job_id)
        return None
    return submission.state


def _claim(submission_id: int) -> _Run | None:
    now = timezone.now()
    lease = now + timedelta(seconds=lease_seconds())
    claimed = (Submission.objects
               .filter(pk=submission_id, state__in=UNFINISHED_SUBMISSION_STATES)
               .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
               .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
               .update(lease_expires_at=lease, attempts=F("attempts") + 1, next_attempt_at=None, updated_at=now))
    if claimed != 1:
        return None
    submission = Submission.objects.select_related("account", "template_version").get(pk=submission_id)
    return _Run(submission, submission.lease_expires_at)


def _drive(run: _Run, gateway: BatchGateway) -> None:
    submission = run.submission
    spec = submission.template_version.parsed
    started = time.monotonic()
    try:
        if submission.state == SubmissionState.PENDING:
            # Not said by the claim: a run that cannot start (this worker lacks the account's credential) leaves the
            # submission pending, with no job that may exist to stop.
            run.advance(state=SubmissionState.CREATING_JOB)

        if submission.state in (SubmissionState.CREATING_JOB, SubmissionState.ADDING_TASKS):
            job = (job_spec(spec, job_id=submission.job_id, display_name=_display(submission))
                   if submission.state == SubmissionState.CREATING_JOB else None)
            _add_tasks(run, gateway, spec, started, job=job)
            if submission.state == SubmissionState.ADDING_TASKS:
                # Out of run time: a fresh Celery task carries on from the count just recorded.
                run.advance(release=True)
                _enqueue(submission.pk)
                return
            if submission.state != SubmissionState.FINALIZING:
                return   # failed, and recorded so

        if submission.state == SubmissionState.FINALIZING:
            try:
                gateway.set_terminate_on_complete(submission.job_id)
            except Rejected as exc:
                # The job has ended already (a person terminated it): every task was added, nothing is left to do.
                if exc.code not in ("JobCompleted", "JobTerminating"):
                    raise
            run.advance(release=True, state=SubmissionState.SUBMITTED, submitted_at=timezone.now(), error_message="")
    except (Transient, AuthFailed) as exc:
        _retry_later(run, exc)
    except (Rejected, NotFound) as exc:
        _fail(run, gateway, _refusal_message(submission, exc),
              job_may_exist=submission.state != SubmissionState.CREATING_JOB)
    except GatewayError as exc:
        # An answer we do not recognise (an unexpected status): as likely to pass as a 503, and bounded alike.
        _retry_later(run, exc)


def _add_tasks(run: _Run, gateway: BatchGateway, spec: TemplateSpec, started: float, *,
               job: JobSpec | None = None) -> None:
    """Add the submission's tasks from its recorded count on, as one stream of requests: tasks are expanded just
    ahead of the requests (no pause to build them all first, and none between chunks), and progress is recorded
    every chunk_size() tasks while the requests go on. Stops taking new tasks at a chunk boundary once the run has
    used its time. Leaves the submission finalizing (every task added), failed, or still adding (out of time).

    With `job` (a submission creating its job), the job is created first, its request on a thread of its own while
    this one signs the files' URLs and expands tasks (the first requests' at least, then as many as add_tasks
    queues ahead while the request lasts), so requests leave the moment Batch has the job; the job's owner and the
    adding state are written once they are on their way, before any answer to them is looked at (a refusal then
    stops the job, as for any submission adding tasks)."""
    submission = run.submission
    base, total, step = submission.tasks_added, submission.total_tasks, chunk_size()
    taken = 0
    out_of_time = False
    ready: list[TaskSpec] = []
    if job is None:
        tasks = expand(submission, spec, start=base)
    else:
        first = TASKS_PER_REQUEST * max_concurrency()
        most = min(total - base, first * REQUESTS_AHEAD_PER_THREAD)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="create-job") as pool:
            creating = pool.submit(_create_job, gateway, job)
            try:
                tasks = expand(submission, spec, start=base)
                while len(ready) < most and (len(ready) < first or not creating.done()):
                    more = list(islice(tasks, min(TASKS_PER_REQUEST, most - len(ready))))
                    if not more:
                        break
                    ready += more
            finally:
                creating.result()   # the job's refusal, if any, is the error to report

    def adding() -> None:
        own_job(submission)
        run.advance(state=SubmissionState.ADDING_TASKS)

    def source() -> Iterator[TaskSpec]:
        nonlocal taken, out_of_time
        for task in chain(ready, tasks):
            if taken >= total - base:
                return
            if taken % step == 0 and taken and time.monotonic() - started > RUN_BUDGET_SECONDS:
                out_of_time = True
                return
            taken += 1
            yield task

    def record(prefix: int) -> None:
        # The count reaching the total is written below together with the next state, in one update.
        if base + prefix - submission.tasks_added >= step and base + prefix < total:
            # Conditional on the count this run last wrote: a second run that got here stops at once.
            run.advance(expect={"tasks_added": submission.tasks_added}, tasks_added=base + prefix)

    # A request retried for a chunk's budget ends the run (Transient: retried later) before its lease, which only
    # progress renews, can run out; the run stops taking tasks after its budget, so the call is bounded too.
    result = gateway.add_tasks(submission.job_id, source(), on_progress=record, max_concurrency=max_concurrency(),
                               budget_seconds=RUN_BUDGET_SECONDS + chunk_budget_seconds(),
                               request_budget_seconds=chunk_budget_seconds(),
                               on_sending=adding if job is not None else None)
    if result.failures:
        _fail(run, gateway, _refused_task_message(result.failures[0]), job_may_exist=True)
        return
    if taken < total - base and not out_of_time:
        # Fewer tasks than the row counts (a retry naming a task its spec does not make): said, not looped.
        if submission.tasks_added != base + taken:
            run.advance(expect={"tasks_added": submission.tasks_added}, tasks_added=base + taken)
        _fail(run, gateway, f"The tasks to add ran out before the count recorded ({_progress(submission)}); ask an "
                            "administrator to look at this submission.", job_may_exist=True)
        return
    if base + taken == total:
        run.advance(expect={"tasks_added": submission.tasks_added}, tasks_added=total,
                    state=SubmissionState.FINALIZING)
    elif submission.tasks_added != base + taken:
        run.advance(expect={"tasks_added": submission.tasks_added}, tasks_added=base + taken)


def _create_job(gateway: BatchGateway, job: JobSpec) -> None:
    try:
        gateway.create_job(job)
    except AlreadyExists:
        pass   # an earlier run of ours created it: the id holds the submission's uuid


def expand(submission: Submission, spec: TemplateSpec | None = None, *, start: int = 0) -> Iterator[TaskSpec]:
    """The submission's task specs from the `start`-th, exactly as every run sends them."""
    spec = spec or submission.template_version.parsed
    files = _input_files(submission.inputs or {})
    return expand_tasks(
        spec, submission.parameters, files, rows=submission.csv_rows, command_line=submission.command_line or None,
        output_container_url=outputs_container_url() if spec.outputs else None,
        logs_container_url=logs_container_url(),
        job_id=submission.job_id, start=start, only=submission.task_indexes or None)


def _input_files(inputs: dict) -> dict[str, tuple[InputFile, ...]]:
    """The submission's files with the URL each task downloads them from. Uploaded files are kept as blob paths, and
    a read SAS for exactly that blob is signed here, when the tasks are built, to last as long as a task may wait
    and run; older rows kept a URL, used as it is."""
    blobs = any("blob" in item for given in inputs.values() for item in given)
    store = blob_store() if blobs else None
    try:
        def url(item: dict) -> str:
            if "blob" not in item:
                return item["url"]
            assert store is not None  # made above: some item has a blob
            return store.read_url(settings.STORAGE_INPUTS_CONTAINER, item["blob"],
                                  hours=settings.STORAGE_TASK_SAS_HOURS, snapshot=item.get("snapshot"))

        return {name: tuple(InputFile(name=item["name"], url=url(item), size=item.get("size", 0),
                                                 blob=item.get("blob")) for item in given)
                for name, given in inputs.items()}
    finally:
        if store is not None:
            store.close()


def logs_container_url() -> str | None:
    """Where tasks upload their stdout/stderr when they end (to <job id>/<task id>/logs/, as the archiver saves
    them): SUBMISSION_LOGS_CONTAINER_URL when set, else a write-only SAS for the logs container (`_upload_url`).

    None when that container cannot be reached: a rule pointing at it would make every task wait on failing
    uploads and end with a FileUploadError, so tasks go without it and the archiver saves their logs once
    storage answers."""
    return _upload_url(getattr(settings, "SUBMISSION_LOGS_CONTAINER_URL", ""), settings.STORAGE_LOGS_CONTAINER,
                       "their stdout/stderr; the archiver saves them once storage answers")


def outputs_container_url() -> str | None:
    """Where tasks upload the output files their template names (to <job id>/<task id>/outputs/, where the results
    pages list them): SUBMISSION_OUTPUTS_CONTAINER_URL when set, else a write-only SAS for the outputs container.
    None when that container cannot be reached (tasks then run without the rules, as for the logs)."""
    return _upload_url(getattr(settings, "SUBMISSION_OUTPUTS_CONTAINER_URL", ""), settings.STORAGE_OUTPUTS_CONTAINER,
                       "their output files")


def _upload_url(configured: str, container: str, what: str) -> str | None:
    """`configured` when set, else a create-and-write SAS (no read, list or delete) for `container`, signed here to
    outlast the longest job (STORAGE_TASK_SAS_HOURS), or None when the container cannot be reached. The check is
    remembered for a minute, as a submission expands its tasks slice by slice."""
    if configured:
        return configured
    key = (settings.AZURE_STORAGE_ACCOUNT_URL or settings.AZURE_STORAGE_CONNECTION_STRING, container)
    remembered = _UPLOAD_URLS.get(key)
    if remembered and remembered[0] > time.monotonic():
        return remembered[1]
    with blob_store() as store:
        try:
            reachable = store.has_container(container)
        except GatewayError:
            reachable = False
        url = store.container_write_url(container, hours=settings.STORAGE_TASK_SAS_HOURS) if reachable else None
    if url is None:
        logger.warning("container %s cannot be reached: tasks are created without the rule that uploads %s",
                       container, what)
    _UPLOAD_URLS[key] = (time.monotonic() + 60, url)
    return url


_UPLOAD_URLS: dict[tuple[str, str], tuple[float, str | None]] = {}


def _retry_later(run: _Run, exc: GatewayError | AccountNotConfigured) -> None:
    submission = run.submission
    if submission.attempts >= MAX_ATTEMPTS:
        _fail(run, None, f"Batch could not be reached for a long time ({MAX_ATTEMPTS} attempts); "
                         f"{_progress(submission)}.", job_may_exist=True)
        return
    delay = min(MAX_RETRY_DELAY_SECONDS, 2.0 ** submission.attempts) * random.uniform(0.5, 1.0)
    delay = max(delay, getattr(exc, "retry_after", None) or 0.0)
    logger.warning("submission %s: %s; retrying in %.0fs (attempt %s)", submission.job_id, exc, delay,
                   submission.attempts)
    reason = ("Batch refused the portal's credentials" if isinstance(exc, AuthFailed)
              else str(exc).rstrip(".") if isinstance(exc, AccountNotConfigured)
              else "Batch is busy or could not be reached")
    run.advance(release=True, next_attempt_at=timezone.now() + timedelta(seconds=delay),
                error_message=f"{reason}; trying again shortly ({_progress(submission)} so far).")
    _enqueue(submission.pk, countdown=delay)


def _fail(run: _Run, gateway: BatchGateway | None, message: str, *, job_may_exist: bool) -> None:
    submission = run.submission
    logger.warning("submission %s failed: %s", submission.job_id, message)
    if job_may_exist:
        message += " " + _stop_job(submission, gateway)
    run.advance(release=True, state=SubmissionState.FAILED, error_message=message)


def _stop_job(submission: Submission, gateway: BatchGateway | None) -> str:
    """Terminate a job left part-made, so that none of a failed submission runs; the words to say what happened."""
    try:
        if gateway is None:
            with gateway_for(submission.account) as own:
                own.terminate_job(submission.job_id, reason=FAILED_TERMINATE_REASON)
        else:
            gateway.terminate_job(submission.job_id, reason=FAILED_TERMINATE_REASON)
    except NotFound:
        return "No job was left in Batch."
    except Rejected:
        return f"The job {submission.job_id} had already ended."
    except (GatewayError, AccountNotConfigured):
        logger.warning("submission %s: could not stop its job", submission.job_id, exc_info=True)
        return (f"The job {submission.job_id} could not be stopped; terminate it from its page so that the tasks "
                "already added do not run.")
    return f"The job {submission.job_id} was stopped, so none of it runs; submit again once this is fixed."


def _refused_task_message(failure: TaskFailure) -> str:
    if failure.code == "RequestBodyTooLarge":
        return (f"Task {failure.id} is too large for Batch: one task may be at most 1 MB, counting its command "
                "line, files and settings. Use shorter values or fewer files.")
    reason = (failure.message or "no reason given").rstrip(". ")
    return f"Batch refused task {failure.id}: {reason}."


def _refusal_message(submission: Submission, exc: GatewayError) -> str:
    reason = (exc.message or "no reason given").rstrip(". ")
    if submission.state == SubmissionState.CREATING_JOB:
        return (f"Batch refused to create the job: {reason}. Ask the owner of the template "
                f"“{submission.template_version.template.name}” to check it.")
    if isinstance(exc, NotFound) or exc.code in ("JobCompleted", "JobTerminating", "JobBeingDeleted"):
        return (f"The job {submission.job_id} was ended or deleted in Batch before all its tasks were added "
                f"({_progress(submission)}).")
    return f"Batch refused the submission: {reason} ({_progress(submission)})."


def _progress(submission: Submission) -> str:
    return f"{submission.tasks_added:,} of {submission.total_tasks:,} tasks added"


def _display(submission: Submission) -> str:
    # The submission's name is the job's display name in Batch: the mirror's job rows then carry it to every job
    # page (lists, dashboard, failures) without a join, and Batch's own tools show the same name. Batch never
    # changes a job's display name, and neither do we: the name is set once, at submit (at most 200 of Batch's 1024
    # characters). Rows from before names had none: they keep the old description.
    if submission.name:
        return submission.name
    version = submission.template_version
    who = submission.submitted_by.get_username() if submission.submitted_by else "unknown"
    return f"{version.template.name} (v{version.number}) by {who}"


def _enqueue(submission_pk: int, countdown: float | None = None) -> None:
    # Redis is a doorbell, not the record: if this fails the re-driver finds the row.
    try:
        options: dict[str, Any] = {"countdown": countdown} if countdown else {}
        app.signature(SUBMIT_TASK).apply_async((submission_pk,), **options)
    except Exception:
        logger.warning("could not enqueue submission %s; the re-driver will", submission_pk, exc_info=True)


def redrive_submissions() -> list[int]:
    """Enqueue every unfinished submission that should be moving and is not: its retry is due, the run holding it
    stopped recording progress (a killed worker's lease ran out), or it was never picked up (its message lost
    with a Redis restart). Returns their ids. Duplicates are harmless: a run claims the row or does nothing."""
    now = timezone.now()
    stale_seconds = float(getattr(settings, "SUBMISSION_STALE_SECONDS", STALE_SECONDS))
    unfinished = Submission.objects.filter(state__in=UNFINISHED_SUBMISSION_STATES)
    due = unfinished.filter(next_attempt_at__lte=now).filter(
        Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
    abandoned = unfinished.filter(lease_expires_at__lt=now)
    lost = unfinished.filter(lease_expires_at__isnull=True, next_attempt_at__isnull=True,
                             updated_at__lt=now - timedelta(seconds=stale_seconds))
    ids = sorted({pk for queryset in (due, abandoned, lost)
                  for pk in queryset.values_list("pk", flat=True)[:REDRIVE_BATCH]})
    for pk in ids:
        try:
            # Expires before the next re-drive, so a backed-up queue does not fill with copies.
            app.signature(SUBMIT_TASK).apply_async((pk,), expires=STALE_SECONDS * 2)
        except Exception:
            logger.warning("could not enqueue submission %s; the next re-drive tries again", pk, exc_info=True)
            break
    return ids


def own_job(submission: Submission) -> None:
    """Give the submission's job its submitter and team once Batch has accepted it (as its first tasks are sent),
    so its page names who submitted it and offers them Terminate before the sync's next pass.

    Ownership is the submission's to give, so it is written here, where the job is made. If the sync has not mirrored
    the job yet, its row is made holding only its Batch id besides: every Batch field stays the sync's to write (it
    fills them on its next pass, and its upserts never touch submitter or team), and a row without times cannot move
    the sync's watermark past jobs it has not listed yet."""
    if submission.submitted_by_id is None:
        return
    owner = {"submitted_by_id": submission.submitted_by_id, "team_id": submission.team_id}
    # Two statements and no transaction, whoever writes the row first: the insert makes it already owned, and if
    # the sync made it first (with no owner) the update gives it one; a row someone owns is never re-owned.
    Job.objects.bulk_create([Job(account_id=submission.account_id, job_id=submission.job_id, **owner)],
                            ignore_conflicts=True)
    Job.objects.filter(account_id=submission.account_id, job_id=submission.job_id,
                       submitted_by__isnull=True).update(**owner)


def link_submitted_jobs(account_id: int | None = None) -> int:
    """Record who submitted each mirrored job that came from a submission, and their team, where `own_job` did not
    (a job sent before it existed); the team is what Team scope and an Operator's rights go by."""
    jobs = Job.objects.filter(submitted_by__isnull=True, job_id__startswith=Submission.JOB_ID_PREFIX)
    if account_id is not None:
        jobs = jobs.filter(account_id=account_id)
    matching = Submission.objects.filter(account_id=OuterRef("account_id"), job_id=OuterRef("job_id"),
                                         submitted_by__isnull=False)
    return jobs.filter(Exists(matching)).update(submitted_by=Subquery(matching.values("submitted_by")[:1]),
                                                team=Subquery(matching.values("team")[:1]))
