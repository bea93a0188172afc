"""localbatch's own routes under /_localbatch: fault injection settings (signed like any request)."""

import re

from .. import errors
from ..faults import Faults
from .base import Account, Request, Response


def get_faults(app: Account, request: Request) -> Response:
    return Response(200, app.faults.as_dict())


def put_faults(app: Account, request: Request) -> Response:
    body = request.json() or {}
    try:
        faults = Faults(rate=float(body.get("rate", 0.0)), status=int(body.get("status", 503)),
                        retry_after=int(body.get("retryAfter", 1)), delay_ms=int(body.get("delayMs", 0)),
                        path_pattern=str(body.get("pathPattern", "")), count=int(body.get("count", -1)))
        re.compile(faults.path_pattern)
    except (TypeError, ValueError, re.error) as exc:
        raise errors.BatchError(400, "InvalidRequestBody", f"Bad fault settings: {exc}.") from None
    if not 0 <= faults.rate <= 1 or faults.status not in (429, 500, 503):
        raise errors.BatchError(400, "InvalidRequestBody", "rate must be 0..1 and status one of 429, 500, 503.")
    app.faults = faults
    return Response(200, app.faults.as_dict())


ROUTES = [
    ("GET", "_localbatch/faults", get_faults), ("PUT", "_localbatch/faults", put_faults),
]
