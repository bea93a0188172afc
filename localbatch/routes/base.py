"""What every route shares: the request and response, conditional headers, $select, and list pages."""

import bisect
import json
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol
from urllib.parse import quote, urlencode

from .. import API_VERSION, errors, wire
from ..faults import Faults
from ..odata import ODataError, compile_filter, parse_select, project
from ..service import BatchService
from ..state import AccountState
from ..timing import Timers, Timing

if TYPE_CHECKING:
    from ..autoscale import Autoscaler
    from ..node_actions import NodeActions
    from ..schedules import JobSchedules
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
    schedules: "JobSchedules"


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


def entity_response(request: Request, entity: dict, presented: dict, kind: str, account_url: str) -> Response:
    """One entity read (GET or HEAD); `kind` names its collection in `odata.metadata` ("pools", "jobs", …)."""
    check_conditions(request, entity, read=True)
    return Response(200, None if request.method == "HEAD" else element_body(request, presented, kind, account_url),
                    entity_headers(entity))


def element_body(request: Request, presented: dict, kind: str, account_url: str) -> dict:
    fields = select(request)
    body = {"odata.metadata": wire.odata_metadata(account_url, f"{kind}/@Element")}
    body.update(project(presented, fields) if fields else presented)
    return body


def entity_headers(entity: dict, data_service_id: str | None = None) -> dict[str, str]:
    headers = {"ETag": entity["eTag"], "Last-Modified": to_rfc1123(entity["lastModified"])}
    if data_service_id:
        headers["DataServiceId"] = data_service_id
    return headers


def created(entity: dict, url: str) -> Response:
    """201 for a new pool, job or task: no body; where it is in Location and DataServiceId."""
    return Response(201, None, entity_headers(entity, url) | {"Location": url})


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


def write(app: Account, request: Request, entity_of, action, status: int) -> Response:
    """A change to one entity, refused with 412 when the request's conditions do not hold. The answer carries
    the entity's new ETag and, as the service's does, the request's URL as DataServiceId; a delete neither."""
    with app.state.tx():
        entity = entity_of()
        check_conditions(request, entity, read=False)
        action()
        if request.method == "DELETE" or not entity.get("eTag"):
            return Response(status)
        return Response(status, None, entity_headers(entity, app.account_url + request.path))


def select(request: Request):
    try:
        return parse_select(request.query.get("$select"))
    except ODataError as exc:
        raise errors.invalid_query("$select", request.query.get("$select"), str(exc)) from None


def page(app: Account, request: Request, entities, fields: dict, present, kind: str, *,
         filter_stored: bool = False) -> Response:
    """One page of a list: filter, $select and a nextLink that carries every list parameter.

    `entities` yields (skip token, entity) in list order, starting after the request's skip token
    (`in_id_order`, `numbered`). `filter_stored`: every property the filter can name is stored as it is presented,
    so `entities` is a function of the filter (None without one) that filters the stored entities before it orders
    them, and only what it keeps is presented (a filtered listing of a 20,000-task job presented, then sorted and
    numbered, every task to keep a few)."""
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
    if filter_stored:
        entities = entities(predicate if query.get("$filter") else None)
    items, last_token, more = [], None, False
    for token, entity in entities:
        presented = present(entity)
        if not filter_stored and not predicate(presented):
            continue
        if len(items) == page_size:
            more = True
            break
        items.append(project(presented, selected) if selected else presented)
        last_token = token
    body = {"odata.metadata": wire.odata_metadata(app.account_url, kind), "value": items}
    if more:
        next_query = {"api-version": query.get("api-version", API_VERSION), "maxresults": page_size,
                      "$skiptoken": last_token}
        for name in ("$filter", "$select", "$expand", "recursive"):
            if query.get(name):
                next_query[name] = query[name]
        body["odata.nextLink"] = f"{app.account_url}{request.path}?{urlencode(next_query, quote_via=quote)}"
    return Response(200, body)


def in_id_order(entities: dict, request: Request, keep: Callable[[dict], bool] | None = None):
    """(skip token, entity) pairs of a dict keyed by id, in id order as the service lists, after the skip token; with
    `keep`, only the entities it keeps."""
    after = _skip_token(request, "id.")
    if keep is not None:
        entities = {key: entity for key, entity in entities.items() if keep(entity)}
    keys = sorted(entities)
    start = bisect.bisect_right(keys, after) if after else 0
    return ((f"id.{key}", entities[key]) for key in keys[start:])


def numbered(rows: list, request: Request):
    """(skip token, row) pairs of rows that have no id of their own (files, counts), after the skip token."""
    after = _skip_token(request, "n.")
    try:
        start = int(after) if after else 0
        if start < 0:
            raise ValueError
    except ValueError:
        raise errors.invalid_query("$skiptoken", request.query.get("$skiptoken"),
                                   "The skip token is not valid.") from None
    return ((f"n.{index}", row) for index, row in enumerate(rows[start:], start=start + 1))


def _skip_token(request: Request, prefix: str) -> str:
    token = request.query.get("$skiptoken")
    if not token:
        return ""
    if not token.startswith(prefix) or len(token) == len(prefix):
        raise errors.invalid_query("$skiptoken", token, "The skip token is not valid.")
    return token[len(prefix):]


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
