"""Routes for pools: create, get, list, update, resize, delete; node counts and supported images."""

from .. import stats
from ..service import POOL_FILTER_FIELDS
from .base import Account, Request, Response, created, entity_response, in_id_order, numbered, page, write

SUPPORTED_IMAGES = [
    {"nodeAgentSKUId": "batch.node.ubuntu 22.04", "osType": "linux", "verificationType": "verified",
     "capabilities": [], "imageReference": {"publisher": "canonical", "offer": "0001-com-ubuntu-server-jammy",
                                            "sku": "22_04-lts", "version": "latest"}},
    {"nodeAgentSKUId": "batch.node.ubuntu 24.04", "osType": "linux", "verificationType": "verified",
     "capabilities": [], "imageReference": {"publisher": "canonical", "offer": "ubuntu-24_04-lts",
                                            "sku": "server", "version": "latest"}},
]


def create_pool(app: Account, request: Request) -> Response:
    with app.state.tx():
        pool = app.service.create_pool(request.json())
        return created(pool, f"{app.account_url}/pools/{pool['id']}")


def get_pool(app: Account, request: Request) -> Response:
    with app.state.tx():
        pool = app.service.pool(request.params["pool"])
        present = stats.pool_presenter(request.query, app.service)
        return entity_response(request, pool, present(pool), "pools", app.account_url)


def list_pools(app: Account, request: Request) -> Response:
    with app.state.tx():
        return page(app, request, in_id_order(app.state.pools, request), POOL_FILTER_FIELDS,
                    stats.pool_presenter(request.query, app.service), "pools")


def delete_pool(app: Account, request: Request) -> Response:
    pool_id = request.params["pool"]
    return write(app, request, lambda: app.service.pool(pool_id), lambda: app.service.delete_pool(pool_id), 202)


def patch_pool(app: Account, request: Request) -> Response:
    pool_id = request.params["pool"]
    return write(app, request, lambda: app.service.pool(pool_id),
                 lambda: app.service.update_pool(pool_id, request.json() or {}, replace=False), 200)


def replace_pool_properties(app: Account, request: Request) -> Response:
    pool_id = request.params["pool"]
    return write(app, request, lambda: app.service.pool(pool_id),
                 lambda: app.service.update_pool(pool_id, request.json() or {}, replace=True), 204)


def resize_pool(app: Account, request: Request) -> Response:
    pool_id = request.params["pool"]
    return write(app, request, lambda: app.service.pool(pool_id),
                 lambda: app.service.resize_pool(pool_id, request.json() or {}), 202)


def stop_resize(app: Account, request: Request) -> Response:
    pool_id = request.params["pool"]
    return write(app, request, lambda: app.service.pool(pool_id), lambda: app.service.stop_resize(pool_id), 202)


def node_counts(app: Account, request: Request) -> Response:
    with app.state.tx():
        rows = app.service.node_counts()
    return page(app, request, numbered(rows, request), {"poolId": "string"}, lambda row: row, "poolnodecounts")


def supported_images(app: Account, request: Request) -> Response:
    return page(app, request, numbered(SUPPORTED_IMAGES, request), {"osType": "enum", "nodeAgentSKUId": "string"},
                lambda image: image, "supportedimages")


ROUTES = [
    ("GET", "pools", list_pools), ("POST", "pools", create_pool),
    ("GET", "pools/{pool}", get_pool), ("HEAD", "pools/{pool}", get_pool),
    ("DELETE", "pools/{pool}", delete_pool), ("PATCH", "pools/{pool}", patch_pool),
    ("POST", "pools/{pool}/updateproperties", replace_pool_properties),
    ("POST", "pools/{pool}/resize", resize_pool), ("POST", "pools/{pool}/stopresize", stop_resize),
    ("GET", "nodecounts", node_counts), ("GET", "supportedimages", supported_images),
]
