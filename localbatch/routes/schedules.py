"""Routes for job schedules: create, get, HEAD, list, update, replace, disable, enable, terminate, delete,
and the jobs of a schedule."""

from ..odata import DATETIME, ENUM, STRING
from ..service import JOB_FILTER_FIELDS
from .base import Account, Request, Response, after_token, entity_headers, entity_response, page, write

SCHEDULE_FILTER_FIELDS = {
    "id": STRING, "displayName": STRING, "state": ENUM, "previousState": ENUM, "stateTransitionTime": DATETIME,
    "creationTime": DATETIME, "lastModified": DATETIME, "executionInfo/nextRunTime": DATETIME,
    "executionInfo/recentJob/id": STRING, "executionInfo/endTime": DATETIME,
}


def create_schedule(app: Account, request: Request) -> Response:
    with app.state.tx():
        schedule = app.schedules.create(request.json())
        url = app.schedules.url(schedule)
        return Response(201, None, entity_headers(schedule) | {"DataServiceId": url, "Location": url})


def get_schedule(app: Account, request: Request) -> Response:
    with app.state.tx():
        schedule = app.schedules.get(request.params["schedule"])
        response = entity_response(request, schedule, app.schedules.present(schedule))
    if response.body is not None:
        response.body = {"odata.metadata": f"{app.account_url}/$metadata#jobschedules/@Element", **response.body}
    return response


def list_schedules(app: Account, request: Request) -> Response:
    with app.state.tx():
        return page(app, request, after_token(app.state.job_schedules, request), SCHEDULE_FILTER_FIELDS,
                    app.schedules.present)


def list_schedule_jobs(app: Account, request: Request) -> Response:
    with app.state.tx():
        schedule = app.schedules.get(request.params["schedule"])
        return page(app, request, after_token(app.schedules.jobs(schedule), request), JOB_FILTER_FIELDS,
                    app.service.present_job)


def _change(app: Account, request: Request, action, status: int, own_url: bool) -> Response:
    """A change to a schedule; DataServiceId is the schedule's URL for PUT/PATCH, the action's URL otherwise,
    as recorded from the service."""
    schedule_id = request.params["schedule"]
    response = write(app, request, lambda: app.schedules.get(schedule_id), action, status)
    if request.method != "DELETE":
        with app.state.tx():
            url = app.account_url + request.path if own_url else app.schedules.url(app.schedules.get(schedule_id))
            response.headers["DataServiceId"] = url
    return response


def patch_schedule(app: Account, request: Request) -> Response:
    return _change(app, request, lambda: app.schedules.update(request.params["schedule"], request.json() or {},
                                                              replace=False), 200, own_url=False)


def put_schedule(app: Account, request: Request) -> Response:
    return _change(app, request, lambda: app.schedules.update(request.params["schedule"], request.json() or {},
                                                              replace=True), 200, own_url=False)


def disable_schedule(app: Account, request: Request) -> Response:
    return _change(app, request, lambda: app.schedules.disable(request.params["schedule"]), 204, own_url=True)


def enable_schedule(app: Account, request: Request) -> Response:
    return _change(app, request, lambda: app.schedules.enable(request.params["schedule"]), 204, own_url=True)


def terminate_schedule(app: Account, request: Request) -> Response:
    return _change(app, request, lambda: app.schedules.terminate(request.params["schedule"]), 202, own_url=True)


def delete_schedule(app: Account, request: Request) -> Response:
    return _change(app, request, lambda: app.schedules.delete(request.params["schedule"]), 202, own_url=True)


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
