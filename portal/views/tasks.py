"""One task: what it ran, where, when, how it ended, and the timeline of its states."""

from django.contrib.auth.decorators import login_required
from django.views.decorators.http import require_safe

from portal import selectors
from portal.audit import can_view as can_view_audit
from portal.views.common import partial_for, render_page


@require_safe
@login_required
def task_detail(request, pk: int):
    task = selectors.task_get(user=request.user, pk=pk)
    context = {
        "task": task,
        "job": task.job,
        "live": selectors.task_is_live(task),
        "timeline": selectors.task_timeline(task),
        "environment": selectors.task_environment(task),
        "node": selectors.task_node(task),
    }
    partial = partial_for(request, {}, default="live")
    if partial is None:
        # The History section is not part of the polled partial.
        context["history"] = selectors.audit_rows(selectors.audit_for_object("task", task.pk), user=request.user)
        if can_view_audit(request.user):
            context["audit_url"] = selectors.audit_list_url("task", task.pk)
    return render_page(request, "tasks/detail.html", context, partial)
