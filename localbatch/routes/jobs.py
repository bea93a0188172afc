"""Routes for jobs: create, get, list, update, terminate, disable/enable, delete; task counts and the
preparation and release task status."""

from .. import stats, wire
from ..service import JOB_FILTER_FIELDS, PREP_STATUS_FILTER_FIELDS
from .base import Account, Request, Response, created, entity_response, in_id_order, numbered, page, write


def create_job(app: Account, request: Request) -> Response:
    with app.state.tx():
        job = app.service.create_job(request.json())
        return created(job, f"{app.account_url}/jobs/{job['id']}")


def get_job(app: Account, request: Request) -> Response:
    with app.state.tx():
        job = app.service.job(request.params["job"])
        present = stats.job_presenter(request.query, app.service)
        return entity_response(request, job, present(job), "jobs", app.account_url)


def list_jobs(app: Account, request: Request) -> Response:
    with app.state.tx():
        return page(app, request, in_id_order(app.state.jobs, request), JOB_FILTER_FIELDS,
                    stats.job_presenter(request.query, app.service), "jobs")


def patch_job(app: Account, request: Request) -> Response:
    job_id = request.params["job"]
    return write(app, request, lambda: app.service.job(job_id),
                 lambda: app.service.update_job(job_id, request.json() or {}, replace=False), 200)


def put_job(app: Account, request: Request) -> Response:
    job_id = request.params["job"]
    return write(app, request, lambda: app.service.job(job_id),
                 lambda: app.service.update_job(job_id, request.json() or {}, replace=True), 200)


def delete_job(app: Account, request: Request) -> Response:
    job_id = request.params["job"]
    return write(app, request, lambda: app.service.job(job_id), lambda: app.service.delete_job(job_id), 202)


def terminate_job(app: Account, request: Request) -> Response:
    job_id = request.params["job"]
    return write(app, request, lambda: app.service.job(job_id),
                 lambda: app.service.terminate_job(job_id, request.json()), 202)


def disable_job(app: Account, request: Request) -> Response:
    job_id = request.params["job"]
    return write(app, request, lambda: app.service.job(job_id),
                 lambda: app.service.disable_job(job_id, request.json() or {}), 202)


def enable_job(app: Account, request: Request) -> Response:
    job_id = request.params["job"]
    return write(app, request, lambda: app.service.job(job_id), lambda: app.service.enable_job(job_id), 202)


def task_counts(app: Account, request: Request) -> Response:
    with app.state.tx():
        counts = app.service.task_counts(request.params["job"])
        metadata = wire.odata_metadata(app.account_url, "taskcountsresult/@Element")
        return Response(200, {"odata.metadata": metadata} | counts)


def prep_release_status(app: Account, request: Request) -> Response:
    with app.state.tx():
        rows = sorted(app.service.prep_release_status(request.params["job"]), key=lambda row: row["nodeId"])
        return page(app, request, numbered(rows, request), PREP_STATUS_FILTER_FIELDS, lambda row: row,
                    "jobpreparationandreleasetaskstatuslist")


ROUTES = [
    ("GET", "jobs", list_jobs), ("POST", "jobs", create_job),
    ("GET", "jobs/{job}", get_job), ("HEAD", "jobs/{job}", get_job),
    ("PATCH", "jobs/{job}", patch_job), ("PUT", "jobs/{job}", put_job),
    ("DELETE", "jobs/{job}", delete_job), ("POST", "jobs/{job}/terminate", terminate_job),
    ("POST", "jobs/{job}/disable", disable_job), ("POST", "jobs/{job}/enable", enable_job),
    ("GET", "jobs/{job}/taskcounts", task_counts),
    ("GET", "jobs/{job}/jobpreparationandreleasetaskstatus", prep_release_status),
]
