"""Resource-file downloads and output-file uploads, against real Blob storage (Azure or Azurite)."""

import glob
import os
import shutil
import urllib.error
import urllib.request
from urllib.parse import urlsplit


class TransferError(Exception):
    """A download or upload failed; `code` is what Batch puts in the task's failureInfo."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _inside(root: str, relative: str) -> str:
    target = os.path.realpath(os.path.join(root, relative))
    if target != os.path.realpath(root) and not target.startswith(os.path.realpath(root) + os.sep):
        raise TransferError("ResourceFileWriteFailed", f"The path '{relative}' leaves the working directory.")
    return target


def _apply_mode(path: str, mode: str | None) -> None:
    os.chmod(path, int(mode, 8) if mode else 0o770)


def _http_download(url: str, target: str) -> None:
    if urlsplit(url).scheme not in ("http", "https"):
        raise TransferError("ResourceFileDownloadFailed", "Only http and https resource file URLs are supported.")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except urllib.error.HTTPError as exc:
        code = {404: "BlobNotFound", 403: "BlobAccessDenied"}.get(exc.code, "ResourceFileDownloadFailed")
        raise TransferError(code, f"Downloading {_redact(url)} failed with HTTP {exc.code}.") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise TransferError("ResourceFileDownloadFailed", f"Downloading {_redact(url)} failed: {exc}.") from None


def _redact(url: str) -> str:
    # A SAS token is a credential: never write it into failureInfo or logs.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def download_resource_files(files: list[dict], working_dir: str) -> None:
    for item in files:
        if item.get("httpUrl"):
            target = _inside(working_dir, item["filePath"])
            _http_download(item["httpUrl"], target)
            _apply_mode(target, item.get("fileMode"))
        elif item.get("storageContainerUrl"):
            _download_container(item, working_dir)
        else:
            raise TransferError("ResourceFileDownloadFailed",
                                "autoStorageContainerName needs a linked storage account, "
                                "which localbatch does not have.")


def _download_container(item: dict, working_dir: str) -> None:
    # Lazy: localbatch needs the storage SDK only when a task moves files through blob storage.
    from azure.core.exceptions import AzureError, ClientAuthenticationError, ResourceNotFoundError  # noqa: PLC0415
    from azure.storage.blob import ContainerClient  # noqa: PLC0415

    url = item["storageContainerUrl"]
    base = _inside(working_dir, item.get("filePath") or ".")
    try:
        container = ContainerClient.from_container_url(url)
        for blob in container.list_blobs(name_starts_with=item.get("blobPrefix") or None):
            target = _inside(base, blob.name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as out:
                container.download_blob(blob.name).readinto(out)
            _apply_mode(target, item.get("fileMode"))
    except ResourceNotFoundError:
        raise TransferError("BlobNotFound", f"The container {_redact(url)} does not exist.") from None
    except ClientAuthenticationError:
        raise TransferError("BlobAccessDenied", f"Access to the container {_redact(url)} was denied.") from None
    except AzureError as exc:
        raise TransferError("ResourceFileDownloadFailed",
                            f"Listing {_redact(url)} failed: {exc.__class__.__name__}.") from None


def _has_wildcard(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def matching_files(pattern: str, working_dir: str) -> list[tuple[str, str]]:
    """(absolute path, name relative to the pattern's fixed leading directories) for each file matched."""
    pattern = os.path.expandvars(pattern)
    parts = pattern.split("/")
    fixed = []
    for part in parts:
        if _has_wildcard(part):
            break
        fixed.append(part)
    anchor = os.path.normpath(os.path.join(working_dir, *fixed)) if _has_wildcard(pattern) else None
    out = []
    for match in sorted(glob.glob(pattern, root_dir=working_dir, recursive=True)):
        full = os.path.normpath(os.path.join(working_dir, match))
        if os.path.isfile(full):
            name = os.path.relpath(full, anchor) if anchor else os.path.basename(full)
            out.append((full, name.replace(os.sep, "/")))
    return out


def upload_output_files(specs: list[dict], working_dir: str, succeeded: bool, log_dir: str) -> None:
    """Upload what each spec matches whose condition holds; logs go to fileuploadout/err.txt like Batch's."""
    # Lazy: localbatch needs the storage SDK only when a task moves files through blob storage.
    from azure.core.exceptions import AzureError, ResourceNotFoundError  # noqa: PLC0415
    from azure.storage.blob import ContainerClient  # noqa: PLC0415

    with open(os.path.join(log_dir, "fileuploadout.txt"), "a") as out, \
            open(os.path.join(log_dir, "fileuploaderr.txt"), "a") as err:
        for spec in specs:
            condition = spec["uploadOptions"]["uploadCondition"]
            if (condition == "tasksuccess" and not succeeded) or (condition == "taskfailure" and succeeded):
                continue
            container_spec = spec["destination"]["container"]
            prefix = (container_spec.get("path") or "").strip("/")
            wildcard = _has_wildcard(spec["filePattern"])
            container = ContainerClient.from_container_url(container_spec["containerUrl"])
            for path, name in matching_files(spec["filePattern"], working_dir):
                if wildcard:
                    blob_name = f"{prefix}/{name}" if prefix else name   # path is a virtual directory
                else:
                    blob_name = prefix or name                           # path is the full blob name
                try:
                    with open(path, "rb") as data:
                        container.upload_blob(blob_name, data, overwrite=True)
                    out.write(f"Uploaded {path} to {blob_name}\n")
                except ResourceNotFoundError:
                    err.write(f"Container not found for {blob_name}\n")
                    raise TransferError("FileUploadContainerNotFound",
                                        f"The output container {_redact(container_spec['containerUrl'])} "
                                        "does not exist.") from None
                except AzureError as exc:
                    err.write(f"Upload of {blob_name} failed: {exc.__class__.__name__}\n")
                    raise TransferError("FileUploadFailed",
                                        f"Uploading {name} failed: {exc.__class__.__name__}.") from None
