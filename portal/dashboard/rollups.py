"""The dashboard's per-hour chart of finished tasks, counted once per interval for every viewer, not per request.

Counting the day's finished tasks costs in proportion to how many there were (a million in a busy day); the chart
is the same for everyone. So beat refreshes it (batchsync.refresh_dashboard_rollups, every 30 s) into the shared
cache, and a page reads the stored counts. A refresh recounts only the current and the previous hour (where the
sync still adds tasks) and hours it has not counted yet; past hours are kept, and recounted whole every
FULL_RECOUNT_SECONDS, so a task synced late into an older hour shows within that time. When no refresh is recent
(beat stopped, Redis down) the page counts for itself, as before."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, QuerySet
from django.db.models.functions import TruncHour
from django.utils import timezone

from portal.models import Task, TaskResult

HOURS = 24
CACHE_KEY = "dashboard:finished-per-hour:v1"
RECENT_HOURS = 2
FULL_RECOUNT_SECONDS = 600

# {hour: (succeeded, failed)} for the hours of the chart
HourCounts = dict[datetime, tuple[int, int]]


def _window(now: datetime) -> tuple[datetime, datetime]:
    current = now.replace(minute=0, second=0, microsecond=0)
    return current - timedelta(hours=HOURS - 1), current


def count_hours(since: datetime) -> HourCounts:
    """Tasks that succeeded or failed in each hour from `since`: two GROUP BYs over the (result, end time) index.
    Failures leave out the tasks a terminate killed (Task.objects.failed()), which are neither."""

    def per_hour(queryset: QuerySet[Task]) -> dict[datetime, int]:
        rows = (queryset.filter(end_time__gte=since).annotate(hour=TruncHour("end_time"))
                .values_list("hour").annotate(n=Count("*")).order_by())
        return {hour: n for hour, n in rows}

    succeeded = per_hour(Task.objects.filter(result=TaskResult.SUCCESS))
    failed = per_hour(Task.objects.failed())
    return {hour: (succeeded.get(hour, 0), failed.get(hour, 0)) for hour in {*succeeded, *failed}}


def refresh(*, now: datetime | None = None) -> HourCounts:
    """Recount what may have changed and store the chart's counts for every viewer; returns them."""
    now = now or timezone.now()
    since, current = _window(now)
    stored = cache.get(CACHE_KEY)
    full = (stored is None or stored["full_at"] < now - timedelta(seconds=FULL_RECOUNT_SECONDS)
            or stored["since"] > since)
    if full:
        counts, full_at = count_hours(since), now
    else:
        counted_until = stored["current"]          # the newest hour the stored counts cover (partly)
        recount_from = min(current - timedelta(hours=RECENT_HOURS - 1), counted_until)
        kept = {hour: n for hour, n in stored["counts"].items() if since <= hour < recount_from}
        counts, full_at = {**kept, **count_hours(recount_from)}, stored["full_at"]
    cache.set(CACHE_KEY, {"counts": counts, "since": since, "current": current, "computed_at": now,
                          "full_at": full_at}, timeout=HOURS * 3600)
    return counts


def finished_per_hour(*, now: datetime | None = None) -> tuple[datetime, HourCounts]:
    """The first hour of the chart and its counts: the stored ones when a refresh is recent enough, else counted
    now (and stored). DASHBOARD_ROLLUP_STALE_SECONDS below 0 counts on every request and stores nothing."""
    now = now or timezone.now()
    since, _ = _window(now)
    if settings.DASHBOARD_ROLLUP_STALE_SECONDS < 0:
        return since, count_hours(since)   # never stored: counted on every request
    stale = timedelta(seconds=settings.DASHBOARD_ROLLUP_STALE_SECONDS)
    stored = cache.get(CACHE_KEY)
    if stored is not None and stored["computed_at"] >= now - stale and stored["since"] <= since:
        return since, stored["counts"]
    return since, refresh(now=now)
