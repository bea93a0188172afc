"""Shared parts of the submission page tests: Azurite as the portal's storage, and an upload done
the way static/js/upload.js does it (ask the portal, then Put Block and Put Block List with the SAS it returned)."""

import base64
import json
import re

import requests
from django.urls import reverse

from batchsync.accounts import blob_store

BLOCK_BYTES = 4 * 1024 * 1024


def use_azurite(azurite, settings):
    """Make the Azurite fixture the portal's storage, its containers made (a `storage` fixture calls this)."""
    settings.AZURE_STORAGE_CONNECTION_STRING = azurite.connection_string
    with blob_store() as store:
        store.ensure_containers()
    return azurite


def ask_upload(client, slug: str, parameter: str, name: str, size: int, **extra):
    return client.post(reverse("submit_upload", args=[slug]),
                       data=json.dumps({"parameter": parameter, "name": name, "size": size, **extra}),
                       content_type="application/json")


def put_blocks(sas_url: str, data: bytes, block_bytes: int = BLOCK_BYTES) -> None:
    ids = []
    for index, start in enumerate(range(0, len(data), block_bytes)):
        block_id = base64.b64encode(f"block-{index:08d}".encode()).decode()
        response = requests.put(f"{sas_url}&comp=block&blockid={requests.utils.quote(block_id, safe='')}",
                                data=data[start:start + block_bytes], timeout=30)
        assert response.status_code == 201, response.text
        ids.append(block_id)
    body = "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>" + "".join(
        f"<Latest>{block_id}</Latest>" for block_id in ids) + "</BlockList>"
    response = requests.put(f"{sas_url}&comp=blocklist", data=body.encode(), timeout=30,
                            headers={"Content-Type": "application/xml"})
    assert response.status_code == 201, response.text


def upload(client, slug: str, parameter: str, name: str, data: bytes) -> str:
    """Upload one file as the browser does; the token the form posts for it."""
    response = ask_upload(client, slug, parameter, name, len(data))
    assert response.status_code == 200, response.content
    answer = response.json()
    put_blocks(answer["sas_url"], data)
    return answer["token"]


def form_values(response) -> dict:
    """The preview page's hidden payload, ready to post to the confirm view."""
    html = response.content.decode()
    payload = re.search(r'name="payload" value="([^"]+)"', html)
    assert payload, "no preview payload on the page"
    return {"payload": payload.group(1)}
