"""What every route shares: the request and response, conditional headers, $select, and list pages."""

import bisect
import json
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol
from urllib.parse import quote, urlencode

from .. import API_VERSION, errors
from ..faults import Faults
from ..odata import ODataError, compile_filter, parse_select, project
from ..service import BatchService
from ..state import AccountState
from ..timing import Timers, Timing

if TYPE_CHECKING:
    from ..autoscale import Autoscaler
    from ..node_actions import NodeActions
from ..timeutil import from_iso, from_rfc1123, to_rfc1123


class Account(Protocol):
    """What a route handler needs of the account it serves."""
    state: AccountState
    service: BatchService
    account_url: str
    faults: Faults
    timing: Timing
    timers: Timers
    autoscaler: "Autoscaler"
    node_actions: "NodeActions"


@dataclass
class Request:
    method: str
    raw_url: str
    path: str
    params: dict
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def json(self):
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise errors.BatchError(400, "InvalidRequestBody", "The request body is not valid JSON.") from None


@dataclass
class Response:
    status: int
    body: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    file: tuple[str, int, int] | None = None   # (path, offset, length) streamed from disk


Handler = Callable[[Account, Request], Response]


def entity_response(request: Request, entity: dict, presented: dict, status: int = 200) -> Response:
    check_conditions(request, entity, read=True)
    fields = select(request)
    body = project(presented, fields) if fields else presented
    return Response(status, None if request.method == "HEAD" else body, entity_headers(entity, presented))


def entity_headers(entity: dict, presented: dict | None = None) -> dict[str, str]:
    headers = {"ETag": entity["eTag"], "Last-Modified": to_rfc1123(entity["lastModified"])}
    if presented and presented.get("url"):
        headers["DataServiceId"] = presented["url"]
    return headers


def check_conditions(request: Request, entity: dict, read: bool) -> None:
    headers = request.headers
    etag = entity.get("eTag")
    modified = from_iso(entity["lastModified"]).replace(microsecond=0) if entity.get("lastModified") else None
    if_match = headers.get("if-match")
    if if_match and if_match != "*" and etag not in _etags(if_match):
        raise errors.condition_not_met(412)
    since = headers.get("if-unmodified-since")
    if since and modified and modified > from_rfc1123(since):
        raise errors.condition_not_met(412)
    if_none = headers.get("if-none-match")
    if if_none and (if_none == "*" or etag in _etags(if_none)):
        raise errors.condition_not_met(304 if read else 412)
    since = headers.get("if-modified-since")
    if since and modified and modified <= from_rfc1123(since):
        raise errors.condition_not_met(304 if read else 412)


def write(app: Account, request: Request, entity_of, action, status: int, include_headers: bool = True) -> Response:
    """A change to one entity, refused with 412 when the request's conditions do not hold."""
    with app.state.tx():
        entity = entity_of()
        check_conditions(request, entity, read=False)
        action()
        headers = entity_headers(entity) if include_headers and entity.get("eTag") else {}
        return Response(status, None, headers)


def select(request: Request):
    try:
        return parse_select(request.query.get("$select"))
    except ODataError as exc:
        raise errors.invalid_query("$select", request.query.get("$select"), str(exc)) from None


def page(app: Account, request: Request, entities, fields: dict, present) -> Response:
    """One page of a list: filter, $select and a nextLink that carries every list parameter."""
    query = request.query
    try:
        predicate = compile_filter(query.get("$filter"), fields)
    except ODataError as exc:
        raise errors.invalid_query("$filter", query.get("$filter"), str(exc)) from None
    selected = select(request)
    try:
        page_size = int(query.get("maxresults") or 1000)
    except ValueError:
        raise errors.invalid_query("maxresults", query.get("maxresults"), "Expected an integer.") from None
    if not 1 <= page_size <= 1000:
        raise errors.BatchError(400, "OutOfRangeQueryParameterValue",
                                "maxresults must be between 1 and 1000.",
                                {"QueryParameterName": "maxresults", "QueryParameterValue": page_size})
    try:
        after = int(query.get("$skiptoken") or 0)
    except ValueError:
        raise errors.invalid_query("$skiptoken", query.get("$skiptoken"), "The skip token is not valid.") from None
    items, last_seq, more = [], None, False
    for seq, entity in entities:
        if seq <= after:
            continue
        presented = present(entity)
        if not predicate(presented):
            continue
        if len(items) == page_size:
            more = True
            break
        items.append(project(presented, selected) if selected else presented)
        last_seq = seq
    body = {"odata.metadata": f"{app.account_url}/$metadata", "value": items}
    if more:
        next_query = {"api-version": query.get("api-version", API_VERSION), "maxresults": page_size,
                      "$skiptoken": last_seq}
        for name in ("$filter", "$select", "$expand", "recursive"):
            if query.get(name):
                next_query[name] = query[name]
        body["odata.nextLink"] = f"{app.account_url}{request.path}?{urlencode(next_query, quote_via=quote)}"
    return Response(200, body)


def after_token(entities: dict, request: Request):
    """(seq, entity) pairs in creation order, starting near the skip token so deep pages stay cheap."""
    values = list(entities.values())
    try:
        after = int(request.query.get("$skiptoken") or 0)
    except ValueError:
        after = 0
    if after:
        start = bisect.bisect_right(values, after, key=lambda e: e["_seq"])
        values = values[start:]
    return ((e["_seq"], e) for e in values)


def _etags(header: str) -> list[str]:
    """The entity tags of an If-Match/If-None-Match header. The SDK quotes them ('"0x8D..."', via
    azure-core's quote_etag) although Batch sends ETag unquoted, so quotes and W/ are dropped."""
    tags = []
    for tag in header.split(","):
        tag = tag.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if len(tag) >= 2 and tag[0] == tag[-1] and tag[0] in "\"'":
            tag = tag[1:-1]
        tags.append(tag)
    return tags
