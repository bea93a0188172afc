"""Blob storage, the portal's side of it: uploaded inputs, saved logs and outputs, and SAS URLs that each allow
one thing for a short time. Like client.py, the only place that imports the storage SDK; callers get our
dataclasses and errors.

Blob paths, not URLs, are what the database keeps: a SAS is signed when it is needed (a task is built, a person
downloads), so no stored row carries a credential that could leak or expire.

Two ways in: an account key (a connection string), or Microsoft Entra ID (an account URL and a TokenCredential).
With Entra ID every SAS is a user-delegation SAS, signed with a key Storage hands out for the identity's token
(`get_user_delegation_key`); such a key lives at most 7 days, and so does any SAS signed with it."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContainerSasPermissions,
    ContentSettings,
    CorsRule,
    LinearRetry,
    UserDelegationKey,
    generate_blob_sas,
    generate_container_sas,
)

from .errors import AuthFailed, GatewayError, NotFound, Transient

# A SAS starts a little in the past: the signer's clock and the storage service's may disagree.
_CLOCK_SKEW = timedelta(minutes=5)
READ_CHUNK_BYTES = 4 * 1024 * 1024
# Storage's longest user-delegation key, less a margin for the clocks; and how long a key is reused for signing: one
# request to Storage per hour and process, not one per SAS, at the price of the longest SAS ending up to an hour
# short of 7 days.
_DELEGATION_KEY_LIFETIME = timedelta(days=7) - _CLOCK_SKEW
_DELEGATION_KEY_REUSE = timedelta(hours=1)
_delegation_lock = threading.Lock()
_delegation_keys: dict[str, tuple[UserDelegationKey, datetime]] = {}


@dataclass(frozen=True)
class BlobInfo:
    container: str
    path: str
    size: int
    last_modified: datetime | None = None
    # Changes with every write, even one within the same second as the last: what tells a replaced upload apart.
    etag: str = ""


@dataclass(frozen=True)
class Containers:
    """The containers the portal uses; names come from settings (portal/settings.py STORAGE_*). `audit` holds the
    audit chain's published heads, written once each (in production a container with an immutability policy)."""
    inputs: str = "portal-inputs"
    logs: str = "portal-logs"
    outputs: str = "portal-outputs"
    audit: str = "portal-audit"

    def __iter__(self) -> Iterator[str]:
        return iter((self.inputs, self.logs, self.outputs, self.audit))


class BlobStore:
    def __init__(self, connection_string: str = "", containers: Containers | None = None, *, account_url: str = "",
                 credential: TokenCredential | None = None, ca_bundle: str | None = None):
        """With `connection_string`, the account key it holds; with `account_url` and `credential`, Entra ID.
        `ca_bundle`: a CA file to trust instead of the system's (a test or private endpoint only)."""
        # Uploads bigger than one block go up block by block: a streamed put holds one block, not the whole blob.
        # Retries are few and short: a page asking for a saved copy falls back to the node within seconds when
        # storage does not answer (the SDK's default waits 15 s and more between tries); the archiver simply tries
        # again at its next pass.
        options: dict[str, Any] = dict(
            max_single_put_size=READ_CHUNK_BYTES, max_block_size=READ_CHUNK_BYTES,
            retry_policy=LinearRetry(backoff=0.3, retry_total=2, random_jitter_range=0.1))  # type: ignore[arg-type]
        if ca_bundle:
            options["connection_verify"] = ca_bundle
        self.containers = containers or Containers()
        self._account_key: str | None = None
        if credential is not None:
            self._service = BlobServiceClient(account_url, credential=credential, **options)
            self._account_name = str(self._service.account_name)
        else:
            self._service = BlobServiceClient.from_connection_string(connection_string, **options)
            self._account_name = str(self._service.credential.account_name)
            self._account_key = self._service.credential.account_key

    def close(self) -> None:
        self._service.close()

    def __enter__(self) -> BlobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- set-up ---------------------------------------------------------------------------------------------

    def ensure_containers(self, *, cors_origins: Iterable[str] = ()) -> None:
        """Create the containers if missing (private: no anonymous access) and, when browsers upload straight to
        storage, allow those origins to PUT blocks."""
        with _translated():
            for name in self.containers:
                try:
                    self._service.create_container(name)
                except ResourceExistsError:
                    pass
            origins = sorted(set(cors_origins))
            if origins:
                rule = CorsRule(origins, ["PUT", "OPTIONS"], allowed_headers=["*"], exposed_headers=["*"],
                                max_age_in_seconds=3600)
                self._service.set_service_properties(cors=[rule])

    def missing_containers(self, *, timeout: float) -> list[str]:
        """The portal's containers that do not exist, asked without retries, each wait at most `timeout` seconds;
        raises a GatewayError when storage does not answer or refuses the credentials (readiness)."""
        missing = []
        with _translated():
            for name in self.containers:
                try:
                    self._service.get_container_client(name).get_container_properties(
                        retry_total=0, connection_timeout=timeout, read_timeout=timeout)
                except ResourceNotFoundError:
                    missing.append(name)
        return missing

    # --- SAS URLs -------------------------------------------------------------------------------------------

    def upload_url(self, path: str, *, minutes: int = 30) -> str:
        """A URL that can create and write one blob in the inputs container and nothing else (no read, list or
        delete), valid for `minutes`: handed to a browser to upload one file in blocks."""
        return self._blob_url(self.containers.inputs, path, BlobSasPermissions(create=True, write=True),
                              timedelta(minutes=minutes))

    def read_url(self, container: str, path: str, *, hours: float = 1, download_name: str | None = None,
                 snapshot: str | None = None) -> str:
        """A read-only URL to one blob: a task's resource file, or a download link (`download_name` makes the
        browser save it under that name rather than show it). With `snapshot`, to that snapshot of it."""
        disposition = f'attachment; filename="{download_name}"' if download_name else None
        url = self._blob_url(container, path, BlobSasPermissions(read=True), timedelta(hours=hours),
                             content_disposition=disposition, snapshot=snapshot or None)
        if snapshot:
            base, token = url.split("?", 1)
            url = f"{base}?snapshot={quote(snapshot, safe='')}&{token}"
        return url

    def snapshot(self, container: str, path: str) -> tuple[str, str]:
        """Freeze the blob as it is now: (the snapshot's id, the ETag the blob had). A snapshot cannot be written,
        so what a task reads from it later is exactly what was checked. Raises NotFound."""
        with _translated():
            made = self._service.get_blob_client(container, path).create_snapshot()
        return str(made["snapshot"]), str(made["etag"])

    def container_write_url(self, container: str, *, hours: float) -> str:
        """A container URL that can create and write blobs but not read, list or delete them: what Batch's
        output-file rules upload with. It must outlive the task, so `hours` covers the longest job."""
        start, expiry = _window(timedelta(hours=hours))
        token = generate_container_sas(self._account_name, container,
                                       permission=ContainerSasPermissions(create=True, write=True),
                                       start=start, **self._signer(expiry))
        return f"{self._service.get_container_client(container).url}?{token}"

    def blob_url(self, container: str, path: str) -> str:
        """The blob's address without any SAS: it names the blob, it grants nothing."""
        return self._service.get_blob_client(container, path).url

    def _blob_url(self, container: str, path: str, permission: BlobSasPermissions, lifetime: timedelta,
                  *, content_disposition: str | None = None, snapshot: str | None = None) -> str:
        start, expiry = _window(lifetime)
        token = generate_blob_sas(self._account_name, container, path, permission=permission, start=start,
                                  snapshot=snapshot, content_disposition=content_disposition, **self._signer(expiry))
        return f"{self._service.get_blob_client(container, path).url}?{token}"

    def _signer(self, expiry: datetime) -> dict[str, Any]:
        """What signs a SAS that should last until `expiry`: the account key, or a user-delegation key (the SAS then
        ends with the key, at most 7 days from when it was fetched)."""
        if self._account_key:
            return {"account_key": self._account_key, "expiry": expiry}
        key, key_expiry = self._delegation_key(expiry)
        return {"user_delegation_key": key, "expiry": min(expiry, key_expiry)}

    def _delegation_key(self, until: datetime) -> tuple[UserDelegationKey, datetime]:
        now = datetime.now(UTC)
        wanted = min(until, now + _DELEGATION_KEY_LIFETIME - _DELEGATION_KEY_REUSE)
        with _delegation_lock:
            cached = _delegation_keys.get(self._service.url)
            if cached and cached[1] >= wanted:
                return cached
            expiry = now + _DELEGATION_KEY_LIFETIME
            with _translated():
                # Storage Blob Data Contributor includes the right to ask for one (…/generateUserDelegationKey/action).
                key = self._service.get_user_delegation_key(now - _CLOCK_SKEW, expiry)
            _delegation_keys[self._service.url] = (key, expiry)
            return key, expiry

    # --- reading --------------------------------------------------------------------------------------------

    def has_container(self, container: str) -> bool:
        """Whether the container exists; raises Transient when storage does not answer."""
        with _translated():
            return self._service.get_container_client(container).exists()

    def info(self, container: str, path: str) -> BlobInfo | None:
        """The blob's size and time, or None when it does not exist."""
        with _translated():
            try:
                props = self._service.get_blob_client(container, path).get_blob_properties()
            except ResourceNotFoundError:
                return None
        return BlobInfo(container, path, props.size, props.last_modified, props.etag or "")

    def list_blobs(self, container: str, prefix: str) -> list[BlobInfo]:
        with _translated():
            return [BlobInfo(container, item.name, item.size, item.last_modified)
                    for item in self._service.get_container_client(container).list_blobs(name_starts_with=prefix)]

    def list_page(self, container: str, prefix: str, *, size: int,
                  token: str | None = None) -> tuple[list[BlobInfo], str | None]:
        """One page of at most `size` blobs under `prefix`, in name order, from where `token` (the previous page's
        continuation token, as storage made it) left off; and the next page's token, None after the last page.
        One request to storage, whatever the number of blobs under the prefix. A token storage cannot read is
        refused (GatewayError with status 400)."""
        with _translated():
            pages = self._service.get_container_client(container).list_blobs(
                name_starts_with=prefix, results_per_page=size).by_page(continuation_token=token or None)
            items = [BlobInfo(container, item.name, item.size, item.last_modified) for item in next(pages, [])]
            # The SDK's page iterator carries the next page's token; its stubs type it as a plain iterator.
            return items, getattr(pages, "continuation_token", None) or None

    def iter_blobs(self, container: str, prefix: str, *, page_size: int = 5000) -> Iterator[BlobInfo]:
        """Every blob under `prefix` in name order, listed one page at a time while the caller consumes them: memory
        holds one page however many blobs there are."""
        token: str | None = None
        while True:
            items, token = self.list_page(container, prefix, size=page_size, token=token)
            yield from items
            if token is None:
                return

    def read_range(self, container: str, path: str, start: int, length: int) -> bytes:
        """Bytes [start, start + length) of the blob, fewer at its end. Raises NotFound."""
        if length <= 0:
            return b""
        with _translated():
            downloader = self._service.get_blob_client(container, path).download_blob(offset=start, length=length)
            return downloader.readall()

    def read_all(self, container: str, path: str) -> bytes:
        """A small blob's bytes, whole. Raises NotFound."""
        with _translated():
            return self._service.get_blob_client(container, path).download_blob().readall()

    # --- writing (the archiver, tests) ---------------------------------------------------------------------

    def put_once(self, container: str, path: str, data: bytes, *,
                 content_type: str = "application/json") -> bool:
        """Create the blob only if no blob has that name: False, and nothing written, if one has. Nothing the
        portal writes this way is ever replaced by it."""
        with _translated():
            try:
                self._service.get_blob_client(container, path).upload_blob(
                    data, overwrite=False, content_settings=ContentSettings(content_type=content_type))
            except ResourceExistsError:
                return False
        return True

    def put(self, container: str, path: str, data: bytes | Iterable[bytes], *, length: int | None = None,
            content_type: str = "text/plain; charset=utf-8") -> None:
        """Write the blob, replacing it; `data` may be an iterable of chunks (streamed with `length` given)."""
        with _translated():
            self._service.get_blob_client(container, path).upload_blob(
                data, length=length, overwrite=True, content_settings=ContentSettings(content_type=content_type))


def _window(lifetime: timedelta) -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - _CLOCK_SKEW, now + lifetime


@contextmanager
def _translated() -> Iterator[None]:
    """Storage SDK errors out as our own; messages never carry the SAS or the key (the SDK puts neither in)."""
    try:
        yield
    except ResourceNotFoundError as exc:
        raise NotFound(f"not found in blob storage: {_reason(exc)}", status=404) from None
    except HttpResponseError as exc:
        status = exc.status_code
        if status in (401, 403):
            raise AuthFailed(f"blob storage refused the credentials: {_reason(exc)}", status=status) from None
        if status is None or status in (408, 429) or status >= 500:
            raise Transient(f"blob storage did not answer: {_reason(exc)}", status=status) from None
        raise GatewayError(f"blob storage refused the request: {_reason(exc)}", status=status) from None
    except AzureError as exc:
        raise Transient(f"blob storage could not be reached: {type(exc).__name__}") from None


def _reason(exc: HttpResponseError) -> str:
    code = getattr(exc, "error_code", None)
    return str(code) if code else (exc.reason or "unknown error")
