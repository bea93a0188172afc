"""Pools: the list with node counts, and one pool with its node heatmap."""

from django.contrib.auth.decorators import login_required
from django.views.decorators.http import require_safe

from portal import selectors
from portal.audit import can_view as can_view_audit
from portal.views.common import partial_for, render_page


@require_safe
@login_required
def pool_list(request):
    pools = selectors.pool_list(user=request.user)
    synced_at = selectors.accounts_synced_at(selectors.visible_account_ids(request.user))
    context = {"pools": pools, "synced_at": synced_at}
    return render_page(request, "pools/list.html", context, partial_for(request, {}, default="live"))


@require_safe
@login_required
def pool_detail(request, pk: int):
    pool = selectors.pool_get(user=request.user, pk=pk)
    context = {"detail": selectors.pool_detail(pool=pool), "pool": pool}
    partial = partial_for(request, {}, default="live")
    if partial is None:
        # Pools are known to the audit history by their Batch id: a pool re-created under the same id shares it.
        context["history"] = selectors.audit_rows(selectors.audit_for_object("pool", pool.pool_id),
                                                  user=request.user)
        if can_view_audit(request.user):
            context["audit_url"] = selectors.audit_list_url("pool", pool.pool_id)
    return render_page(request, "pools/detail.html", context, partial)
