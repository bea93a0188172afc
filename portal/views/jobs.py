"""Jobs: the filtered, searchable list, and one job with its progress and task table."""

from django.contrib.auth.decorators import login_required
from django.views.decorators.http import require_safe

from portal import access, selectors
from portal.audit import can_view as can_view_audit
from portal.views.common import partial_for, render_page

SCOPE_SESSION_KEY = "job_list_scope"


@require_safe
@login_required
def job_list(request):
    # All by default, for every role: the list is the team's shared board, and jobs made outside the portal have no
    # submitter, so "Mine" would greet most people with an empty page. A scope someone picks is kept for the rest of
    # their session, so whoever wants only their own work chooses it once.
    remembered = request.session.get(SCOPE_SESSION_KEY, access.SCOPE_ALL)
    filters = selectors.job_filters_from(request.GET, default_scope=remembered)
    if "scope" in request.GET and filters.scope != remembered:
        request.session[SCOPE_SESSION_KEY] = filters.scope
    page = selectors.job_list(user=request.user, filters=filters,
                              after=request.GET.get("after"), before=request.GET.get("before"))
    partial = partial_for(request, {}, default="jobs")
    synced_at = selectors.accounts_synced_at(selectors.visible_account_ids(request.user))
    context = {"page": page, "filters": filters, "synced_at": synced_at, "scopes": access.SCOPES,
               "in_a_team": filters.scope != access.SCOPE_TEAM or request.user.teams.exists()}
    if partial is None:
        # The filter form sits outside the partial, so only a whole page needs its choices.
        context["choices"] = selectors.job_filter_choices(user=request.user)
    return render_page(request, "jobs/list.html", context, partial)


@require_safe
@login_required
def job_detail(request, pk: int):
    job = selectors.job_get(user=request.user, pk=pk)
    partial = partial_for(request, {"job-summary": "summary"}, default="tasks")
    context = {"job": job, "live": selectors.job_is_live(job)}
    if partial != "tasks":
        context["pool"] = selectors.job_pool(job)
    if partial != "summary":
        filters = selectors.task_filters_from(request.GET)
        context["filters"] = filters
        context["sorts"] = selectors.TASK_SORTS.values()
        context["page"] = selectors.task_list(job=job, filters=filters,
                                              after=request.GET.get("after"), before=request.GET.get("before"))
    if partial is None:
        # Only with the whole page: the polled partials leave the History section alone.
        context["history"] = selectors.audit_rows(selectors.audit_for_job(job), user=request.user)
        if can_view_audit(request.user):
            context["audit_url"] = selectors.audit_list_url("job", job.pk)
    return render_page(request, "jobs/detail.html", context, partial)
