"""Pools: the list with node counts, and one pool with its node heatmap."""

from django.contrib.auth.decorators import login_required
from django.views.decorators.http import require_safe

from portal import selectors
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
    return render_page(request, "pools/detail.html", context, partial_for(request, {}, default="live"))
