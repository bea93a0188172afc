"""Pages of jobs and tasks: the filtered job list, a job with its progress and task table, a task with its timeline,
the actions on them (each a confirm page, then one POST to a service), and failure triage.

Someone who may not act on an object gets 404 from its action pages, as if it did not exist
(portal.access.can_act_on), and so does an object Batch has deleted."""

import functools
import uuid
from collections.abc import Callable
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_safe

from portal import access
from portal.access import SignedInRequest
from portal.accounts.selectors import account_scope, accounts_synced_at
from portal.actions import ActionError
from portal.audit import selectors as audit_selectors
from portal.costs import selectors as costs_selectors
from portal.jobs import selectors, services, triage, waiting
from portal.models import Job, Task
from portal.pages import lazy, partial_for, render_page, row_version, shared_value

# --- jobs and tasks ----------------------------------------------------------------------------------

SCOPE_SESSION_KEY = "job_list_scope"


@require_safe
@login_required
def job_list(request: SignedInRequest) -> HttpResponse:
    # All by default, for every role: the list is the team's shared board, and jobs made outside the portal have no
    # submitter, so "Mine" would greet most people with an empty page. A scope someone picks is kept for the rest of
    # their session, so whoever wants only their own work chooses it once.
    remembered = request.session.get(SCOPE_SESSION_KEY, access.SCOPE_ALL)
    filters = selectors.job_filters_from(request.GET, default_scope=remembered)
    if "scope" in request.GET and filters.scope != remembered:
        request.session[SCOPE_SESSION_KEY] = filters.scope
    partial = partial_for(request, {}, default="jobs")
    accounts = account_scope(user=request.user, params=request.GET)
    version = row_version(*accounts.accounts, accounts.chosen)
    # The list is a shared section (portal/pages.py): whose jobs "Mine" and "My teams" are depends on the viewer.
    viewer = "" if filters.scope == access.SCOPE_ALL else str(request.user.pk)
    context = {"filters": filters, "scopes": access.SCOPES, "accounts": accounts, "list_version": version,
               "list_viewer": viewer,
               "page": lazy(lambda: selectors.job_list(user=request.user, filters=filters,
                                                       after=request.GET.get("after"),
                                                       before=request.GET.get("before"))),
               "synced_at": lazy(lambda: accounts_synced_at(accounts.ids)),
               "in_a_team": lazy(lambda: filters.scope != access.SCOPE_TEAM or request.user.teams.exists())}
    if partial is None:
        # The filter form sits outside the partial, so only a whole page needs its choices (the same for everyone
        # who sees the same accounts).
        context["choices"] = shared_value(f"job-list-choices:{version}",
                                          lambda: selectors.job_filter_choices(user=request.user, scope=accounts))
    return render_page(request, "jobs/list.html", context, partial)


@require_safe
@login_required
def job_detail(request: SignedInRequest, pk: int) -> HttpResponse:
    job = selectors.job_get(user=request.user, pk=pk)
    partial = partial_for(request, {"job-summary": "summary"}, default="tasks")
    # The summary and the task table are shared sections (portal/pages.py): what they read is computed only when
    # the section is rendered, and they are keyed on the job row read here.
    context = {"job": job, "live": job.is_live, "job_version": row_version(job)}
    if partial != "tasks":
        context["several_accounts"] = account_scope(user=request.user).several
        # The same pool row, with its nodes counted in the same query for the reasons; read once, when first needed.
        pool = functools.cache(lambda: waiting.pool_of(job) if settings.WAITING_REASONS else selectors.job_pool(job))
        context["pool"] = lazy(pool)
        if settings.WAITING_REASONS:
            context["reasons"] = lazy(lambda: waiting.reasons_for_job(job, pool=pool()))
        context["cost"] = lazy(lambda: costs_selectors.job_cost(job, pool=pool(), pool_known=True))
    if partial != "summary":
        filters = selectors.task_filters_from(request.GET)
        context["filters"] = filters
        context["sorts"] = selectors.TASK_SORTS.values()
        context["page"] = lazy(lambda: selectors.task_list(job=job, filters=filters, after=request.GET.get("after"),
                                                           before=request.GET.get("before")))
    if partial is None:
        # Only with the whole page: the polled partials leave the header's actions and the History section alone.
        context["allowed"] = selectors.job_actions_allowed(request.user, job)
        context["rerun_url"] = selectors.job_rerun_url(user=request.user, job=job)
        context["retry_again_url"] = selectors.job_retry_again_url(user=request.user, job=job)
        context["retry_not_possible"] = selectors.job_retry_not_possible(user=request.user, job=job)
        # A shared section too, for everyone who is shown the same of it (addresses, admin links).
        context["history"] = lazy(lambda: audit_selectors.audit_rows(audit_selectors.audit_for_job(job),
                                                                     user=request.user))
        context["history_viewer"] = audit_selectors.history_viewer(request.user)
        if access.can_view_audit(request.user):
            context["audit_url"] = audit_selectors.audit_list_url("job", job.pk)
    return render_page(request, "jobs/detail.html", context, partial)


@require_safe
@login_required
def task_detail(request: SignedInRequest, pk: int) -> HttpResponse:
    task = selectors.task_get(user=request.user, pk=pk)
    attempts = functools.cache(lambda: selectors.task_attempts(task))
    # The task's status section is shared (portal/pages.py): what it reads is computed only when it is rendered,
    # and it is keyed on the task and job rows read here.
    context = {
        "task": task,
        "job": task.job,
        "live": task.is_live,
        "task_version": row_version(task, task.job),
        "attempts": lazy(lambda: attempts() if len(attempts()) > 1 else []),
        "waited_seconds": lazy(lambda: selectors.task_waited_seconds(task, attempts())),
        "timeline": lazy(lambda: selectors.task_timeline(task, attempts())),
        "environment": selectors.task_environment(task),
        "node": lazy(lambda: selectors.task_node(task)),
        "reasons": lazy(lambda: waiting.reasons_for_task(task) if settings.WAITING_REASONS else []),
        "dependencies": lazy(lambda: waiting.Dependencies.of(task)),
    }
    partial = partial_for(request, {}, default="live")
    # A poll's answer carries the header's actions as well (out of band): they change when the task ends.
    context["allowed"] = selectors.task_actions_allowed(request.user, task)
    context["several_accounts"] = account_scope(user=request.user).several
    context["oob"] = partial is not None
    if partial is None:
        # The History section is not part of the polled partial.
        context["history"] = lazy(lambda: audit_selectors.audit_rows(
            audit_selectors.audit_for_object("task", task.pk), user=request.user))
        context["history_viewer"] = audit_selectors.history_viewer(request.user)
        if access.can_view_audit(request.user):
            context["audit_url"] = audit_selectors.audit_list_url("task", task.pk)
    return render_page(request, "jobs/task_detail.html", context, partial)


# --- actions ------------------------------------------------------------------------------------------

require_get_or_post = require_http_methods(["GET", "HEAD", "POST"])


class ReasonForm(forms.Form):
    reason = forms.CharField(
        label="Why?", max_length=services.MAX_REASON_LENGTH, widget=forms.Textarea(attrs={"rows": 3}),
        help_text="A few words for the audit history, e.g. “wrong input file”.",
        error_messages={"required": "Say why, in a few words: it goes into the audit history."})


@login_required
@require_get_or_post
def job_terminate(request: SignedInRequest, pk: int) -> HttpResponse:
    job = _job_or_404(request, pk)
    return _confirm_with_reason(
        request, lambda reason: services.job_terminate(user=request.user, job=job, reason=reason),
        template="jobs/actions/terminate_job.html", context={"job": job}, done=("job_detail", job.pk))


@login_required
@require_get_or_post
def task_terminate(request: SignedInRequest, pk: int) -> HttpResponse:
    task = _task_or_404(request, pk)
    return _confirm_with_reason(
        request, lambda reason: services.task_terminate(user=request.user, task=task, reason=reason),
        template="jobs/actions/terminate_task.html", context={"task": task, "job": task.job},
        done=("task_detail", task.pk))


@login_required
@require_get_or_post
def task_delete(request: SignedInRequest, pk: int) -> HttpResponse:
    task = _task_or_404(request, pk)
    # The task page still works for a deleted task (history), but the job is where the person goes next.
    return _confirm_with_reason(
        request, lambda reason: services.task_delete(user=request.user, task=task, reason=reason),
        template="jobs/actions/delete_task.html", context={"task": task, "job": task.job},
        done=("job_detail", task.job.pk))


@login_required
@require_get_or_post
def job_retry_failed(request: SignedInRequest, pk: int) -> HttpResponse:
    job = _job_or_404(request, pk)
    again = selectors.job_retry_again_url(user=request.user, job=job) if job.has_ended else None
    if again is not None and request.method != "POST":
        # The job has ended: its failed tasks can only run again in a new job, which that page submits.
        return redirect(again)
    try:
        outcome = services.tasks_retry(user=request.user, job=job, dry_run=request.method != "POST")
    except ActionError as exc:
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


def _confirm_with_reason(request: SignedInRequest, act: Callable[[str], services.ActionOutcome], *,
                         template: str, context: dict, done: tuple) -> HttpResponse:
    """GET: the confirm page with its reason form. POST: `act(reason)` once the form is valid, then back to `done`
    (a URL name and its pk) with the outcome; a refusal from Batch goes on the form."""
    form = ReasonForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        try:
            outcome = act(form.cleaned_data["reason"])
        except ActionError as exc:
            _add_error(form, exc)
        else:
            _tell(request, outcome)
            return redirect(*done)
    return render(request, template, {**context, "form": form})


def _job_or_404(request: SignedInRequest, pk: int) -> Job:
    job = selectors.job_get(user=request.user, pk=pk)
    if job.gone_at is not None or not access.can_act_on(request.user, job):
        raise Http404("No such job")
    return job


def _task_or_404(request: SignedInRequest, pk: int) -> Task:
    task = selectors.task_get(user=request.user, pk=pk)
    if task.gone_at is not None or task.job.gone_at is not None or not access.can_act_on(request.user, task):
        raise Http404("No such task")
    return task


def _add_error(form: forms.Form, exc: ActionError) -> None:
    form.add_error(exc.field if exc.field in form.fields else None, exc.message)


def _tell(request: SignedInRequest, outcome: services.ActionOutcome) -> None:
    (messages.success if outcome.done else messages.info)(request, outcome.message)


# --- failure triage -----------------------------------------------------------------------------------

@require_safe
@login_required
def failure_triage(request: SignedInRequest) -> HttpResponse:
    filters = triage.triage_filters_from(request.GET)
    accounts = account_scope(user=request.user, params=request.GET)
    found = triage.failure_triage(user=request.user, filters=filters)
    groups = [(group, urlencode({**filters.params, **group.signature.params})) for group in found.groups]
    context = {"triage": found, "groups": groups, "filters": filters, "triage_url": reverse("failure_triage"),
               "job": triage.triage_job(user=request.user, filters=filters),
               "choices": triage.triage_filter_choices(scope=accounts), "accounts": accounts,
               "synced_at": accounts_synced_at(accounts.ids)}
    return render(request, "jobs/triage.html", context)


def _signature_or_404(request: SignedInRequest) -> tuple[triage.TriageFilters, triage.Signature]:
    params = request.POST if request.method == "POST" else request.GET
    signature = triage.signature_from(params)
    if signature is None:
        raise Http404("No such group of failures")
    return triage.triage_filters_from(params), signature


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def failure_retry(request: SignedInRequest) -> HttpResponse:
    """GET: what retrying one group would do (nothing changes). POST: do it, job by job, and go back to triage."""
    filters, signature = _signature_or_404(request)
    back = reverse("failure_triage") + "?" + urlencode(filters.params)
    if request.method != "POST":
        plan = services.failure_group_retry(user=request.user, filters=filters, signature=signature, dry_run=True)
        # The key makes the POST idempotent: the new submissions of ended jobs derive their ids from it.
        context = {"plan": plan, "signature": signature, "filters": filters, "back": back,
                   "hidden": {**filters.params, **signature.params, "key": str(uuid.uuid4())}}
        return render(request, "jobs/triage_retry.html", context)
    try:
        key = uuid.UUID(request.POST.get("key", ""))
    except ValueError:
        key = None
    plan = services.failure_group_retry(user=request.user, filters=filters, signature=signature, dry_run=False,
                                        key=key)
    message = services.failure_group_retry_message(plan)
    retried = any((part.outcome and part.outcome.retried) or part.submitted for part in plan.retried_parts)
    (messages.success if retried else messages.info)(request, message)
    return redirect(back)
