"""What the submit pages read: the templates on offer, and the submissions a person may see."""

from __future__ import annotations

import logging
import uuid

from django.contrib.auth.models import User
from django.urls import reverse

from portal import access
from portal.models import Job, JobState, JobTemplate, Submission, SubmissionState
from portal.pagination import Page, Sort, keyset_page
from portal.submit.spec import SpecError

logger = logging.getLogger(__name__)

SUBMISSION_SORT = Sort(key="created", label="Created", field="created_at", descending=True)


def offered_template(slug: str) -> JobTemplate | None:
    """The active template `slug`, if it has a version to submit."""
    template = JobTemplate.objects.filter(slug=slug, is_active=True).first()
    if template is None or template.current_version() is None:
        return None
    return template


def offered_templates() -> list[tuple]:
    """(template, its current version, that version's spec) for every active template people can submit, by name.
    A template whose spec no longer checks is left out, with a warning in the log."""
    offered = []
    for template in JobTemplate.objects.filter(is_active=True).order_by("name"):
        version = template.current_version()
        if version is None:
            continue
        try:
            spec = version.parsed
        except SpecError:
            logger.warning("job template %s v%s has an unusable spec; not offered", template.slug, version.number)
            continue
        offered.append((template, version, spec))
    return offered


def submission_page(*, user: User, scope: str, after: str | None = None, before: str | None = None) -> Page:
    """A page of `user`'s submissions (SCOPE_MY) or, for an Operator, their teams' (SCOPE_TEAM), newest first.
    There is no "All": a submission opens only for who may act on it."""
    shown = access.scoped(Submission.objects.all(), user=user, scope=scope)
    if scope == access.SCOPE_TEAM and not access.can_act_on_teams(user):
        shown = shown.filter(submitted_by=user)
    shown = shown.select_related("template_version__template", "submitted_by")
    page = keyset_page(shown, sort=SUBMISSION_SORT, tiebreak="id", after=after, before=before)
    _with_jobs(page.items)
    return page


def _with_jobs(submissions: list[Submission]) -> None:
    """Each submission's job (Submission.job) from one query for the page rather than one per row: the list shows
    every row's outcome and links its job."""
    wanted = {(s.account_id, s.job_id) for s in submissions}
    jobs = {(job.account_id, job.job_id): job
            for job in Job.objects.filter(job_id__in=[job_id for _, job_id in wanted])
            if (job.account_id, job.job_id) in wanted}
    for submission in submissions:
        # Primes the cached_property, so the template's submission.job and .outcome ask nothing more.
        submission.__dict__["job"] = jobs.get((submission.account_id, submission.job_id))


def submission_get(*, user: User, public_id: uuid.UUID | str) -> Submission | None:
    """The submission, if `user` may see it: their own or, for an Operator, their teams'. Anyone else gets None,
    and learns nothing, not even that it exists."""
    submission = (Submission.objects.select_related("template_version__template", "submitted_by", "parent", "retry_of")
                  .filter(public_id=public_id).first())
    if submission is None or not access.can_act_on(user, submission):
        return None
    return submission


def submission_retry_url(*, user: User, submission: Submission, job: Job | None) -> str | None:
    """The confirm page of "Retry failed tasks" for `submission`, whose job is `job` (Submission.job), when it is
    offered: the job ended with failures, its template is still offered and `user` may submit it again. The
    service checks everything again."""
    if (job is None or job.gone_at is not None or job.state != JobState.COMPLETED or job.failed_task_count <= 0
            or not submission.is_final or not submission.template_version.template.is_active
            or not access.can_submit_again(user, submission)):
        return None
    return reverse("submission_retry_failed", args=[submission.public_id])


def submissions_awaiting_approval(*, user: User, limit: int = 10) -> list[Submission]:
    """The latest submissions waiting for approval that `user` may act on (their own, and for an Operator their
    teams'), newest first: the dashboard lists them, read from the partial index submission_awaiting_approval."""
    if not access.can_act_on_some_work(user):
        return []   # a Viewer's dashboard asks no query for a list that is always empty for them
    return list(Submission.objects.filter(access.can_act_on_filter(user), state=SubmissionState.AWAITING_APPROVAL)
                .select_related("submitted_by", "template_version__template").order_by("-created_at")[:limit])
