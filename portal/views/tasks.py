"""One task: what it ran, where, when, how it ended, and the timeline of its states."""

from django.contrib.auth.decorators import login_required
from django.views.decorators.http import require_safe

from portal import selectors
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
    return render_page(request, "tasks/detail.html", context, partial_for(request, {}, default="live"))
