"""The confirm page of "Retry failed tasks" for a job that has ended: it counts what would run again, and its POST
submits only the failed tasks again as a new submission (portal.submit.services.submission_retry_failed).

A job that has not ended has its failed tasks reactivated in place instead (portal.jobs.views.job_retry_failed).
The POST carries the key the page handed out, so a double click or a re-sent form makes one submission."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from portal import access
from portal.access import SignedInRequest
from portal.costs.budgets import approval_reason, budget_warning
from portal.models import SubmissionState
from portal.submit import selectors as submit_selectors
from portal.submit import services
from portal.submit.services import SubmissionError


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
def submission_retry_failed(request: SignedInRequest, public_id: uuid.UUID) -> HttpResponse:
    """GET: how many tasks would run again, and how many succeeded and would not (nothing changes). POST: submit
    them, then the new submission's page."""
    parent = submit_selectors.submission_get(user=request.user, public_id=public_id)
    if parent is None:
        raise Http404("No such submission")
    job = parent.job
    context: dict[str, object] = {"submission": parent, "job": job, "template": parent.template_version.template}
    if job is None:
        context["refusal"] = ("The portal has not seen this submission's job yet, so it cannot tell which tasks "
                              "failed. Nothing was submitted; try again after the next sync.")
        return render(request, "submit/retry_failed.html", context)
    try:
        if request.method == "POST":
            key = _key(request.POST.get("key"))
            submission = services.submission_retry_failed(user=request.user, job=job, key=key)
            tasks = f"{submission.total_tasks:,} failed task{'' if submission.total_tasks == 1 else 's'}"
            if submission.state == SubmissionState.AWAITING_APPROVAL:
                messages.success(request, f"Submitted {tasks} again, as a new job that waits for approval: its "
                                          "estimated cost is over your team's limit per submission.")
            else:
                messages.success(request, f"Submitted {tasks} again, as a new job.")
            return redirect("submission_detail", submission.public_id)
        plan = services.submission_retry_failed_plan(user=request.user, job=job)
        team = access.submission_team(request.user)
        context.update(plan=plan, cost_estimate=plan.estimate,
                       budget_warning=budget_warning(team=team, estimate=plan.estimate),
                       approval_reason=approval_reason(team=team, estimate=plan.estimate))
    except PermissionDenied:
        raise Http404("No such submission") from None
    except SubmissionError as exc:
        context["refusal"] = exc.message
        return render(request, "submit/retry_failed.html", context)
    context["key"] = uuid.uuid4()
    return render(request, "submit/retry_failed.html", context)


def _key(raw: str | None) -> uuid.UUID:
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        raise SubmissionError("This form was changed or is incomplete; nothing was submitted. Open the retry page "
                              "again.") from None
