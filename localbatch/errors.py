"""Batch service errors: the codes, HTTP statuses and body shape the real service sends."""

import uuid

from .timeutil import now_iso

ERROR_METADATA = "Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element"


class BatchError(Exception):
    """An error answered to the client as Batch's error body (top-level code/message/values)."""

    def __init__(self, status: int, code: str, message: str, values: dict | None = None,
                 retry_after: int | None = None):
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.values = values or {}
        self.retry_after = retry_after

    def body(self, request_id: str | None = None, account_url: str = "") -> dict:
        """The error as the service writes it: `values` only when there are some."""
        request_id = request_id or str(uuid.uuid4())
        body = {
            "odata.metadata": f"{account_url}/$metadata#{ERROR_METADATA}",
            "code": self.code,
            "message": {"lang": "en-US", "value": f"{self.message}\nRequestId:{request_id}\nTime:{now_iso()}"},
        }
        if self.values:
            body["values"] = [{"key": k, "value": str(v)} for k, v in self.values.items()]
        return body

    def task_result_error(self) -> dict:
        """The error object carried by one entry of an addtaskcollection result."""
        body = self.body()
        body.pop("odata.metadata")
        return body


def not_found(kind: str, ident: str) -> BatchError:
    return BatchError(404, f"{kind}NotFound", f"The specified {kind.lower()} does not exist.",
                      {f"{kind}Id": ident} if kind in ("Pool", "Job", "Task", "Node") else None)


def exists(kind: str) -> BatchError:
    return BatchError(409, f"{kind}Exists", f"The specified {kind.lower()} already exists.")


def conflict(code: str, message: str) -> BatchError:
    return BatchError(409, code, message)


def missing_property(name: str) -> BatchError:
    return BatchError(400, "MissingRequiredProperty", "A required property was not specified in the request body.",
                      {"PropertyName": name})


def invalid_property(name: str, value, reason: str) -> BatchError:
    return BatchError(400, "InvalidPropertyValue",
                      "The value provided for one of the properties in the request body is invalid.",
                      {"PropertyName": name, "PropertyValue": value, "Reason": reason})


def invalid_query(name: str, value, reason: str) -> BatchError:
    return BatchError(400, "InvalidQueryParameterValue",
                      "The value for one of the query parameters specified in the request is invalid.",
                      {"QueryParameterName": name, "QueryParameterValue": value, "Reason": reason})


def condition_not_met(status: int = 412) -> BatchError:
    return BatchError(status, "ConditionNotMet", "The condition specified using HTTP conditional header(s) is not met.")
