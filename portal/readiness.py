"""Readiness (/readyz): can this web process serve people now? One check per dependency (the database, Redis, each
Batch account, Blob storage), each answering ok or a short reason and how long it took. 200 when every one is ok,
503 otherwise, so a load balancer or an orchestrator takes the process out of rotation while one is down.

/healthz stays the liveness check (the process and its database); this one is for dashboards and rotation. It is
open without sign-in, so it says nothing an outsider could use: no host names, URLs, keys, or exception text, only
the account's short name and a reason chosen here. Each check waits at most READINESS_TIMEOUT_SECONDS, without
retries, and the checks outside the database run side by side: a dead dependency costs one timeout, not a pile."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import redis
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from batchsync.accounts import blob_store, gateway_for
from batchsync.gateway import AuthFailed, GatewayError, Transient
from portal.models import BatchAccount


class NotReady(Exception):
    """A dependency's answer, in words safe to show anyone."""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    milliseconds: float
    error: str = ""

    def as_json(self) -> dict:
        answer: dict = {"ok": self.ok, "ms": round(self.milliseconds, 1)}
        if self.error:
            answer["error"] = self.error
        return answer


def timeout() -> float:
    return float(settings.READINESS_TIMEOUT_SECONDS)


def run(name: str, probe: Callable[[], None]) -> Check:
    started = time.monotonic()
    try:
        probe()
    except NotReady as exc:
        return Check(name, False, (time.monotonic() - started) * 1000, str(exc))
    except Exception as exc:  # noqa: BLE001 - any other failure is "not ready", named by its class only
        return Check(name, False, (time.monotonic() - started) * 1000, f"failed ({type(exc).__name__})")
    return Check(name, True, (time.monotonic() - started) * 1000)


def database() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        raise NotReady("does not answer") from None


def redis_at(url: str) -> Callable[[], None]:
    def probe() -> None:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout(), socket_timeout=timeout())
        try:
            client.ping()
        except (redis.RedisError, OSError):
            raise NotReady("does not answer") from None
        finally:
            client.close()
    return probe


def gateway_words(exc: GatewayError) -> str:
    if isinstance(exc, AuthFailed):
        return "refused the credentials"
    if isinstance(exc, Transient) and exc.status is None:
        return "does not answer"
    return f"answered with an error (HTTP {exc.status})" if exc.status else "answered with an error"


def batch_account(account: BatchAccount) -> Callable[[], None]:
    def probe() -> None:
        try:
            with gateway_for(account) as gateway:
                gateway.ping(timeout=timeout())
        except ImproperlyConfigured:
            raise NotReady("has no credential in this process's environment") from None
        except GatewayError as exc:
            raise NotReady(gateway_words(exc)) from None
    return probe


def storage() -> None:
    try:
        with blob_store() as store:
            missing = store.missing_containers(timeout=timeout())
    except GatewayError as exc:
        raise NotReady(gateway_words(exc)) from None
    if missing:
        raise NotReady(f"containers missing: {', '.join(sorted(missing))}")


def accounts() -> list[BatchAccount]:
    """Every enabled account; before the first sync has made the default account's row, the one settings describe.
    A disabled account is neither synced nor offered, so it cannot make the portal unready."""
    rows = list(BatchAccount.objects.filter(enabled=True))
    return rows or [BatchAccount(name="default", account_url=settings.BATCH_ACCOUNT_URL,
                                 account_name=settings.BATCH_ACCOUNT_NAME, is_default=True)]


def checks() -> list[Check]:
    """Every dependency's check; the database first, in this thread (it owns the connection), the rest together."""
    results = [run("database", database)]
    probes: list[tuple[str, Callable[[], None]]] = [("redis", redis_at(settings.CELERY_BROKER_URL))]
    if not settings.CELERY_BROKER_URL.startswith("redis"):
        probes = [("redis", redis_at(settings.REDIS_URL))]
    cache_url = settings.CACHES["default"].get("LOCATION")
    if isinstance(cache_url, str) and cache_url.startswith("redis") and cache_url != settings.CELERY_BROKER_URL:
        probes.append(("cache", redis_at(cache_url)))
    if results[0].ok:
        probes += [(f"batch:{account.name}", batch_account(account)) for account in accounts()]
    else:
        # Without the database the accounts are unknown; the one settings describe still says whether Batch answers.
        probes.append(("batch:default", batch_account(BatchAccount(
            name="default", account_url=settings.BATCH_ACCOUNT_URL, account_name=settings.BATCH_ACCOUNT_NAME,
            is_default=True))))
    probes.append(("storage", storage))
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        results += list(pool.map(lambda item: run(*item), probes))
    return results


@require_safe
@never_cache
@login_not_required
def readyz(request: HttpRequest) -> JsonResponse:
    results = checks()
    ready = all(check.ok for check in results)
    return JsonResponse({"ready": ready, "checks": {check.name: check.as_json() for check in results}},
                        status=200 if ready else 503)
