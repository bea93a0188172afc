"""Pool pages: the list with node counts, one pool with its node heatmap, and creating, resizing and deleting pools.

The actions are each a form, then a confirm step, then one call to a service; only people with portal.manage_pools
reach them, and nothing reaches Batch until a confirming POST."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from portal import access
from portal.access import SignedInRequest
from portal.accounts.selectors import account_scope, accounts_synced_at
from portal.actions import ActionError
from portal.audit import selectors as audit_selectors
from portal.models import Pool, PoolTemplate
from portal.pages import partial_for, render_page
from portal.pools import selectors, services
from portal.pools.forms import PoolCreateForm, PoolDeleteForm, PoolResizeForm

# Views answer 403 rather than a login redirect: the person is logged in, just not allowed.
manage_pools_required = access.require(access.MANAGE_POOLS)


# --- the list and one pool -------------------------------------------------------------------------


@require_safe
@login_required
def pool_list(request: SignedInRequest) -> HttpResponse:
    accounts = account_scope(user=request.user, params=request.GET)
    pools = selectors.pool_list(user=request.user, account_ids=accounts.ids)
    context = {"pools": pools, "synced_at": accounts_synced_at(accounts.ids), "accounts": accounts}
    return render_page(request, "pools/list.html", context, partial_for(request, {}, default="live"))


@require_safe
@login_required
def pool_detail(request: SignedInRequest, pk: int) -> HttpResponse:
    pool = selectors.pool_get(user=request.user, pk=pk)
    context = {"detail": selectors.pool_detail(pool=pool), "pool": pool,
               "several_accounts": account_scope(user=request.user).several}
    partial = partial_for(request, {}, default="live")
    if partial is None:
        # Pools are known to the audit history by their Batch id: a pool re-created under the same id shares it.
        context["history"] = audit_selectors.audit_rows(audit_selectors.audit_for_object("pool", pool.pool_id),
                                                  user=request.user)
        if access.can_view_audit(request.user):
            context["audit_url"] = audit_selectors.audit_list_url("pool", pool.pool_id)
    return render_page(request, "pools/detail.html", context, partial)



# --- create -----------------------------------------------------------------------------------------


@login_required
@manage_pools_required
@require_safe
def pool_create(request: SignedInRequest) -> HttpResponse:
    templates = list(PoolTemplate.objects.all())
    chosen = _chosen_template(request.GET.get("template"), templates)
    if chosen is None:
        # No JavaScript: the node counts are prefilled from a template, so the template is chosen first.
        return render(request, "pools/actions/choose_template.html",
                      {"templates": templates, "several_accounts": account_scope(user=request.user).several})
    form = PoolCreateForm(initial=PoolCreateForm.initial_for(chosen))
    return _create_form_page(request, form, chosen)


@login_required
@manage_pools_required
@require_POST
def pool_create_confirm(request: SignedInRequest) -> HttpResponse:
    form = PoolCreateForm(request.POST)
    valid = form.is_valid()
    template = form.cleaned_data.get("template")
    if template is None:
        messages.error(request, "That pool template no longer exists; choose another one.")
        return redirect("pool_create")
    if "edit" in request.POST:
        # Back from the confirm step: the same values to change, without error messages.
        return _create_form_page(request, PoolCreateForm(initial=request.POST.dict()), template)
    if not valid:
        return _create_form_page(request, form, template)
    values = _create_values(form)
    # The confirm page names the template version it showed; if an admin edited the template since, what
    # would be created is no longer what was reviewed, so it is shown again instead of created.
    version = template.updated_at.isoformat()
    reviewed = request.POST.get("template_version") == version
    if "confirmed" not in request.POST or not reviewed:
        spec = services.pool_spec_from_template(template=template, **values)
        return render(request, "pools/actions/create_confirm.html", {
            "form": form, "template": template, "spec": spec, "template_version": version,
            "template_changed": "confirmed" in request.POST,
            "task_slots": (spec.target_dedicated_nodes + spec.target_low_priority_nodes) * spec.task_slots_per_node,
            "resource_files": template.resource_files_for_display(),
            "several_accounts": account_scope(user=request.user).several})
    try:
        services.pool_create(user=request.user, template=template, **values)
    except ActionError as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        return _create_form_page(request, form, template)
    messages.success(request, f"Batch is creating the pool “{values['pool_id']}” from “{template.name}” with "
                              f"{_nodes(values['dedicated_nodes'], values['low_priority_nodes'])}. It appears in "
                              "the pool list after the next sync; its nodes take a few minutes to start.")
    return redirect(_pool_list_url())


def _chosen_template(raw_pk: str | None, templates: list[PoolTemplate]) -> PoolTemplate | None:
    if len(templates) == 1:
        return templates[0]
    return next((t for t in templates if str(t.pk) == raw_pk), None)


def _create_values(form: PoolCreateForm) -> dict:
    return {key: form.cleaned_data[key] for key in ("pool_id", "dedicated_nodes", "low_priority_nodes")}


def _create_form_page(request: SignedInRequest, form: PoolCreateForm, template: PoolTemplate) -> HttpResponse:
    return render(request, "pools/actions/create.html", {
        "form": form, "template": template, "resource_files": template.resource_files_for_display(),
        "several_templates": PoolTemplate.objects.count() > 1,
        "several_accounts": account_scope(user=request.user).several})


# --- resize -----------------------------------------------------------------------------------------


@login_required
@manage_pools_required
@require_safe
def pool_resize(request: SignedInRequest, pk: int) -> HttpResponse:
    pool = _pool_or_404(request, pk)
    return _resize_form_page(request, pool, PoolResizeForm(initial=PoolResizeForm.initial_for(pool)))


@login_required
@manage_pools_required
@require_POST
def pool_resize_confirm(request: SignedInRequest, pk: int) -> HttpResponse:
    pool = _pool_or_404(request, pk)
    if "edit" in request.POST:
        return _resize_form_page(request, pool, PoolResizeForm(initial=request.POST.dict()))
    form = PoolResizeForm(request.POST)
    if not form.is_valid():
        return _resize_form_page(request, pool, form)
    dedicated, low_priority = form.cleaned_data["dedicated_nodes"], form.cleaned_data["low_priority_nodes"]
    if "confirmed" not in request.POST:
        return render(request, "pools/actions/resize_confirm.html",
                      {"pool": pool, "form": form, "cancel_url": _pool_detail_url(pool)})
    try:
        services.pool_resize(user=request.user, pool=pool, dedicated_nodes=dedicated, low_priority_nodes=low_priority)
    except ActionError as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        return _resize_form_page(request, pool, form)
    messages.success(request, f"Batch is resizing the pool “{pool.pool_id}” to {_nodes(dedicated, low_priority)}. "
                              "The node counts update after the next sync.")
    return redirect(_pool_detail_url(pool))


def _resize_form_page(request: SignedInRequest, pool: Pool, form: PoolResizeForm) -> HttpResponse:
    return render(request, "pools/actions/resize.html",
                  {"pool": pool, "form": form, "cancel_url": _pool_detail_url(pool)})


# --- delete -----------------------------------------------------------------------------------------


@login_required
@manage_pools_required
@require_safe
def pool_delete(request: SignedInRequest, pk: int) -> HttpResponse:
    pool = _pool_or_404(request, pk)
    return _delete_page(request, pool, PoolDeleteForm(pool=pool))


@login_required
@manage_pools_required
@require_POST
def pool_delete_confirm(request: SignedInRequest, pk: int) -> HttpResponse:
    pool = _pool_or_404(request, pk)
    form = PoolDeleteForm(request.POST, pool=pool)
    if not form.is_valid():
        return _delete_page(request, pool, form)
    try:
        deleted = services.pool_delete(user=request.user, pool=pool)
    except ActionError as exc:
        form.add_error(None, exc.message)
        return _delete_page(request, pool, form)
    if deleted:
        messages.success(request, f"Batch is deleting the pool “{pool.pool_id}” and its nodes. It is marked gone "
                                  "after the next sync.")
    else:
        messages.info(request, f"Batch had no pool “{pool.pool_id}” any more, so there was nothing to delete. "
                               "It is marked gone after the next sync.")
    return redirect(_pool_list_url())


def _delete_page(request: SignedInRequest, pool: Pool, form: PoolDeleteForm) -> HttpResponse:
    # Deleting a pool stops what runs on it; the page says how much that is, from the mirror.
    unfinished_jobs = selectors.unfinished_jobs_on(pool)
    return render(request, "pools/actions/delete.html", {
        "pool": pool, "form": form, "cancel_url": _pool_detail_url(pool),
        "node_count": pool.current_dedicated_nodes + pool.current_low_priority_nodes,
        "unfinished_jobs": list(unfinished_jobs[:20]), "unfinished_job_count": unfinished_jobs.count()})


# --- shared -----------------------------------------------------------------------------------------


def _pool_or_404(request: SignedInRequest, pk: int) -> Pool:
    pool = selectors.pool_get(user=request.user, pk=pk)
    # Pools Batch has deleted stay in the mirror as history; there is nothing left to resize or delete.
    if pool.gone_at is not None:
        raise Http404("That pool no longer exists in Batch.")
    return pool


def _nodes(dedicated: int, low_priority: int) -> str:
    return f"{dedicated} dedicated and {low_priority} spot node{'' if low_priority == 1 else 's'}"


def _pool_list_url() -> str:
    return reverse("pool_list")


def _pool_detail_url(pool: Pool) -> str:
    return reverse("pool_detail", args=[pool.pk])
