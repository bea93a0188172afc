"""Submitting work from the browser: pick a template, fill in its form (files go straight from the browser to Blob
storage), check the preview, submit; then follow the submission until its job has run.

Every check that matters happens on the server, in portal.submit.services.submission_prepare; the browser checks
first only so that people hear about a wrong file before uploading it. Nothing is written until the preview's
Submit, and that post carries an idempotency key, so a double click or a re-sent form makes one submission."""

from __future__ import annotations

import json
import uuid

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.http import Http404, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import (
    require_http_methods,
    require_POST,
    require_safe,
)

from batchsync.accounts import blob_store
from portal import access
from portal.access import SignedInRequest
from portal.accounts.selectors import account_scope
from portal.audit import selectors as audit_selectors
from portal.costs.budgets import approval_reason, budget_warning
from portal.costs.preview import estimate_for_preview
from portal.costs.selectors import job_cost
from portal.jobs.waiting import reasons_for_job
from portal.models import JobTemplate, JobTemplateVersion, Submission, SubmissionState
from portal.pages import partial_for, render_page
from portal.submit import forms, preview, services, uploads
from portal.submit import selectors as submit_selectors
from portal.submit.services import SubmissionError
from portal.submit.spec import Parameter, SpecError, TemplateSpec
from portal.submit.values import InputFile, clean_file
from portal.units import human_bytes


def _require_submitter(request: SignedInRequest) -> None:
    # A signed-in person without the role is told so (403) rather than sent to log in again.
    if not access.can_submit(request.user):
        raise access.refusal(request.user, access.SUBMIT)


def _template_or_404(slug: str) -> JobTemplate:
    template = submit_selectors.offered_template(slug)
    if template is None:
        raise Http404("No such template")
    return template


def _current_version(template: JobTemplate) -> JobTemplateVersion:
    """The version an offered template is submitted at (offered_template only offers templates that have one)."""
    version = template.current_version()
    if version is None:
        raise Http404("No such template")
    return version


# --- choosing a template ----------------------------------------------------------------------------------


@require_safe
@login_required
def submit_template_list(request: SignedInRequest) -> HttpResponse:
    _require_submitter(request)
    offered = [{"template": template, "version": version, "runs_on": spec.pool_label, "fan_out": _fan_out_words(spec)}
               for template, version, spec in submit_selectors.offered_templates()]
    return render(request, "submit/template_list.html",
                  {"offered": offered, "several_accounts": account_scope(user=request.user).several})


def _fan_out_words(spec: TemplateSpec) -> str:
    fan = spec.fan_out
    if fan.parameter is None:   # the spec names the parameter of every fan-out but "one"
        return "one task"
    if fan.kind == "files":
        return f"one task per file in “{spec.parameter(fan.parameter).label}”"
    if fan.kind == "csv":
        return f"one task per row of the CSV file “{spec.parameter(fan.parameter).label}”"
    if fan.kind == "range":
        return f"one task per number from {fan.start} to “{spec.parameter(fan.parameter).label}”"
    return "one task"


# --- the form and its preview -----------------------------------------------------------------------------


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
def submit_form(request: SignedInRequest, slug: str) -> HttpResponse:
    """GET: the form (pre-filled for a re-run). POST: the values checked by the service, then the preview page,
    or the form again with what to fix next to each field. Nothing is written either way."""
    _require_submitter(request)
    template = _template_or_404(slug)
    allowed_command_line = access.can_write_command_lines(request.user)
    if request.method != "POST":
        parent = _rerun_parent(request, request.GET.get("rerun"), template)
        version = parent.template_version if parent else _current_version(template)
        form_class = forms.submit_form_class(version.parsed, command_line_allowed=allowed_command_line)
        initial = {"template_version": version.pk, "rerun": str(parent.public_id) if parent else ""}
        uploaded = {}
        if parent:
            initial.update(forms.initial_from(parent, version.parsed))
            uploaded = uploads.kept_files(user_id=request.user.pk, template=template, parent=parent,
                                          form_class=form_class)
        if allowed_command_line and "command_line" not in initial:
            initial["command_line"] = version.parsed.command_line
        return _form_page(request, template, version, form_class(initial=initial), uploaded, parent)

    parent = _rerun_parent(request, request.POST.get("rerun"), template)
    posted = request.POST.get("template_version")
    version = _version_of(template, posted) or (parent.template_version if parent else _current_version(template))
    form = forms.submit_form_class(version.parsed, command_line_allowed=allowed_command_line)(request.POST)
    form.is_valid()
    uploaded, files, facts, file_errors = uploads.uploaded_files(user_id=request.user.pk, template=template,
                                                                  spec=version.parsed, tokens=form.tokens())
    for name, message in file_errors.items():
        form.add_error(name, _sentence(message))
    if file_errors:
        return _form_page(request, template, version, form, uploaded, parent)
    total = sum(item.size for given in files.values() for item in given)
    if total > uploads.max_upload_bytes():
        form.add_error(None, f"These files come to {human_bytes(total)}; one submission may take at "
                             f"most {human_bytes(uploads.max_upload_bytes())}. Nothing was submitted.")
        return _form_page(request, template, version, form, uploaded, parent)
    # A non-engineer never sees this field; if one is posted anyway, the service refuses it (403).
    command_line = request.POST.get("command_line") if "command_line" in request.POST else None
    parameters = form.parameter_values()
    try:
        prepared = services.submission_prepare(
            user=request.user, template_version=posted if _version_of(template, posted) else None,
            parameters=parameters, uploaded_files=files, parent=parent, command_line=command_line,
            name=form.submission_name())
    except SubmissionError as exc:
        _add_service_errors(form, exc)
        return _form_page(request, template, version, form, uploaded, parent)

    payload = {"u": request.user.pk, "t": template.pk, "v": prepared.template_version.pk, "p": parameters,
               "c": prepared.command_line, "r": str(parent.public_id) if parent else None,
               "f": facts, "k": uuid.uuid4().hex, "n": form.submission_name()}
    spec = prepared.template_version.parsed
    tasks = list(preview.first_tasks(spec, prepared))
    estimate = estimate_for_preview(template=prepared.template_version.template, spec=spec,
                                    task_count=prepared.preview.task_count)
    team = access.submission_team(request.user)
    return render(request, "submit/preview.html", {
        "template": template, "version": prepared.template_version, "prepared": prepared,
        "summary": prepared.preview.summary, "tasks": tasks, "values": preview.shown_values(spec, prepared, parent),
        "payload": preview.sign_preview(payload), "parent": parent,
        "several_accounts": account_scope(user=request.user).several,
        "cost_estimate": estimate, "budget_warning": budget_warning(team=team, estimate=estimate),
        "approval_reason": approval_reason(team=team, estimate=estimate),
        "more_tasks": prepared.preview.task_count - len(tasks)})


@require_POST
@login_required
def submit_confirm(request: SignedInRequest, slug: str) -> HttpResponse:
    """The preview's buttons: Submit (write the submission, once, under the preview's key) or Change values."""
    _require_submitter(request)
    template = _template_or_404(slug)
    try:
        payload = preview.read_preview(request.POST.get("payload", ""))
    except signing.BadSignature:
        payload = None
    if not payload or payload.get("u") != request.user.pk or payload.get("t") != template.pk:
        messages.error(request, "That preview could not be used (it was changed, is more than a day old, or belongs "
                                "to another form); nothing was submitted. Fill in the form again.")
        return redirect("submit_form", slug=template.slug)
    parent = _rerun_parent(request, payload.get("r"), template)
    version = _version_of(template, payload["v"]) or _current_version(template)
    form_class = forms.submit_form_class(
        version.parsed, command_line_allowed=access.can_write_command_lines(request.user))

    def form_again(errors: dict | None = None, message: str | None = None) -> HttpResponse:
        initial = {**payload["p"], "template_version": payload["v"], "rerun": payload.get("r") or "",
                   forms.SubmitForm.NAME_FIELD: payload.get("n") or ""}
        for parameter in version.parsed.parameters:
            if parameter.type == "boolean" and parameter.name in initial:
                initial[parameter.name] = initial[parameter.name] in ("true", True)
        if payload.get("c") is not None:
            initial["command_line"] = payload["c"]
        elif access.can_write_command_lines(request.user):
            initial["command_line"] = version.parsed.command_line
        form = form_class(initial=initial)
        if errors or message:
            # Errors need a bound form; bind it to the same values so they show next to their fields.
            form = form_class(data=_as_post(initial), initial=initial)
            form.is_valid()
            for name, text in (errors or {}).items():
                form.add_error(name if name in form.fields else None, _sentence(text))
            if message:
                form.add_error(None, message)
        uploaded = {name: [uploads.uploaded_entry(user_id=request.user.pk, template=template, parameter=name, fact=item)
                           for item in items]
                    for name, items in payload["f"].items()}
        return _form_page(request, template, version, form, uploaded, parent)

    if "edit" in request.POST:
        return form_again()
    key = uuid.UUID(payload["k"])
    existing = Submission.objects.filter(public_id=key, submitted_by=request.user).first()
    if existing is not None:
        # The same preview posted twice (a double click, a reload): the first post's submission is the answer.
        return redirect("submission_detail", public_id=existing.public_id)
    files, errors = uploads.files_from_preview(payload["f"], version.parsed)
    if errors:
        return form_again(errors)
    try:
        submission = services.submission_create(
            user=request.user, template_version=payload["v"], parameters=payload["p"], uploaded_files=files,
            parent=parent, command_line=payload.get("c"), public_id=key, name=payload.get("n"))
    except SubmissionError as exc:
        return form_again(exc.field_errors, exc.message)
    return redirect("submission_detail", public_id=submission.public_id)


# --- uploads ----------------------------------------------------------------------------------------------


@require_POST
@login_required
def submit_upload(request: SignedInRequest, slug: str) -> JsonResponse:
    """A browser asks to upload one file for a file parameter: checked here before any byte moves, then answered
    with a write-only URL for one blob whose path the server chose, and a signed token that stands for it."""
    _require_submitter(request)
    template = _template_or_404(slug)
    spec = _current_version(template).parsed
    try:
        data = json.loads(request.body or b"{}")
        name, size = str(data["name"]), data["size"]
        count, total = data.get("count", 1), data.get("total", size)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (size, count, total)):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        return _refuse("The upload request was not understood; reload the page and try again.")
    parameter = next((p for p in spec.parameters if p.name == data.get("parameter")), None)
    if parameter is None or parameter.type not in ("file", "files"):
        return _refuse("This form has no such file field; reload the page and try again.")
    try:
        clean_file(parameter, InputFile(name=name, url="https://upload.invalid/", size=size))
    except ValueError as exc:
        return _refuse(_sentence(str(exc)))
    most = 1 if parameter.type == "file" else parameter.max_files
    if count > most:
        return _refuse(f"{parameter.label}: at most {most} file{'s' if most != 1 else ''}, please "
                       f"(you chose {count}).")
    if max(total, size) > uploads.max_upload_bytes():
        return _refuse(f"These files come to {human_bytes(max(total, size))}; one submission may take "
                       f"at most {human_bytes(uploads.max_upload_bytes())}.")
    blob = uploads.blob_path(request.user.pk, name)
    with blob_store() as store:
        sas_url = store.upload_url(blob, minutes=settings.STORAGE_UPLOAD_SAS_MINUTES)
    token = uploads.upload_token(user_id=request.user.pk, template_id=template.pk, parameter=parameter.name,
                                 name=name, blob=blob, size=size)
    return JsonResponse({"sas_url": sas_url, "token": token, "name": name, "size": size})


def _refuse(message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=400)


# --- helpers for the form ---------------------------------------------------------------------------------


def _rerun_parent(request: SignedInRequest, raw: str | None, template: JobTemplate) -> Submission | None:
    """The submission being re-run, if the person may re-run it; 404 otherwise, so ids of others' work stay
    unknown."""
    if not raw:
        return None
    try:
        public_id = uuid.UUID(str(raw))
    except ValueError:
        raise Http404("No such submission") from None
    parent = (Submission.objects.select_related("template_version__template")
              .filter(public_id=public_id, template_version__template=template).first())
    if parent is None or not access.can_act_on(request.user, parent):
        raise Http404("No such submission")
    return parent


def _version_of(template: JobTemplate, raw: str | int | None) -> JobTemplateVersion | None:
    try:
        pk = int(raw)  # type: ignore[arg-type]  # None raises TypeError: no version
    except (TypeError, ValueError):
        return None
    return JobTemplateVersion.objects.filter(pk=pk, template=template).first()


def _add_service_errors(form: forms.SubmitForm, exc: SubmissionError) -> None:
    for name, message in exc.field_errors.items():
        form.add_error(name if name in form.fields else None, _sentence(message))
    form.add_error(None, exc.message)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _as_post(initial: dict) -> QueryDict:
    data = QueryDict(mutable=True)
    for name, value in initial.items():
        if isinstance(value, bool):
            if value:
                data[name] = "on"
        elif value is not None:
            data[name] = str(value)
    return data


def _form_page(request: SignedInRequest, template: JobTemplate, version: JobTemplateVersion, form: forms.SubmitForm,
               uploaded: dict, parent: Submission | None) -> HttpResponse:
    spec = version.parsed
    widgets = []
    for parameter, field in form.field_rows():
        entry = {"parameter": parameter, "field": field}
        if parameter.type in ("file", "files"):
            items = uploaded.get(parameter.name, [])
            entry.update(uploaded=items, accept=forms.accept_attribute(parameter),
                         max_files=1 if parameter.type == "file" else parameter.max_files,
                         max_bytes=parameter.max_file_bytes, extensions=" ".join(parameter.extensions),
                         limit_words=_file_limits(parameter))
        widgets.append(entry)
    current = _current_version(template)
    return render(request, "submit/form.html", {
        "template": template, "version": version, "form": form, "widgets": widgets, "parent": parent,
        "runs_on": spec.pool_label, "fan_out": _fan_out_words(spec),
        "outdated": current.pk != version.pk, "current": current,
        "max_upload_bytes": uploads.max_upload_bytes(),
        "upload_url": reverse("submit_upload", args=[template.slug])})


def _file_limits(parameter: Parameter) -> str:
    kinds = ", ".join(parameter.extensions) if parameter.extensions else "any kind"
    count = "one file" if parameter.type == "file" else f"up to {parameter.max_files} files"
    return f"{count}; {kinds}; at most {human_bytes(parameter.max_file_bytes)} each"


# --- following a submission -------------------------------------------------------------------------------


@require_safe
@login_required
def submission_list(request: SignedInRequest) -> HttpResponse:
    _require_submitter(request)
    # Mine or my teams' (an Operator acts on those).
    scope = access.SCOPE_TEAM if request.GET.get("scope") == access.SCOPE_TEAM else access.SCOPE_MY
    page = submit_selectors.submission_page(user=request.user, scope=scope, after=request.GET.get("after"),
                                            before=request.GET.get("before"))
    # The pager's links swap only the table (htmx), and work as plain links without it.
    return render_page(request, "submit/submission_list.html", {"page": page, "scope": scope},
                       partial_for(request, {}, default="submissions"))


@require_safe
@login_required
def submission_detail(request: SignedInRequest, public_id: uuid.UUID) -> HttpResponse:
    submission = submit_selectors.submission_get(user=request.user, public_id=public_id)
    if submission is None:
        raise Http404("No such submission")
    job = submission.job
    job_live = job is not None and job.is_live
    waiting_for_job = submission.state == SubmissionState.SUBMITTED and job is None
    # Nothing moves until someone decides: no polling.
    awaiting = submission.state == SubmissionState.AWAITING_APPROVAL
    context: dict[str, object] = {
        "submission": submission, "job": job, "template": submission.template_version.template,
        # Polled while anything on it can still change: fast while tasks are being added, slower after.
        "poll": None if awaiting else "1s" if not submission.is_final else (
            "2s" if job_live or waiting_for_job else None),
        "awaiting_approval": awaiting, "can_approve": awaiting and access.can_approve(request.user, submission),
        "added_pct": (100 * submission.tasks_added // submission.total_tasks) if submission.total_tasks else 0,
        "can_rerun": access.can_submit(request.user) and submission.template_version.template.is_active,
        "values": _submitted_values(submission),
        "reasons": reasons_for_job(job) if job is not None and settings.WAITING_REASONS else [],
        "cost": job_cost(job) if job is not None else None, "job_live": job_live,
    }
    partial = partial_for(request, {}, default="status")
    if partial is None:
        # Header and facts only: a retry of its failed tasks, what it retried, and the retries made of it.
        context["retry_url"] = submit_selectors.submission_retry_url(user=request.user, submission=submission, job=job)
        context["retries"] = list(submission.retries.order_by("-created_at")[:20])
        # The History section is not part of the polled partial.
        context["history"] = audit_selectors.audit_rows(audit_selectors.audit_for_submission(submission, job),
                                                        user=request.user)
        if access.can_view_audit(request.user):
            context["audit_url"] = audit_selectors.audit_list_url("submission", submission.pk)
    return render_page(request, "submit/submission_detail.html", context, partial)


def _submitted_values(submission: Submission) -> list[tuple[str, str]]:
    """What the person gave, under the labels the form showed."""
    try:
        labels = {p.name: p.label for p in submission.template_version.parsed.parameters}
    except SpecError:
        labels = {}
    shown = []
    for name, value in (submission.parameters or {}).items():
        shown.append((labels.get(name, name), preview.value_words(value)))
    for name, given in (submission.inputs or {}).items():
        sizes = sum(item.get("size", 0) for item in given)
        names = ", ".join(item["name"] for item in given[:10]) + (f" and {len(given) - 10} more"
                                                                  if len(given) > 10 else "")
        shown.append((labels.get(name, name), f"{names} ({human_bytes(sizes)})"))
    return shown

