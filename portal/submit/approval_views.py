"""Approving a submission that waits for approval (its estimate is past its team's per-submission limit): an Operator
of its team or an Admin approves it, and it is sent to Batch, or turns it down, and it ends not submitted."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from portal import access
from portal.access import SignedInRequest
from portal.submit import selectors as submit_selectors
from portal.submit import services
from portal.submit.services import SubmissionError


@require_POST
@login_required
def submission_decide(request: SignedInRequest, public_id: uuid.UUID) -> HttpResponse:
    submission = submit_selectors.submission_get(user=request.user, public_id=public_id)
    if submission is None:
        raise Http404("No such submission")
    if not access.can_approve(request.user, submission):
        raise access.Refused("Only an Operator of the submission's team or an Admin, other than the person who "
                             "submitted it, may approve it or turn it down.")
    decision = request.POST.get("decision")
    if decision not in ("approve", "reject"):
        messages.error(request, "Choose Approve or Turn down; nothing changed.")
        return redirect("submission_detail", public_id=public_id)
    try:
        services.submission_decide(user=request.user, submission=submission, approve=decision == "approve",
                                   reason=request.POST.get("reason", ""))
    except SubmissionError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Approved: it is being sent to Batch." if decision == "approve"
                         else "Turned down: nothing was sent to Batch.")
    return redirect("submission_detail", public_id=public_id)
