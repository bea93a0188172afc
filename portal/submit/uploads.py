"""Files a browser uploads straight to Blob storage for a submission: where each goes, the signed token that stands
for it in the form, the check of what arrived in storage, and the snapshot that freezes it when the person submits.
Nothing of a file passes through the web process (a CSV the tasks fan out over is read back, within a limit)."""

from __future__ import annotations

import dataclasses
import logging
import re
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core import signing

from batchsync.accounts import blob_store
from batchsync.gateway import BlobStore, GatewayError
from portal.models import JobTemplate, Submission
from portal.submit.forms import SubmitForm
from portal.submit.spec import TemplateSpec
from portal.submit.values import InputFile
from portal.units import human_bytes

logger = logging.getLogger(__name__)

UPLOAD_SALT = "portal.submit.upload"
# An upload token is good for a day: long enough for a form left open over lunch, short enough not to be a key.
UPLOAD_TOKEN_MAX_AGE = 24 * 3600


def max_upload_bytes() -> int:
    """The most bytes of files one submission may take (SUBMISSION_MAX_UPLOAD_BYTES)."""
    return int(settings.SUBMISSION_MAX_UPLOAD_BYTES)


def max_csv_bytes() -> int:
    """The largest CSV the tasks may be made from (SUBMISSION_MAX_CSV_BYTES): it is read into memory."""
    return int(settings.SUBMISSION_MAX_CSV_BYTES)


class UploadTokenError(ValueError):
    """A token that does not stand for a file this person uploaded for this parameter of this template."""


@dataclass(frozen=True)
class UploadedBlob:
    parameter: str
    name: str
    blob: str
    size: int


def blob_path(user_id: int, name: str) -> str:
    """Where an upload is stored: chosen by the server, never the person's own path. The name is checked already
    (values.FILE_NAME_PATTERN); the path keeps only its safest characters."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:200]
    return f"uploads/{user_id}/{uuid.uuid4().hex}/{safe}"


def upload_token(*, user_id: int, template_id: int, parameter: str, name: str, blob: str, size: int) -> str:
    return signing.dumps({"u": user_id, "t": template_id, "p": parameter, "n": name, "b": blob, "s": size},
                         salt=UPLOAD_SALT)


def read_upload_token(token: str, *, user_id: int, template_id: int, parameter: str) -> UploadedBlob:
    try:
        data = signing.loads(token, salt=UPLOAD_SALT, max_age=UPLOAD_TOKEN_MAX_AGE)
    except signing.SignatureExpired:
        raise UploadTokenError("an upload is more than a day old; remove it and upload the file again.") from None
    except signing.BadSignature:
        raise UploadTokenError("an uploaded file could not be recognised (the form was changed); remove it and "
                               "upload the file again.") from None
    if not isinstance(data, dict) or (data.get("u"), data.get("t"), data.get("p")) != (user_id, template_id,
                                                                                        parameter):
        raise UploadTokenError("an uploaded file belongs to another form; remove it and upload the file again.")
    return UploadedBlob(parameter=parameter, name=data["n"], blob=data["b"], size=data["s"])


def uploaded_files(*, user_id: int, template: JobTemplate, spec: TemplateSpec, tokens: dict[str, list[str]]
                   ) -> tuple[dict[str, list[dict]], dict[str, list[InputFile]], dict[str, list[dict]], dict[str, str]]:
    """The files behind the posted tokens, each checked in storage: (what the form shows again, InputFiles for the
    service, facts for the preview's signed payload, errors by parameter)."""
    shown: dict[str, list[dict]] = {}
    files: dict[str, list[InputFile]] = {}
    facts: dict[str, list[dict]] = {}
    errors: dict[str, str] = {}
    if not any(tokens.values()):
        return shown, files, facts, errors
    with blob_store() as store:
        for name, given in tokens.items():
            for token in given:
                try:
                    upload = read_upload_token(token, user_id=user_id, template_id=template.pk, parameter=name)
                except UploadTokenError as exc:
                    errors[name] = str(exc)
                    continue
                shown.setdefault(name, []).append({"token": token, "name": upload.name, "size": upload.size})
                try:
                    item, fact = _checked_blob(store, spec, name, upload.name, upload.blob, upload.size)
                except FileProblem as exc:
                    errors[name] = str(exc)
                    continue
                files.setdefault(name, []).append(item)
                facts.setdefault(name, []).append(fact)
    return shown, files, facts, errors


class FileProblem(ValueError):
    """An uploaded file that cannot be used as it is; the message says what to do."""


def _checked_blob(store: BlobStore, spec: TemplateSpec, parameter: str, name: str, blob: str,
                  size: int) -> tuple[InputFile, dict]:
    """The upload as storage has it (its size checked, a fan-out CSV read), and the facts the preview signs."""
    container = settings.STORAGE_INPUTS_CONTAINER
    try:
        info = store.info(container, blob)
    except GatewayError:
        logger.warning("could not check blob %s/%s", container, blob, exc_info=True)
        raise FileProblem("storage could not be reached to check the uploaded files; try again in a minute.") from None
    if info is None:
        raise FileProblem(f"“{name}” has not arrived in storage (its upload did not finish); remove it and upload "
                           "it again.")
    if info.size != size:
        raise FileProblem(f"“{name}” did not upload completely ({human_bytes(info.size)} of "
                           f"{human_bytes(size)}); remove it and upload it again.")
    # The preview's payload keeps the ETag, so a blob written again before Submit is caught there.
    stamp = info.etag
    content = None
    if spec.fan_out.kind == "csv" and spec.fan_out.parameter == parameter:
        if size > max_csv_bytes():
            raise FileProblem(f"“{name}” is {human_bytes(size)}; a CSV the tasks are made from may be "
                               f"at most {human_bytes(max_csv_bytes())}.")
        content = store.read_range(container, blob, 0, size)
    item = InputFile(name=name, url=store.blob_url(container, blob), size=size, content=content, blob=blob)
    return item, {"n": name, "b": blob, "s": size, "m": stamp}


def files_from_preview(facts: dict, spec: TemplateSpec) -> tuple[dict, dict]:
    """The previewed files, each frozen in a snapshot first: the upload's SAS can still write the blob for a while,
    so the tasks read the snapshot, which holds exactly what the preview checked (its ETag proves it)."""
    files: dict[str, list[InputFile]] = {}
    errors: dict[str, str] = {}
    if not any(facts.values()):
        return files, errors
    container = settings.STORAGE_INPUTS_CONTAINER
    with blob_store() as store:
        for name, items in facts.items():
            for fact in items:
                try:
                    try:
                        snapshot, etag = store.snapshot(container, fact["b"])
                    except GatewayError:
                        raise FileProblem(f"“{fact['n']}” could not be found in storage any more; remove it and "
                                           "upload it again.") from None
                    if etag != fact["m"]:
                        raise FileProblem(f"“{fact['n']}” was changed in storage after the preview; nothing was "
                                           "submitted. Check the preview again.")
                    item, _ = _checked_blob(store, spec, name, fact["n"], fact["b"], fact["s"])
                except FileProblem as exc:
                    errors[name] = str(exc)
                    break
                files.setdefault(name, []).append(dataclasses.replace(item, snapshot=snapshot))
    return files, errors


def uploaded_entry(*, user_id: int, template: JobTemplate, parameter: str, fact: dict) -> dict:
    """An upload as the form shows it again, with a fresh token for `user_id`."""
    token = upload_token(user_id=user_id, template_id=template.pk, parameter=parameter, name=fact["n"], blob=fact["b"],
                         size=fact["s"])
    return {"token": token, "name": fact["n"], "size": fact["s"]}


def kept_files(*, user_id: int, template: JobTemplate, parent: Submission, form_class: type[SubmitForm]) -> dict:
    """A re-run keeps the earlier submission's uploads: new tokens for the same blobs, for this person."""
    kept = {}
    names = {p.name for p in form_class.file_parameters}
    for name, given in (parent.inputs or {}).items():
        if name in names:
            kept[name] = [uploaded_entry(user_id=user_id, template=template, parameter=name,
                                         fact={"n": item["name"], "b": item["blob"], "s": item.get("size", 0)})
                          for item in given if item.get("blob")]
    return kept
