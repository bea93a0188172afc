"""A tiny stdlib client for localbatch's admin routes: `/_localbatch/faults` (fault injection) and
`/_localbatch/timing` (how fast the service's clocks run).

Requests are signed with SharedKey like every other localbatch request, so only holders of the
account key can change the faults:

    from localbatch.admin import set_faults, get_faults
    set_faults(endpoint, name, key, rate=0.3, status=503, retry_after=0)
    ...
    set_faults(endpoint, name, key)          # back to no faults
"""

import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from . import auth
from .timeutil import to_rfc1123, utcnow

FAULTS_PATH = "/_localbatch/faults"
TIMING_PATH = "/_localbatch/timing"


class AdminError(RuntimeError):
    """The admin route answered with an error: `status` is the HTTP status, `code` the Batch error code."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _request(method: str, endpoint: str, account_name: str, account_key: str, body: dict | None = None,
             timeout: float = 30.0, path: str = FAULTS_PATH) -> dict:
    endpoint = endpoint.rstrip("/")
    raw_url = urlsplit(endpoint).path + path
    payload = json.dumps(body).encode() if body is not None else b""
    headers = {"ocp-date": to_rfc1123(utcnow())}
    if method not in ("GET", "HEAD"):
        headers["content-type"] = "application/json"
        headers["content-length"] = str(len(payload))
    headers["authorization"] = auth.authorization_header(method, raw_url, headers, account_name, account_key)
    request = urllib.request.Request(endpoint + path, data=payload if method not in ("GET", "HEAD") else None,
                                     headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", "replace")
        try:
            error = json.loads(text)
            code, message = error.get("code", ""), (error.get("message") or {}).get("value", text)
        except ValueError:
            code, message = "", text
        raise AdminError(exc.code, code, message) from None


def set_faults(endpoint: str, account_name: str, account_key: str, *, rate: float = 0.0, status: int = 503,
               retry_after: int = 1, delay_ms: int = 0, path_pattern: str = "", count: int = -1) -> dict:
    """Replace the account's fault settings (the defaults mean: no faults) and return them as the server
    now has them: {"rate", "status", "retryAfter", "delayMs", "pathPattern", "count"}."""
    body = {"rate": rate, "status": status, "retryAfter": retry_after, "delayMs": delay_ms,
            "pathPattern": path_pattern, "count": count}
    return _request("PUT", endpoint, account_name, account_key, body)


def get_faults(endpoint: str, account_name: str, account_key: str) -> dict:
    """The account's current fault settings, in the shape `set_faults` returns."""
    return _request("GET", endpoint, account_name, account_key)


def set_timing(endpoint: str, account_name: str, account_key: str, *, time_scale: float = 1.0) -> dict:
    """Run the service's clocks (autoscale intervals and samples, the 30 s between autoscale enables, job
    schedule recurrences) `time_scale` times their real length: 0.01 makes 5 minutes pass in 3 s."""
    return _request("PUT", endpoint, account_name, account_key, {"timeScale": time_scale}, path=TIMING_PATH)


__all__ = ["AdminError", "FAULTS_PATH", "TIMING_PATH", "get_faults", "set_faults", "set_timing"]
