"""User-initiated writes, named `<entity>_<action>`: creating, resizing and deleting Batch pools.

Each checks the user's permission and its input, asks Batch through the gateway, and turns Batch's refusals into
`PoolActionError`s whose message says what happened and what to do."""

from __future__ import annotations

import logging
import re

from django.core.exceptions import PermissionDenied
from django.db import transaction

from batchsync.gateway import (AlreadyExists, AuthFailed, GatewayError, ImageSpec, NotFound, PoolSpec, Rejected,
                               ResourceFileSpec, Transient)
from portal.models import MAX_NODES_PER_KIND, Pool, PoolState, PoolTemplate

logger = logging.getLogger(__name__)

MANAGE_POOLS = "portal.manage_pools"
# Batch's rule for pool ids: letters, digits, hyphens and underscores, at most 64 characters.
POOL_ID_PATTERN = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
POOL_ID_RULE = "Use 1 to 64 letters, digits, hyphens (-) and underscores (_)."


class PoolActionError(Exception):
    """A pool action did not happen; `message` is meant for the person who asked, `field` names the input at fault."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


def can_manage_pools(user) -> bool:
    return bool(user and user.is_active and user.has_perm(MANAGE_POOLS))


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


def pool_create(*, user, template: PoolTemplate, pool_id: str, dedicated_nodes: int, low_priority_nodes: int) -> None:
    """Ask Batch for a new pool made from `template`. Batch answers at once; the nodes arrive over minutes."""
    from batchsync.accounts import default_account, gateway_for

    _check_permission(user)
    pool_id = _checked_pool_id(pool_id)
    _check_counts(dedicated_nodes, low_priority_nodes)
    spec = pool_spec_from_template(template=template, pool_id=pool_id, dedicated_nodes=dedicated_nodes,
                                   low_priority_nodes=low_priority_nodes)
    account = default_account()
    try:
        with gateway_for(account) as gateway:
            gateway.create_pool(spec)
    except GatewayError as exc:
        raise _refusal(exc, action="create", account=account, pool_id=pool_id) from exc
    _after(account, user=user, action="pool.create", pool_id=pool_id,
           details={"template": template.name, "template_id": template.pk, "dedicated_nodes": dedicated_nodes,
                    "low_priority_nodes": low_priority_nodes})


def pool_resize(*, user, pool: Pool, dedicated_nodes: int, low_priority_nodes: int) -> None:
    """Ask Batch to change the pool's target node counts; the pool is `resizing` until they are reached."""
    from batchsync.accounts import gateway_for

    _check_permission(user)
    _check_counts(dedicated_nodes, low_priority_nodes)
    _check_still_there(pool)
    if pool.state == PoolState.DELETING:
        raise PoolActionError(f"The pool “{pool.pool_id}” is being deleted, so it cannot be resized. "
                              "Nothing was changed.")
    try:
        with gateway_for(pool.account) as gateway:
            gateway.resize_pool(pool.pool_id, dedicated=dedicated_nodes, low_priority=low_priority_nodes)
    except GatewayError as exc:
        raise _refusal(exc, action="resize", account=pool.account, pool_id=pool.pool_id) from exc
    _after(pool.account, user=user, action="pool.resize", pool_id=pool.pool_id,
           details={"from_dedicated_nodes": pool.target_dedicated_nodes,
                    "from_low_priority_nodes": pool.target_low_priority_nodes,
                    "dedicated_nodes": dedicated_nodes, "low_priority_nodes": low_priority_nodes})


def pool_delete(*, user, pool: Pool) -> bool:
    """Ask Batch to delete the pool and its nodes. Returns False if Batch no longer had it (nothing left to do)."""
    from batchsync.accounts import gateway_for

    _check_permission(user)
    _check_still_there(pool)
    try:
        with gateway_for(pool.account) as gateway:
            gateway.delete_pool(pool.pool_id)
    except NotFound:
        # The outcome the person asked for holds already (deleted elsewhere, or a second click); the sync marks it gone.
        deleted = False
    except GatewayError as exc:
        raise _refusal(exc, action="delete", account=pool.account, pool_id=pool.pool_id) from exc
    else:
        deleted = True
    _after(pool.account, user=user, action="pool.delete", pool_id=pool.pool_id, details={"batch_had_it": deleted})
    return deleted


def _record_action(*, user, action: str, account, pool_id: str, details: dict) -> None:
    """Integration point for the audit history: every successful pool action passes through here.

    Intentionally empty until the audit issue lands; it will write an audit event in the caller's transaction."""


# --- helpers ----------------------------------------------------------------------------------------


def _check_permission(user) -> None:
    # Views check first and answer 403; this keeps any other caller (a shell, a future API) to the same rule.
    if not can_manage_pools(user):
        raise PermissionDenied("Managing pools needs the portal.manage_pools permission.")


def _checked_pool_id(pool_id) -> str:
    pool_id = (pool_id or "").strip()
    if not POOL_ID_PATTERN.fullmatch(pool_id):
        raise PoolActionError(f"That pool id is not valid. {POOL_ID_RULE}", field="pool_id")
    return pool_id


def _check_counts(dedicated_nodes, low_priority_nodes) -> None:
    for field, value, kind in (("dedicated_nodes", dedicated_nodes, "dedicated"),
                               ("low_priority_nodes", low_priority_nodes, "spot")):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_NODES_PER_KIND:
            raise PoolActionError(f"Give a whole number of {kind} nodes from 0 to {MAX_NODES_PER_KIND}.",
                                  field=field)


def _check_still_there(pool: Pool) -> None:
    if pool.gone_at is not None:
        raise PoolActionError(f"The pool “{pool.pool_id}” no longer exists in Batch. Nothing was changed.")


def _refusal(exc: GatewayError, *, action: str, account, pool_id: str) -> PoolActionError:
    """The person's version of a gateway error; the log keeps Batch's code and request id."""
    logger.warning("pool %s %s on account %s refused by Batch: %s", action, pool_id, account, exc)
    if isinstance(exc, AlreadyExists):
        return PoolActionError(f"A pool with the id “{pool_id}” already exists in Batch. Nothing was created; "
                               "choose another id.", field="pool_id")
    if isinstance(exc, Transient):
        return PoolActionError("Batch is busy or could not be reached; nothing was changed. Try again in a minute.")
    if isinstance(exc, AuthFailed):
        return PoolActionError("Batch refused the portal's credentials; nothing was changed. Ask an administrator "
                               "to check the Batch account settings.")
    if isinstance(exc, NotFound):
        return PoolActionError(f"Batch has no pool “{pool_id}” any more; nothing was changed. The pool list "
                               "catches up at the next sync.")
    if isinstance(exc, Rejected) and exc.code == "PoolBeingResized":
        return PoolActionError(f"The pool “{pool_id}” is still resizing; nothing was changed. Try again when it "
                               "is steady.")
    if isinstance(exc, Rejected) and exc.code == "PoolBeingDeleted":
        return PoolActionError(f"The pool “{pool_id}” is being deleted; nothing was changed.")
    if isinstance(exc, Rejected):
        reason = (exc.message or "no reason given").rstrip(". ")
        return PoolActionError(f"Batch refused to {action} the pool: {reason}. Nothing was changed; check the "
                               "values and try again.")
    return PoolActionError(f"Batch answered with an unexpected error; nothing was changed. Try again, and tell an "
                           f"administrator if it keeps happening (Batch request id {exc.request_id or 'unknown'}).")


def _after(account, *, user, action: str, pool_id: str, details: dict) -> None:
    """Record a successful action and ask for a sync of the account, once the record is committed."""
    with transaction.atomic():
        _record_action(user=user, action=action, account=account, pool_id=pool_id, details=details)
        transaction.on_commit(lambda: _request_sync(account.pk))


def _request_sync(account_pk: int) -> None:
    # Without this the change shows at the next periodic sync anyway, so a missing sync task or an unreachable
    # broker costs freshness only and must not turn an action Batch accepted into an error page.
    try:
        from batchsync.tasks import sync_account_task
    except ImportError:
        return
    try:
        sync_account_task.delay(account_pk)
    except Exception:
        logger.warning("could not enqueue a sync of account %s after a pool action", account_pk, exc_info=True)
