"""What actions on pools, jobs and tasks share: the error a refused action raises, Batch's refusals in words for
the person, and what follows an accepted action (its audit record, then a sync so the pages catch up)."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from batchsync.gateway import AuthFailed, GatewayError, Rejected, Transient
from batchsync.tasks import sync_account_task, sync_job_tasks_task
from portal.audit.services import record_event

logger = logging.getLogger(__name__)


class ActionError(Exception):
    """An action did not happen; `message` is for the person who asked, `field` names the input at fault."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


def refusal(exc: GatewayError, *, action: str, what: str, logged_as: str = "", rejected_hint: str = "",
            specific: ActionError | None = None) -> ActionError:
    """The person's version of a gateway error Batch gave when asked to `action` `what` ("terminate", "the job
    “x”"); the log keeps Batch's code and request id. `specific` is the domain's own words for this refusal, when
    it has them; `rejected_hint` follows "Nothing was changed" when Batch rejected the request as it stands."""
    logger.warning("%s %s refused by Batch: %s", action, logged_as or what, exc)
    if specific is not None:
        return specific
    if isinstance(exc, Transient):
        return ActionError("Batch is busy or could not be reached; nothing was changed. Try again in a minute.")
    if isinstance(exc, AuthFailed):
        return ActionError("Batch refused the portal's credentials; nothing was changed. Ask an administrator "
                           "to check the Batch account settings.")
    if isinstance(exc, Rejected):
        reason = (exc.message or "no reason given").rstrip(". ")
        return ActionError(f"Batch refused to {action} {what}: {reason}. Nothing was changed{rejected_hint}.")
    return ActionError(f"Batch answered with an unexpected error; nothing was changed. Try again, and tell an "
                       f"administrator if it keeps happening (Batch request id {exc.request_id or 'unknown'}).")


def record_and_sync(*, account_pk: int, job_pk: int | None = None, full_task_sync: bool = False,
                    **event: Any) -> None:
    """Record an action Batch accepted (`event`: portal.audit.services.record_event's arguments) and, once that is
    committed, ask for a sync of the account and, given `job_pk`, of that job's tasks."""
    with transaction.atomic():
        record_event(**event)
        transaction.on_commit(lambda: request_sync(account_pk))
        if job_pk is not None:
            transaction.on_commit(lambda: request_job_tasks_sync(job_pk, full=full_task_sync))


def request_sync(account_pk: int) -> None:
    # Without this the change shows at the next periodic sync anyway, so an unreachable broker costs freshness
    # only and must not turn an action Batch accepted into an error page.
    try:
        sync_account_task.delay(account_pk)
    except Exception:
        logger.warning("could not enqueue a sync of account %s after an action", account_pk, exc_info=True)


def request_job_tasks_sync(job_pk: int, *, full: bool) -> None:
    # Like request_sync: freshness only, never an error for an action Batch accepted.
    try:
        sync_job_tasks_task.apply_async((job_pk,), {"full": full}, expires=300)
    except Exception:
        logger.warning("could not enqueue a task sync of job %s after an action", job_pk, exc_info=True)
