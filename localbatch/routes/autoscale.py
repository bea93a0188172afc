"""Routes for a pool's autoscale: enable (with a formula), evaluate a formula, disable."""

from .base import Account, Request, Response, write

AUTOSCALE_RUN_METADATA = "$metadata#Microsoft.Azure.Batch.Protocol.Entities.AutoScaleRun"


def enable_autoscale(app: Account, request: Request) -> Response:
    pool_id = request.params["pool"]
    response = write(app, request, lambda: app.service.pool(pool_id),
                     lambda: app.autoscaler.enable(app.service.pool(pool_id), request.json() or {}), 200)
    return _with_data_service_id(app, request, response)


def disable_autoscale(app: Account, request: Request) -> Response:
    pool_id = request.params["pool"]
    response = write(app, request, lambda: app.service.pool(pool_id),
                     lambda: app.autoscaler.disable(app.service.pool(pool_id)), 200)
    return _with_data_service_id(app, request, response)


def evaluate_autoscale(app: Account, request: Request) -> Response:
    with app.state.tx():
        run = app.autoscaler.evaluate(app.service.pool(request.params["pool"]), request.json() or {})
    body = {"odata.metadata": f"{app.account_url}/{AUTOSCALE_RUN_METADATA}", **run}
    return Response(200, body, {"DataServiceId": app.account_url + request.path})


def _with_data_service_id(app: Account, request: Request, response: Response) -> Response:
    # As recorded from the service: an action's DataServiceId is the URL of the action itself.
    response.headers["DataServiceId"] = app.account_url + request.path
    return response


ROUTES = [
    ("POST", "pools/{pool}/enableautoscale", enable_autoscale),
    ("POST", "pools/{pool}/disableautoscale", disable_autoscale),
    ("POST", "pools/{pool}/evaluateautoscale", evaluate_autoscale),
]
