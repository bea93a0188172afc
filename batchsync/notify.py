"""Completion e-mails: the person who submitted a job hears once, by e-mail, that it has finished.

A submission is finished when the sync has seen its job complete in Batch (all tasks done, or terminated: by a
person, by a failed task, by its time limit), or deleted, or when the submission itself failed. The e-mail carries
the job's name, its succeeded / failed / total task counts and a link to its page (to the submission's
page when no job was made).

At most once. A submission is marked (`notified_at`, a conditional UPDATE that only one caller can win) *before*
its e-mail goes out: two workers, or a beat that fires twice, never both send. The price is that an e-mail lost
after the mark (the mail server down at that moment, a worker killed mid-send) is not sent again; the failure is
logged with the job id. We chose that over at-least-once because the job page always shows the outcome, while a
second or tenth copy of the same e-mail — which sending first and marking after gives whenever two runs overlap or
a run dies between the two steps — teaches people to ignore these e-mails."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from portal.models import Job, JobState, Submission, SubmissionState

from .accounts import AccountNotConfigured, gateway_for
from .gateway import GatewayError

logger = logging.getLogger(__name__)

# E-mails sent per run at most; beat runs it every 30 s, so a backlog drains in a few runs.
NOTIFY_BATCH = 200
# Only work that finished this recently is announced: the first run after this feature is deployed (or after a
# long outage of the workers) must not e-mail people about last month's jobs.
FINISHED_WITHIN = timedelta(days=2)

# Batch's terminate reasons, in words (anything else is a person's reason, given on the terminate page).
_REASONS = {
    "AllTasksComplete": "all its tasks have finished",
    "TaskFailed": "a task failed and the job was set to stop when one does",
    "MaxWallClockTimeExpiry": "it reached its time limit",
    "SubmissionFailed": "the portal could not finish submitting it",
}


def finished_submissions(now: datetime | None = None) -> QuerySet[Submission]:
    """Submissions whose submitter has not been told yet that they finished (within FINISHED_WITHIN)."""
    since = (now or timezone.now()) - FINISHED_WITHIN
    ended_jobs = Job.objects.filter(account_id=OuterRef("account_id"), job_id=OuterRef("job_id")).filter(
        Q(state=JobState.COMPLETED, state_transition_time__gte=since) | Q(gone_at__gte=since))
    return (Submission.objects
            .filter(notified_at__isnull=True, submitted_by__isnull=False, submitted_by__is_active=True)
            .exclude(submitted_by__email="")
            .filter(Exists(ended_jobs) | Q(state=SubmissionState.FAILED, updated_at__gte=since))
            .select_related("account", "submitted_by", "template_version__template")
            .order_by("pk"))


def notify_finished_jobs(*, limit: int = NOTIFY_BATCH) -> int:
    """E-mail the submitters of finished jobs not yet told; returns how many e-mails were sent. Safe to run twice
    or side by side: each submission is claimed by one run before its e-mail is sent (see the module's notes)."""
    return sum(1 for submission in finished_submissions()[:limit] if notify_submission(submission))


def notify_submission(submission: Submission) -> bool:
    """Claim `submission` (a row `finished_submissions` returned, possibly stale) and e-mail its submitter.
    False if another run had claimed it already, or if the e-mail could not be sent (it is not tried again)."""
    job = submission.job
    # Built before the claim, so a mistake in building leaves the submission to be told by a later run.
    message = _message(submission, job, *_counts(submission, job))
    claimed = Submission.objects.filter(pk=submission.pk, notified_at__isnull=True).update(notified_at=timezone.now())
    if claimed != 1:
        return False   # another run has it
    try:
        message.send(fail_silently=False)
    except Exception:
        logger.exception("completion e-mail for submission %s (job %s) to user %s was not sent and will not be "
                         "retried", submission.pk, submission.job_id, submission.submitted_by_id)
        return False
    logger.info("completion e-mail for job %s sent to user %s", submission.job_id, submission.submitted_by_id)
    return True


def _counts(submission: Submission, job: Job | None) -> tuple[int, int, int]:
    """(succeeded, failed, total): Batch's own counts when it still has the job, else the mirror's last ones."""
    if job is None:
        return 0, 0, submission.total_tasks
    if job.gone_at is None:
        try:
            with gateway_for(submission.account) as gateway:
                counts = gateway.get_task_counts(job.job_id)
            return counts.succeeded, counts.failed, counts.active + counts.running + counts.completed
        except (GatewayError, AccountNotConfigured) as exc:
            # The mirror's counts are at most one sync old; not worth holding the e-mail back for.
            logger.info("task counts of job %s from the mirror: %s", job.job_id, exc)
    return job.task_succeeded, job.task_failed, job.task_total


def _message(submission: Submission, job: Job | None, succeeded: int, failed: int, total: int) -> EmailMessage:
    name = submission.name or (job.display_name if job is not None else "") or _display_name(submission)
    # Batch counts the tasks a terminate killed among the failed; the mirror knows which (Job.task_terminated).
    terminated = min(job.task_terminated, failed) if job is not None else 0
    failed -= terminated
    headline, why = _outcome(submission, job, failed)
    lines = [f"Your job “{name}” {headline}.", ""]
    if why:
        lines += [why, ""]
    lines += [f"Succeeded: {succeeded:,}", f"Failed:    {failed:,}"]
    if terminated:
        lines.append(f"Terminated: {terminated:,}")
    lines.append(f"Total:     {total:,}")
    if job is not None and total > succeeded + failed + terminated:
        lines.append(f"Not run:   {total - succeeded - failed - terminated:,}")
    lines += ["", f"Open it in the portal: {_link(submission, job)}", "", f"Batch job id: {submission.job_id}", "",
              "You get this e-mail because you submitted this job from the Batch portal."]
    subject = f"{headline[0].upper()}{headline[1:]}: {name} — {succeeded:,} succeeded, {failed:,} failed of {total:,}"
    return EmailMessage(subject=_one_line(subject, 200), body="\n".join(lines), to=[submission.submitted_by.email])  # type: ignore[union-attr]  # finished_submissions: has a submitter


def _outcome(submission: Submission, job: Job | None, failed: int) -> tuple[str, str]:
    """(what happened, why), in words."""
    if submission.state == SubmissionState.FAILED:
        return "could not be submitted", submission.error_message
    if job is not None and job.gone_at is not None and job.state != JobState.COMPLETED:
        return "was deleted", "It was deleted in Batch before it finished; the portal keeps what it saw of it."
    reason = job.terminate_reason if job is not None else ""
    if reason == "AllTasksComplete":
        return ("finished with failures" if failed else "has finished"), ""
    if reason in _REASONS:
        return "has stopped", f"It stopped because {_REASONS[reason]}."
    return "was terminated", f"Reason given: {reason}" if reason else ""


def _display_name(submission: Submission) -> str:
    version = submission.template_version
    return f"{version.template.name} (v{version.number})"


def _link(submission: Submission, job: Job | None) -> str:
    """The job's page; the submission's page when there is no job, as for a submission that failed before Batch
    made one: it says why."""
    base = settings.PORTAL_BASE_URL.rstrip("/")
    if job is not None:
        return base + reverse("job_detail", args=[job.pk])
    return base + reverse("submission_detail", args=[submission.public_id])


def _one_line(text: str, limit: int) -> str:
    # A header must not carry a newline (Django refuses it); a display name may contain one.
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"
