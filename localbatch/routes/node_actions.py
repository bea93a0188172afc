"""Routes for what a client does to nodes: scheduling, reboot, reimage, deallocate/start, remove nodes,
users, remote login settings, extensions and the upload of Batch service logs."""

from .. import node_actions, wire
from .base import Account, Request, Response, element_body, numbered, page, write

UPLOAD_RESULT_KIND = "Microsoft.Azure.Batch.Protocol.Entities.UploadBatchServiceLogsResult"
REMOTE_LOGIN_KIND = "Microsoft.Azure.Batch.Protocol.Entities.RemoteLoginSettings"


def _node_action(app: Account, request: Request, action, status: int) -> Response:
    """A node action: answered, as the service does, with the action's URL and no ETag."""
    with app.state.tx():
        pool = app.service.pool(request.params["pool"])
        node = app.service.node(request.params["pool"], request.params["node"])
        action(pool, node)
    return Response(status, None, {"DataServiceId": app.account_url + request.path})


def disable_scheduling(app: Account, request: Request) -> Response:
    body = request.json()
    return _node_action(app, request, lambda pool, node: app.node_actions.disable_scheduling(pool, node, body), 200)


def enable_scheduling(app: Account, request: Request) -> Response:
    return _node_action(app, request, app.node_actions.enable_scheduling, 200)


def reboot(app: Account, request: Request) -> Response:
    body = request.json()
    return _node_action(app, request, lambda pool, node: app.node_actions.reboot(pool, node, body), 202)


def reimage(app: Account, request: Request) -> Response:
    body = request.json()
    return _node_action(app, request, lambda pool, node: app.node_actions.reimage(pool, node, body), 202)


def deallocate(app: Account, request: Request) -> Response:
    body = request.json()
    return _node_action(app, request, lambda pool, node: app.node_actions.deallocate(pool, node, body), 202)


def start(app: Account, request: Request) -> Response:
    return _node_action(app, request, app.node_actions.start, 202)


def remove_nodes(app: Account, request: Request) -> Response:
    pool_id = request.params["pool"]
    return write(app, request, lambda: app.service.pool(pool_id),
                 lambda: app.node_actions.remove_nodes(app.service.pool(pool_id), request.json()), 202)


def add_user(app: Account, request: Request) -> Response:
    body = request.json()
    with app.state.tx():
        pool = app.service.pool(request.params["pool"])
        node = app.service.node(request.params["pool"], request.params["node"])
        user = app.node_actions.add_user(pool, node, body)
    url = f"{app.account_url}{request.path}/{user['name']}"
    return Response(201, None, {"DataServiceId": url, "Location": url})


def replace_user(app: Account, request: Request) -> Response:
    body = request.json()
    name = request.params["user"]
    return _node_action(app, request, lambda pool, node: app.node_actions.replace_user(pool, node, name, body), 200)


def delete_user(app: Account, request: Request) -> Response:
    name = request.params["user"]
    with app.state.tx():
        pool = app.service.pool(request.params["pool"])
        node = app.service.node(request.params["pool"], request.params["node"])
        app.node_actions.delete_user(pool, node, name)
    return Response(200)


def remote_login_settings(app: Account, request: Request) -> Response:
    with app.state.tx():
        pool = app.service.pool(request.params["pool"])
        node = app.service.node(request.params["pool"], request.params["node"])
        settings = node_actions.NodeActions.remote_login(pool, node)
    body = {"odata.metadata": wire.odata_metadata(app.account_url, REMOTE_LOGIN_KIND), **settings}
    return Response(200, body, {"DataServiceId": app.account_url + request.path})


def upload_logs(app: Account, request: Request) -> Response:
    body = request.json()
    with app.state.tx():
        pool = app.service.pool(request.params["pool"])
        node = app.service.node(request.params["pool"], request.params["node"])
        container_url, directory, files = app.node_actions.service_logs(pool, node, body, request.request_id)
    # The upload talks to Blob storage: never while holding the account lock.
    count = node_actions.upload_logs(container_url, directory, files)
    return Response(200, {"odata.metadata": wire.odata_metadata(app.account_url, UPLOAD_RESULT_KIND),
                          "virtualDirectoryName": directory, "numberOfFilesUploaded": count})


def list_extensions(app: Account, request: Request) -> Response:
    with app.state.tx():
        pool = app.service.pool(request.params["pool"])
        app.service.node(request.params["pool"], request.params["node"])
        rows = app.node_actions.extensions(pool)
    # "extensions", as in the recorded odata.metadata of one extension (…#extensions/@Element).
    return page(app, request, numbered(rows, request), {}, lambda row: row, "extensions")


def get_extension(app: Account, request: Request) -> Response:
    with app.state.tx():
        pool = app.service.pool(request.params["pool"])
        app.service.node(request.params["pool"], request.params["node"])
        extension = app.node_actions.extension(pool, request.params["extension"])
    return Response(200, element_body(request, extension, "extensions", app.account_url))


ROUTES = [
    ("POST", "pools/{pool}/nodes/{node}/disablescheduling", disable_scheduling),
    ("POST", "pools/{pool}/nodes/{node}/enablescheduling", enable_scheduling),
    ("POST", "pools/{pool}/nodes/{node}/reboot", reboot),
    ("POST", "pools/{pool}/nodes/{node}/reimage", reimage),
    ("POST", "pools/{pool}/nodes/{node}/deallocate", deallocate),
    ("POST", "pools/{pool}/nodes/{node}/start", start),
    ("POST", "pools/{pool}/removenodes", remove_nodes),
    ("POST", "pools/{pool}/nodes/{node}/users", add_user),
    ("PUT", "pools/{pool}/nodes/{node}/users/{user}", replace_user),
    ("DELETE", "pools/{pool}/nodes/{node}/users/{user}", delete_user),
    ("GET", "pools/{pool}/nodes/{node}/remoteloginsettings", remote_login_settings),
    ("POST", "pools/{pool}/nodes/{node}/uploadbatchservicelogs", upload_logs),
    ("GET", "pools/{pool}/nodes/{node}/extensions", list_extensions),
    ("GET", "pools/{pool}/nodes/{node}/extensions/{extension}", get_extension),
]
