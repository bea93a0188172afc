"""Routes for the compute nodes of a pool."""

from ..service import NODE_FILTER_FIELDS
from .base import Account, Request, Response, element_body, in_id_order, page


def list_nodes(app: Account, request: Request) -> Response:
    with app.state.tx():
        pool = app.service.pool(request.params["pool"])
        nodes = app.state.nodes[pool["id"].lower()]
        return page(app, request, in_id_order(nodes, request), NODE_FILTER_FIELDS,
                    lambda node: app.service.present_node(pool, node), "nodes")


def get_node(app: Account, request: Request) -> Response:
    with app.state.tx():
        pool = app.service.pool(request.params["pool"])
        node = app.service.node(request.params["pool"], request.params["node"])
        return Response(200, element_body(request, app.service.present_node(pool, node), "nodes", app.account_url))


ROUTES = [
    ("GET", "pools/{pool}/nodes", list_nodes), ("GET", "pools/{pool}/nodes/{node}", get_node),
]
