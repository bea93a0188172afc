"""Routes for the compute nodes of a pool."""

from ..odata import project
from ..service import NODE_FILTER_FIELDS
from .base import Account, Request, Response, after_token, page, select


def list_nodes(app: Account, request: Request) -> Response:
    with app.state.tx():
        pool = app.service.pool(request.params["pool"])
        nodes = app.state.nodes[pool["id"].lower()]
        return page(app, request, after_token(nodes, request), NODE_FILTER_FIELDS,
                    lambda node: app.service.present_node(pool, node))


def get_node(app: Account, request: Request) -> Response:
    with app.state.tx():
        pool = app.service.pool(request.params["pool"])
        node = app.service.node(request.params["pool"], request.params["node"])
        presented = app.service.present_node(pool, node)
        fields = select(request)
        return Response(200, project(presented, fields) if fields else presented)


ROUTES = [
    ("GET", "pools/{pool}/nodes", list_nodes), ("GET", "pools/{pool}/nodes/{node}", get_node),
]
