"""Routes for a pool's autoscale: enable (with a formula), evaluate a formula, disable."""

from .. import wire
from .base import Account, Request, Response, write

AUTOSCALE_RUN_KIND = "Microsoft.Azure.Batch.Protocol.Entities.AutoScaleRun"


def enable_autoscale(app: Account, request: Request) -> Response:
    pool_id = request.params["pool"]
    return write(app, request, lambda: app.service.pool(pool_id),
                 lambda: app.autoscaler.enable(app.service.pool(pool_id), request.json() or {}), 200)


def disable_autoscale(app: Account, request: Request) -> Response:
    pool_id = request.params["pool"]
    return write(app, request, lambda: app.service.pool(pool_id),
                 lambda: app.autoscaler.disable(app.service.pool(pool_id)), 200)


def evaluate_autoscale(app: Account, request: Request) -> Response:
    with app.state.tx():
        run = app.autoscaler.evaluate(app.service.pool(request.params["pool"]), request.json() or {})
    body = {"odata.metadata": wire.odata_metadata(app.account_url, AUTOSCALE_RUN_KIND), **run}
    return Response(200, body, {"DataServiceId": app.account_url + request.path})


ROUTES = [
    ("POST", "pools/{pool}/enableautoscale", enable_autoscale),
    ("POST", "pools/{pool}/disableautoscale", disable_autoscale),
    ("POST", "pools/{pool}/evaluateautoscale", evaluate_autoscale),
]
