"""Routes for job schedules: create, get, HEAD, list, update, replace, disable, enable, terminate, delete,
and the jobs of a schedule."""

from .. import stats
from ..odata import DATETIME, ENUM, STRING
from ..service import JOB_FILTER_FIELDS
from .base import Account, Request, Response, created, entity_response, in_id_order, page, write

SCHEDULE_FILTER_FIELDS = {
    "id": STRING, "displayName": STRING, "state": ENUM, "previousState": ENUM, "stateTransitionTime": DATETIME,
    "creationTime": DATETIME, "lastModified": DATETIME, "executionInfo/nextRunTime": DATETIME,
    "executionInfo/recentJob/id": STRING, "executionInfo/endTime": DATETIME,
}


def create_schedule(app: Account, request: Request) -> Response:
    with app.state.tx():
        schedule = app.schedules.create(request.json())
        return created(schedule, app.schedules.url(schedule))


def get_schedule(app: Account, request: Request) -> Response:
    with app.state.tx():
        schedule = app.schedules.get(request.params["schedule"])
        present = _presenter(app, request)
        return entity_response(request, schedule, present(schedule), "jobschedules", app.account_url)


def list_schedules(app: Account, request: Request) -> Response:
    with app.state.tx():
        return page(app, request, in_id_order(app.state.job_schedules, request), SCHEDULE_FILTER_FIELDS,
                    _presenter(app, request), "jobschedules")


def list_schedule_jobs(app: Account, request: Request) -> Response:
    with app.state.tx():
        schedule = app.schedules.get(request.params["schedule"])
        return page(app, request, in_id_order(app.schedules.jobs(schedule), request), JOB_FILTER_FIELDS,
                    stats.job_presenter(request.query, app.service), "jobs")


def _presenter(app: Account, request: Request):
    return stats.expanded(request.query, app.schedules.present, lambda s: stats.job_schedule(
        app.state, s, list(app.schedules.jobs(s).values()), app.schedules.url(s)))


def _change(app: Account, request: Request, action, status: int) -> Response:
    schedule_id = request.params["schedule"]
    return write(app, request, lambda: app.schedules.get(schedule_id), action, status)


def patch_schedule(app: Account, request: Request) -> Response:
    return _change(app, request, lambda: app.schedules.update(request.params["schedule"], request.json() or {},
                                                              replace=False), 200)


def put_schedule(app: Account, request: Request) -> Response:
    return _change(app, request, lambda: app.schedules.update(request.params["schedule"], request.json() or {},
                                                              replace=True), 200)


def disable_schedule(app: Account, request: Request) -> Response:
    return _change(app, request, lambda: app.schedules.disable(request.params["schedule"]), 204)


def enable_schedule(app: Account, request: Request) -> Response:
    return _change(app, request, lambda: app.schedules.enable(request.params["schedule"]), 204)


def terminate_schedule(app: Account, request: Request) -> Response:
    return _change(app, request, lambda: app.schedules.terminate(request.params["schedule"]), 202)


def delete_schedule(app: Account, request: Request) -> Response:
    return _change(app, request, lambda: app.schedules.delete(request.params["schedule"]), 202)


ROUTES = [
    ("GET", "jobschedules", list_schedules), ("POST", "jobschedules", create_schedule),
    ("GET", "jobschedules/{schedule}", get_schedule), ("HEAD", "jobschedules/{schedule}", get_schedule),
    ("PATCH", "jobschedules/{schedule}", patch_schedule), ("PUT", "jobschedules/{schedule}", put_schedule),
    ("DELETE", "jobschedules/{schedule}", delete_schedule),
    ("POST", "jobschedules/{schedule}/disable", disable_schedule),
    ("POST", "jobschedules/{schedule}/enable", enable_schedule),
    ("POST", "jobschedules/{schedule}/terminate", terminate_schedule),
    ("GET", "jobschedules/{schedule}/jobs", list_schedule_jobs),
]
