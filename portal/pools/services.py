"""Creating, resizing and deleting Batch pools, for people with portal.manage_pools.

Each checks the person's permission and input, asks Batch through the gateway, records the action in the audit
history, and turns Batch's refusals into ActionErrors whose message says what happened and what to do."""

from __future__ import annotations

import re

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied

from batchsync.accounts import AccountNotConfigured, gateway_for, runs_on
from batchsync.gateway import AlreadyExists, GatewayError, ImageSpec, NotFound, PoolSpec, Rejected, ResourceFileSpec
from portal import access
from portal.actions import ActionError, record_and_sync, refusal
from portal.models import MAX_NODES_PER_KIND, BatchAccount, Pool, PoolState, PoolTemplate

# Batch's rule for pool ids: letters, digits, hyphens and underscores, at most 64 characters.
POOL_ID_PATTERN = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
POOL_ID_RULE = "Use 1 to 64 letters, digits, hyphens (-) and underscores (_)."


def pool_spec_from_template(*, template: PoolTemplate, pool_id: str, dedicated_nodes: int,
                            low_priority_nodes: int) -> PoolSpec:
    """Exactly what `pool_create` sends to Batch; the confirm page shows this same spec."""
    return PoolSpec(
        id=pool_id,
        vm_size=template.vm_size,
        image=ImageSpec(publisher=template.image_publisher, offer=template.image_offer, sku=template.image_sku,
                        version=template.image_version or "latest", node_agent_sku_id=template.node_agent_sku_id),
        display_name=template.name,
        target_dedicated_nodes=dedicated_nodes,
        target_low_priority_nodes=low_priority_nodes,
        task_slots_per_node=template.task_slots_per_node,
        node_fill_type=template.node_fill_type,
        start_task_command_line=template.start_task_command_line.strip() or None,
        start_task_resource_files=tuple(ResourceFileSpec(http_url=item["http_url"], file_path=item["file_path"])
                                        for item in template.start_task_resource_files or []),
        start_task_wait_for_success=template.start_task_wait_for_success,
    )


def pool_create(*, user: User, template: PoolTemplate, pool_id: str, dedicated_nodes: int,
                low_priority_nodes: int) -> None:
    """Ask Batch for a new pool made from `template`. Batch answers at once; the nodes arrive over minutes."""
    _check_permission(user)
    pool_id = _checked_pool_id(pool_id)
    _check_counts(dedicated_nodes, low_priority_nodes)
    spec = pool_spec_from_template(template=template, pool_id=pool_id, dedicated_nodes=dedicated_nodes,
                                   low_priority_nodes=low_priority_nodes)
    account = runs_on(template.account)
    if not account.enabled:
        raise ActionError(f"The pool template creates pools in the Batch account “{account.name}”, which an "
                          "administrator has disabled, so nothing was created.")
    try:
        with gateway_for(account) as gateway:
            gateway.create_pool(spec)
    except AccountNotConfigured as exc:
        raise ActionError(str(exc)) from exc
    except GatewayError as exc:
        raise _refusal(exc, action="create", account=account, pool_id=pool_id) from exc
    # As changes from nothing, so the audit list (which shows changes) says what was asked for, as a resize's row does.
    _after(account, user=user, action="pool.create", pool_id=pool_id,
           details={"template": template.name, "template_id": template.pk, "from_dedicated_nodes": None,
                    "dedicated_nodes": dedicated_nodes, "from_low_priority_nodes": None,
                    "low_priority_nodes": low_priority_nodes},
           changes={"vm_size": [None, spec.vm_size]})


def pool_resize(*, user: User, pool: Pool, dedicated_nodes: int, low_priority_nodes: int) -> None:
    """Ask Batch to change the pool's target node counts; the pool is `resizing` until they are reached."""
    _check_permission(user)
    _check_counts(dedicated_nodes, low_priority_nodes)
    _check_still_there(pool)
    if pool.state == PoolState.DELETING:
        raise ActionError(f"The pool “{pool.pool_id}” is being deleted, so it cannot be resized. "
                              "Nothing was changed.")
    try:
        with gateway_for(pool.account) as gateway:
            gateway.resize_pool(pool.pool_id, dedicated=dedicated_nodes, low_priority=low_priority_nodes)
    except AccountNotConfigured as exc:
        raise ActionError(str(exc)) from exc
    except GatewayError as exc:
        raise _refusal(exc, action="resize", account=pool.account, pool_id=pool.pool_id) from exc
    _after(pool.account, user=user, action="pool.resize", pool_id=pool.pool_id,
           details={"from_dedicated_nodes": pool.target_dedicated_nodes,
                    "from_low_priority_nodes": pool.target_low_priority_nodes,
                    "dedicated_nodes": dedicated_nodes, "low_priority_nodes": low_priority_nodes})


def pool_delete(*, user: User, pool: Pool) -> bool:
    """Ask Batch to delete the pool and its nodes. Returns False if Batch no longer had it (nothing left to do)."""
    _check_permission(user)
    _check_still_there(pool)
    try:
        with gateway_for(pool.account) as gateway:
            gateway.delete_pool(pool.pool_id)
    except NotFound:
        # The outcome the person asked for holds already (deleted elsewhere, or a second click); the sync marks it gone.
        deleted = False
    except AccountNotConfigured as exc:
        raise ActionError(str(exc)) from exc
    except GatewayError as exc:
        raise _refusal(exc, action="delete", account=pool.account, pool_id=pool.pool_id) from exc
    else:
        deleted = True
    _after(pool.account, user=user, action="pool.delete", pool_id=pool.pool_id, details={"batch_had_it": deleted})
    return deleted


def _after(account: BatchAccount, *, user: User, action: str, pool_id: str, details: dict,
           changes: dict | None = None) -> None:
    """Record a successful action and ask for a sync of the account. Node counts given with a `from_` value (a
    resize's before, a create's None) are kept as before → after changes; the rest of `details` stays as it is."""
    details = dict(details)
    changes = dict(changes or {})
    for kind in ("dedicated_nodes", "low_priority_nodes"):
        if f"from_{kind}" in details:
            changes[f"target_{kind}"] = [details.pop(f"from_{kind}"), details.pop(kind)]
    record_and_sync(account_pk=account.pk, actor=user, action=action, object_type="pool", object_id=pool_id,
                    object_label=pool_id, changes=changes, details={"account": account.name, **details})


def _check_permission(user: User) -> None:
    # Views check first and answer 403; this keeps any other caller (a shell, a future API) to the same rule.
    if not access.can_manage_pools(user):
        raise PermissionDenied("Managing pools needs the portal.manage_pools permission.")


def _checked_pool_id(pool_id: str | None) -> str:
    pool_id = (pool_id or "").strip()
    if not POOL_ID_PATTERN.fullmatch(pool_id):
        raise ActionError(f"That pool id is not valid. {POOL_ID_RULE}", field="pool_id")
    return pool_id


def _check_counts(dedicated_nodes: object, low_priority_nodes: object) -> None:
    for field, value, kind in (("dedicated_nodes", dedicated_nodes, "dedicated"),
                               ("low_priority_nodes", low_priority_nodes, "spot")):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_NODES_PER_KIND:
            raise ActionError(f"Give a whole number of {kind} nodes from 0 to {MAX_NODES_PER_KIND}.",
                                  field=field)


def _check_still_there(pool: Pool) -> None:
    if pool.gone_at is not None:
        raise ActionError(f"The pool “{pool.pool_id}” no longer exists in Batch. Nothing was changed.")


def _refusal(exc: GatewayError, *, action: str, account: BatchAccount, pool_id: str) -> ActionError:
    return refusal(exc, action=action, what="the pool", logged_as=f"pool {pool_id} on account {account}",
                   rejected_hint="; check the values and try again", specific=_pool_refusal(exc, pool_id))


def _pool_refusal(exc: GatewayError, pool_id: str) -> ActionError | None:
    """Batch's refusals that only pools meet, in words for the person; None for the ones every action shares."""
    if isinstance(exc, AlreadyExists):
        return ActionError(f"A pool with the id “{pool_id}” already exists in Batch. Nothing was created; "
                           "choose another id.", field="pool_id")
    if isinstance(exc, NotFound):
        return ActionError(f"Batch has no pool “{pool_id}” any more; nothing was changed. The pool list "
                           "catches up at the next sync.")
    if isinstance(exc, Rejected) and exc.code == "PoolBeingResized":
        return ActionError(f"The pool “{pool_id}” is still resizing; nothing was changed. Try again when it "
                           "is steady.")
    if isinstance(exc, Rejected) and exc.code == "PoolBeingDeleted":
        return ActionError(f"The pool “{pool_id}” is being deleted; nothing was changed.")
    return None
