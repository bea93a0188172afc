"""Routes for the tasks of a job: add (one or a collection), get, list, update, terminate,
reactivate, delete, subtasks."""

from .. import stats, wire
from ..odata import lower_bound
from ..service import TASK_FILTER_FIELDS
from .base import Account, Request, Response, created, entity_response, in_id_order, page, write


def create_task(app: Account, request: Request) -> Response:
    with app.state.tx():
        job = app.service.job(request.params["job"])
        task = app.service.create_task(request.params["job"], request.json())
        return created(task, f"{app.account_url}/jobs/{job['id']}/tasks/{task['id']}")


def add_task_collection(app: Account, request: Request) -> Response:
    with app.state.tx():
        results = app.service.add_task_collection(request.params["job"], request.json(), len(request.body))
    return Response(200, {"odata.metadata": wire.odata_metadata(app.account_url, "taskaddresult"), "value": results})


def get_task(app: Account, request: Request) -> Response:
    with app.state.tx():
        job = app.service.job(request.params["job"])
        task = app.service.task(request.params["job"], request.params["task"])
        present = stats.task_presenter(request.query, app.service, job)
        return entity_response(request, task, present(task), "tasks", app.account_url)


def list_tasks(app: Account, request: Request) -> Response:
    with app.state.tx():
        job = app.service.job(request.params["job"])
        job_key = job["id"].lower()

        def listed(keep):
            # A filter on recent transitions reads only the tasks that moved since (AccountState.tasks_since).
            since = lower_bound(request.query.get("$filter"), "stateTransitionTime")
            tasks = app.state.tasks[job_key] if since is None else app.state.tasks_since(job_key, since)
            return in_id_order(tasks, request, keep)

        # wire.task presents a stored task's own fields as they are (TASK_FILTER_FIELDS names no other).
        return page(app, request, listed, TASK_FILTER_FIELDS, stats.task_presenter(request.query, app.service, job),
                    "tasks", filter_stored=True)


def replace_task(app: Account, request: Request) -> Response:
    job_id, task_id = request.params["job"], request.params["task"]
    return write(app, request, lambda: app.service.task(job_id, task_id),
                 lambda: app.service.replace_task(job_id, task_id, request.json() or {}), 200)


def delete_task(app: Account, request: Request) -> Response:
    job_id, task_id = request.params["job"], request.params["task"]
    return write(app, request, lambda: app.service.task(job_id, task_id),
                 lambda: app.service.delete_task(job_id, task_id), 200)


def terminate_task(app: Account, request: Request) -> Response:
    job_id, task_id = request.params["job"], request.params["task"]
    return write(app, request, lambda: app.service.task(job_id, task_id),
                 lambda: app.service.terminate_task(job_id, task_id), 204)


def reactivate_task(app: Account, request: Request) -> Response:
    job_id, task_id = request.params["job"], request.params["task"]
    return write(app, request, lambda: app.service.task(job_id, task_id),
                 lambda: app.service.reactivate_task(job_id, task_id), 204)


def list_subtasks(app: Account, request: Request) -> Response:
    with app.state.tx():
        app.service.task(request.params["job"], request.params["task"])
    return Response(200, {"odata.metadata": wire.odata_metadata(app.account_url, "subtaskinformations"), "value": []})


ROUTES = [
    ("GET", "jobs/{job}/tasks", list_tasks), ("POST", "jobs/{job}/tasks", create_task),
    ("POST", "jobs/{job}/addtaskcollection", add_task_collection),
    ("GET", "jobs/{job}/tasks/{task}", get_task), ("PUT", "jobs/{job}/tasks/{task}", replace_task),
    ("DELETE", "jobs/{job}/tasks/{task}", delete_task),
    ("POST", "jobs/{job}/tasks/{task}/terminate", terminate_task),
    ("POST", "jobs/{job}/tasks/{task}/reactivate", reactivate_task),
    ("GET", "jobs/{job}/tasks/{task}/subtasksinfo", list_subtasks),
]
