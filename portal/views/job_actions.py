"""Actions on submitted work: terminate a job, terminate or delete a task, retry a job's failed tasks.

Each is one URL: GET shows what will happen and changes nothing; a POST (with its CSRF token) calls one service and
goes back to the job or task page with a message. Someone who may not act on the object gets 404, as if it did not
exist (portal.access.can_act_on), and so does an object Batch has deleted."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from portal import access, selectors, services
from portal.services import JobActionError

require_get_or_post = require_http_methods(["GET", "HEAD", "POST"])


class ReasonForm(forms.Form):
    reason = forms.CharField(
        label="Why?", max_length=services.MAX_REASON_LENGTH, widget=forms.Textarea(attrs={"rows": 3}),
        help_text="A few words for the audit history, e.g. “wrong input file”.",
        error_messages={"required": "Say why, in a few words: it goes into the audit history."})


@login_required
@require_get_or_post
def job_terminate(request, pk: int):
    job = _job_or_404(request, pk)
    return _confirm_with_reason(
        request, lambda reason: services.job_terminate(user=request.user, job=job, reason=reason),
        template="jobs/actions/terminate_job.html", context={"job": job}, done=("job_detail", job.pk))


@login_required
@require_get_or_post
def task_terminate(request, pk: int):
    task = _task_or_404(request, pk)
    return _confirm_with_reason(
        request, lambda reason: services.task_terminate(user=request.user, task=task, reason=reason),
        template="jobs/actions/terminate_task.html", context={"task": task, "job": task.job},
        done=("task_detail", task.pk))


@login_required
@require_get_or_post
def task_delete(request, pk: int):
    task = _task_or_404(request, pk)
    # The task page still works for a deleted task (history), but the job is where the person goes next.
    return _confirm_with_reason(
        request, lambda reason: services.task_delete(user=request.user, task=task, reason=reason),
        template="jobs/actions/delete_task.html", context={"task": task, "job": task.job},
        done=("job_detail", task.job.pk))


@login_required
@require_get_or_post
def job_retry_failed(request, pk: int):
    job = _job_or_404(request, pk)
    try:
        outcome = services.tasks_retry(user=request.user, job=job, dry_run=request.method != "POST")
    except JobActionError as exc:
        if request.method == "POST":
            messages.error(request, exc.message)
            return redirect("job_detail", job.pk)
        return render(request, "jobs/actions/retry_failed.html", {"job": job, "refusal": exc.message})
    if request.method == "POST":
        if outcome.retried:
            messages.success(request, outcome.message)
        else:
            messages.info(request, outcome.message)
        return redirect("job_detail", job.pk)
    return render(request, "jobs/actions/retry_failed.html", {"job": job, "outcome": outcome})


# --- shared -----------------------------------------------------------------------------------------


def _confirm_with_reason(request, act, *, template: str, context: dict, done: tuple):
    """GET: the confirm page with its reason form. POST: `act(reason)` once the form is valid, then back to `done`
    (a URL name and its pk) with the outcome; a refusal from Batch goes on the form."""
    form = ReasonForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        try:
            outcome = act(form.cleaned_data["reason"])
        except JobActionError as exc:
            _add_error(form, exc)
        else:
            _tell(request, outcome)
            return redirect(*done)
    return render(request, template, {**context, "form": form})


def _job_or_404(request, pk: int):
    job = selectors.job_get(user=request.user, pk=pk)
    if job.gone_at is not None or not access.can_act_on(request.user, job):
        raise Http404("No such job")
    return job


def _task_or_404(request, pk: int):
    task = selectors.task_get(user=request.user, pk=pk)
    if task.gone_at is not None or task.job.gone_at is not None or not access.can_act_on(request.user, task):
        raise Http404("No such task")
    return task


def _add_error(form, exc: JobActionError) -> None:
    form.add_error(exc.field if exc.field in form.fields else None, exc.message)


def _tell(request, outcome: services.ActionOutcome) -> None:
    (messages.success if outcome.done else messages.info)(request, outcome.message)
