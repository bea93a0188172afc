"""`{% job_eta job %}`: when a job should finish (portal.jobs.estimates), for the job, submission and dashboard
pages. Computed on render from the mirror the sync keeps, so it moves with each sync pass. A page listing jobs reads
all their estimates at once first (`{% job_estimates_for jobs as etas %}`), in a fixed number of queries."""

from django import template

from portal.jobs.estimates import Estimate, job_estimate, job_estimates
from portal.models import Job, Submission

register = template.Library()


@register.simple_tag
def job_estimates_for(jobs: list[Job]) -> dict[int, Estimate | None]:
    return job_estimates(list(jobs))


@register.inclusion_tag("jobs/_eta.html")
def job_eta(job: Job, submission: Submission | None = None, compact: bool = False,
            etas: dict[int, Estimate | None] | None = None) -> dict:
    """The estimate's line; nothing for a job that has ended or has no tasks. `compact` drops the basis sentence to a
    hover title (the dashboard's rows); `etas` are the page's estimates read beforehand. Missing page variables come
    as "", hence the `or None`s."""
    eta = etas.get(job.pk) if isinstance(etas, dict) else job_estimate(job, submission or None)
    return {"eta": eta, "job": job, "compact": compact}
