"""localbatch's own route /_localbatch/timing: how fast the service's clocks run (signed like any request)."""

from .. import errors
from .base import Account, Request, Response


def get_timing(app: Account, request: Request) -> Response:
    return Response(200, app.timing.as_dict())


def put_timing(app: Account, request: Request) -> Response:
    body = request.json() or {}
    scale = body.get("timeScale", 1.0) if isinstance(body, dict) else None
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0.0001 <= scale <= 1:
        raise errors.BatchError(400, "InvalidRequestBody",
                                "timeScale must be a number from 0.0001 to 1 (real seconds per service second).")
    with app.state.tx():
        app.timing.scale = float(scale)
    app.timers.wake()
    return Response(200, app.timing.as_dict())


ROUTES = [
    ("GET", "_localbatch/timing", get_timing), ("PUT", "_localbatch/timing", put_timing),
]
