"""Failure triage: failed tasks across the jobs a person can see, grouped by what they failed with, and "retry
these" for one group, job by job, after a count of what it would do."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_safe

from portal import access, selectors, services
from portal.models import JobState

# Batch cannot reactivate the tasks of a job in these states: they count as skipped, with the reason.
ENDED_JOB_STATES = (JobState.COMPLETED, JobState.TERMINATING, JobState.DELETING)


@require_safe
@login_required
def failure_triage(request):
    filters = selectors.triage_filters_from(request.GET)
    triage = selectors.failure_triage(user=request.user, filters=filters)
    groups = [(group, urlencode({**filters.params, **group.signature.params})) for group in triage.groups]
    context = {"triage": triage, "groups": groups, "filters": filters, "triage_url": reverse("failure_triage"),
               "job": selectors.triage_job(user=request.user, filters=filters),
               "choices": selectors.triage_filter_choices(user=request.user),
               "synced_at": selectors.accounts_synced_at(selectors.visible_account_ids(request.user))}
    return render(request, "triage/index.html", context)


@dataclass
class JobPart:
    """One job's share of a group: its failed tasks and what a retry does (or would do) with them."""

    job: object
    task_ids: list[str]
    why_skipped: str = ""          # "" when these tasks are retried
    outcome: services.RetryOutcome | None = None

    @property
    def count(self) -> int:
        return len(self.task_ids)


@dataclass
class RetryPlan:
    parts: list[JobPart] = field(default_factory=list)
    gone: int = 0                  # tasks Batch deleted: nothing left to retry

    def _parts(self, why: str) -> list[JobPart]:
        return [part for part in self.parts if part.why_skipped == why]

    @property
    def retried_parts(self) -> list[JobPart]:
        return self._parts("")

    @property
    def ended_parts(self) -> list[JobPart]:
        return self._parts("ended")

    @property
    def not_yours_parts(self) -> list[JobPart]:
        return self._parts("not yours")

    @property
    def to_retry(self) -> int:
        """Tasks the retry takes, as the service counted them."""
        return sum(part.outcome.candidates for part in self.retried_parts if part.outcome)

    @property
    def jobs_to_retry(self) -> int:
        return sum(1 for part in self.retried_parts if part.outcome and part.outcome.candidates)

    @property
    def ended(self) -> int:
        return sum(part.count for part in self.ended_parts)

    @property
    def not_yours(self) -> int:
        return sum(part.count for part in self.not_yours_parts)

    @property
    def no_longer_failed(self) -> int:
        return sum(part.outcome.skipped for part in self.retried_parts if part.outcome)

    @property
    def limited(self) -> bool:
        return any(part.outcome.limited for part in self.retried_parts if part.outcome)


def _plan(user, filters, signature, *, dry_run: bool) -> RetryPlan:
    plan = RetryPlan(gone=selectors.failure_group_gone(user=user, filters=filters, signature=signature))
    for job, task_ids in selectors.failure_group_tasks(user=user, filters=filters, signature=signature):
        part = JobPart(job=job, task_ids=task_ids)
        plan.parts.append(part)
        if job.gone_at is not None or job.state in ENDED_JOB_STATES:
            part.why_skipped = "ended"
            continue
        if not access.can_act_on(user, job):
            part.why_skipped = "not yours"
            continue
        try:
            part.outcome = services.tasks_retry(user=user, job=job, task_ids=task_ids, dry_run=dry_run)
        except services.JobActionError:
            # The job ended between the sync and now (Batch said so), or it is gone.
            part.why_skipped = "ended"
        except PermissionDenied:
            part.why_skipped = "not yours"
    return plan


def _signature_or_404(request):
    params = request.POST if request.method == "POST" else request.GET
    signature = selectors.signature_from(params)
    if signature is None:
        raise Http404("No such group of failures")
    return selectors.triage_filters_from(params), signature


def _count(n: int, what: str = "task") -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def _done_message(plan: RetryPlan) -> str:
    retried = sum(part.outcome.retried for part in plan.retried_parts if part.outcome)
    jobs = sum(1 for part in plan.retried_parts if part.outcome and part.outcome.retried)
    not_retried = sum(part.outcome.not_retried for part in plan.retried_parts if part.outcome)
    text = [f"Batch is running {_count(retried, 'failed task')} again in {_count(jobs, 'job')}; the page shows "
            "them once the next sync has seen it." if retried else "No task was retried."]
    if plan.ended:
        text.append(f"Skipped {_count(plan.ended)} of jobs that have ended (Batch cannot run them again; re-run the "
                    "submission instead).")
    if plan.not_yours:
        text.append(f"Skipped {_count(plan.not_yours)} of jobs that are not yours.")
    if plan.no_longer_failed:
        text.append(f"Skipped {_count(plan.no_longer_failed)} that are no longer failed.")
    if not_retried:
        text.append(f"{_count(not_retried)} could not be retried because Batch was busy; press retry again.")
    return " ".join(text)


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def failure_retry(request):
    """GET: what retrying one group would do (nothing changes). POST: do it, job by job, and go back to triage."""
    filters, signature = _signature_or_404(request)
    if request.method != "POST":
        plan = _plan(request.user, filters, signature, dry_run=True)
        context = {"plan": plan, "signature": signature, "filters": filters,
                   "back": reverse("failure_triage") + "?" + urlencode(filters.params),
                   "hidden": {**filters.params, **signature.params}}
        return render(request, "triage/retry.html", context)
    plan = _plan(request.user, filters, signature, dry_run=False)
    message = _done_message(plan)
    retried = any(part.outcome and part.outcome.retried for part in plan.retried_parts)
    (messages.success if retried else messages.info)(request, message)
    return redirect(reverse("failure_triage") + "?" + urlencode(filters.params))
