"""The action buttons of the job and task pages: what the person may do there, decided in portal.services."""

from django import template
from django.urls import NoReverseMatch, reverse

from portal import access, services
from portal.models import Submission

register = template.Library()


@register.inclusion_tag("jobs/_actions.html", takes_context=True)
def job_action_buttons(context, job):
    user = context["request"].user
    return {"job": job, "allowed": services.job_actions_allowed(user, job), "rerun_url": _rerun_url(user, job)}


@register.inclusion_tag("tasks/_actions.html", takes_context=True)
def task_action_buttons(context, task):
    return {"task": task, "allowed": services.task_actions_allowed(context["request"].user, task)}


def _rerun_url(user, job) -> str | None:
    """The submission form pre-filled from the submission that made `job`, for someone who may re-run it."""
    submission = Submission.of_job(job)
    if submission is None or not submission.template_version.template.is_active:
        return None
    if not (access.can_submit(user) and access.can_act_on(user, submission)):
        return None
    try:
        form_url = reverse("submit_form", args=[submission.template_version.template.slug])
    except NoReverseMatch:   # the submission pages are not there (yet)
        return None
    return f"{form_url}?rerun={submission.public_id}"
