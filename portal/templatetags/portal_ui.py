"""Template filters and tags for the pages: relative times, durations, plain status words, progress."""

from datetime import datetime
from typing import Any

from django import template
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from portal.accounts.selectors import sync_is_stale
from portal.dashboard.selectors import HourBar
from portal.jobs.selectors import Progress, job_progress
from portal.models import Job, Task, TaskResult, TaskState
from portal.pools.selectors import PoolSummary
from portal.units import human_bytes

register = template.Library()


@register.filter
def ago(value: datetime | None) -> str:
    """'12 s ago', '4 min ago', '3 h ago', '2 d ago'; 'never' for no time."""
    if value is None:
        return "never"
    seconds = int((timezone.now() - value).total_seconds())
    if seconds < 0:
        # Batch's clock may run a little ahead of ours.
        return "just now"
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


@register.filter
def duration(seconds: float | None) -> str:
    """A length of time for people: '850 ms', '12.4 s', '4 min 3 s', '2 h 5 min', '3 d 4 h'."""
    if seconds is None:
        return "–"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


@register.filter(name="human_bytes")
def human_bytes_filter(size: int | None) -> str:
    """A size in bytes by the one rule (portal.units), for `{{ size|human_bytes }}`; Django's filesizeformat counts
    in 1024s and is not used."""
    return "–" if size is None else human_bytes(size)


@register.filter
def between(end: datetime | None, start: datetime | None) -> float | None:
    """Seconds from start to end, for `{{ end|between:start|duration }}`."""
    if end is None or start is None:
        return None
    return max((end - start).total_seconds(), 0.0)


TASK_STATUS_WORDS: dict[str, str] = {
    TaskState.ACTIVE: "waiting",
    TaskState.PREPARING: "preparing",
    TaskState.RUNNING: "running",
    TaskState.UNKNOWN: "unknown",
}


@register.filter
def task_status(task: Task) -> str:
    """One plain word for a task's state and result, also used as its CSS class."""
    if task.state == TaskState.COMPLETED:
        if task.killed_by_terminate:
            return "terminated"
        words: dict[str, str] = {TaskResult.SUCCESS: "succeeded", TaskResult.FAILURE: "failed"}
        return words.get(task.result, "completed")
    return TASK_STATUS_WORDS.get(task.state, task.state or "unknown")


@register.filter
def progress(job: Job) -> Progress:
    return job_progress(job)


# The progress and node bars repeat on every row of a list (the dashboard's jobs and pools, the job list): built here
# rather than in an included template, which costs ten times more per row.

@register.simple_tag
def progress_bar(job: Job, big: bool = False) -> SafeString:
    """A job's stacked progress bar from Batch's task counts, with the counts beneath; `big` on the job's own page."""
    p = job_progress(job)
    terminated = f" {p.terminated:,} ended by a terminate," if p.terminated else ""
    label = (f"{p.succeeded:,} succeeded, {p.failed:,} failed,{terminated} {p.running:,} running, "
             f"{p.waiting:,} waiting, of {p.total:,} tasks")
    parts = (("ok", p.succeeded, p.succeeded_pct), ("fail", p.failed, p.failed_pct),
             ("term", p.terminated, p.terminated_pct), ("run", p.running, p.running_pct))
    bar = format_html_join("", '<span class="seg {}" style="width: {}%"></span>',
                           ((kind, f"{pct:.2f}") for kind, n, pct in parts if n))
    if p.total:
        counts = format_html("<strong>{}%</strong> · {} of {} done", p.finished_pct, f"{p.finished:,}", f"{p.total:,}")
        extras = [format_html('<span class="t-fail">{} failed</span>', f"{p.failed:,}") if p.failed else "",
                  format_html('<span class="t-term">{} terminated</span>', f"{p.terminated:,}") if p.terminated else "",
                  format_html('<span class="t-run">{} running</span>', f"{p.running:,}") if p.running else "",
                  f"{p.waiting:,} waiting" if p.waiting else ""]
        counts += format_html_join("", " · {}", ((extra,) for extra in extras if extra))
    else:
        counts = SafeString("No tasks yet")
    return format_html('<div class="progress{}" role="img" aria-label="{}">{}</div>\n<p class="progress-counts">{}</p>',
                       " big" if big else "", label, bar, counts)


@register.simple_tag
def node_bar(summary: PoolSummary) -> SafeString:
    """A pool's nodes as one bar split by state, with the counts beneath."""
    if not summary.nodes:
        resizing = " yet: resizing" if summary.pool.allocation_state == "resizing" else ""
        return format_html('<p class="node-counts muted">No nodes{}</p>', resizing)
    segments = summary.segments
    bar = format_html_join("", '<span class="seg node-{}" style="width: {}%"></span>',
                           ((state, width) for state, _, _, width in segments))
    counts = format_html_join("", '<span><span class="key node-{}" aria-hidden="true"></span>{} {}</span>',
                              ((state, f"{n:,}", label) for state, label, n, _ in segments))
    return format_html('<div class="nodebar" role="img" aria-label="{}">{}</div>\n<p class="node-counts">{}</p>',
                       summary.described, bar, counts)


@register.simple_tag
def hour_bars(bars: list[HourBar]) -> SafeString:
    """The dashboard chart's bars (portal.dashboard.selectors.tasks_finished_per_hour): succeeded below, failed stacked
    on top, their numbers on hover, every fourth hour labelled."""
    def bar(index: int, hour: HourBar) -> SafeString:
        end = timezone.localtime(hour.end).strftime("%H:%M")
        failed = (format_html('<span class="bar-fail" style="height: {}%"></span>', f"{hour.failed_pct:.2f}")
                  if hour.failed else "")
        label = timezone.localtime(hour.hour).strftime("%H:%M") if index % 4 == 0 else ""
        return format_html('<li title="{}–{}: {} succeeded, {} failed"><span class="bar" style="height: {}%">{}</span>'
                           '<span class="x">{}</span></li>', short_time(hour.hour, "%H:%M"), end,
                           f"{hour.succeeded:,}", f"{hour.failed:,}", f"{hour.height_pct:.2f}", failed, label)

    return format_html_join("\n", "{}", ((bar(index, hour),) for index, hour in enumerate(bars)))


@register.inclusion_tag("includes/synced.html")
def synced(at: datetime | None, what: str = "Synced", live: bool = True) -> dict:
    """'Synced 4 s ago' from a last_synced_at, marked stale when the sync has fallen behind on
    something that can still change (a finished job is not synced again, and that is fine)."""
    return {"at": at, "what": what if live else "Last synced", "stale": live and sync_is_stale(at)}


@register.filter
def num(value: Any) -> str:  # whatever the template hands over
    """An integer with thousands separators: 100000 → '100,000'."""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return ""


@register.simple_tag
def when(value: datetime | None, empty: str = "–", seconds: bool = True) -> SafeString | str:
    """A <time> element: the time alone today, with its date on other days (and year in other years); the full time
    with its zone on hover and for machines. The zone is said once per page, in base.html's footer. `seconds=False`
    for an estimate, which is not that precise."""
    if value is None:
        return empty
    value = timezone.localtime(value)
    title, today = ("%Y-%m-%d %H:%M:%S %Z", "%H:%M:%S") if seconds else ("%Y-%m-%d %H:%M %Z", "%H:%M")
    return format_html('<time datetime="{}" title="{}">{}</time>', value.isoformat(), value.strftime(title),
                       short_time(value, today))


@register.filter
def short_time(value: datetime | None, today_format: str = "%H:%M:%S") -> str:
    """`when`'s words as plain text, for where an element cannot go (a title): the time alone today (in
    `today_format`), with its date on other days and its year in other years."""
    if value is None:
        return "–"
    value = timezone.localtime(value)
    today = timezone.localdate()
    if value.date() == today:
        return value.strftime(today_format)
    if value.year == today.year:
        return value.strftime("%b %d, %H:%M")
    return value.strftime("%b %d %Y, %H:%M")
