"""When will a job finish: an estimate with a range, from the mirror the sync writes.

Two parts. `estimate` is a pure function over numbers (remaining tasks, completions in a recent window, the
template's history, the slots the pool has): bench/eta_backtest.py feeds it what it reads from Batch, so the bench
measures this estimator and not a copy. `job_estimate` reads those numbers for one job from the mirror, on render:
the estimate is "updated by the sync" because every sync pass rewrites what it reads (Batch's task counts on the
job, each task's end time, the pool's node counts); nothing is stored.

The basis, in order:
1. The job's own rate: tasks that ended in a recent window (from the task_job_end index: one bounded COUNT and the
   first end time). The window starts at the first end time at the earliest, so the time nodes took to start and
   the first wave of tasks took to run do not count as slowness; it keeps the recent part of the run only, so a
   pool that grew or shrank shows in the rate. The range comes from the count's own uncertainty (±2√n), and the
   finish allows for the last wave's stragglers (the slowest of the tasks still running), and the late end one
   typical task duration more.
2. Before two of its tasks have ended: the median duration of the finished tasks of the template version's last
   runs (cached per version), times remaining tasks, over the slots the pool has now.
3. Neither: unknown, and the sentence says why.
"""

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.cache import cache
from django.db.models import Count, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from portal.models import Job, Pool, Submission, SubmissionState, Task

# The rate is measured over at most this much of the recent past, and over at least this share of the time since
# the first task ended (so a slow job with few endings still has enough of them to count).
RECENT_WINDOW = timedelta(minutes=15)
RECENT_SHARE = 0.5
# Below this many endings in the window the rate says too little; the template's history is used instead. Above
# this many (a fast job with a million tasks), the latest are enough (±2√n is ±4.5 %) and the count stays cheap.
MIN_ENDINGS = 2
MAX_ENDINGS = 2000
# Template history: the finished tasks of this many of the version's latest runs, at most this many durations.
HISTORY_RUNS = 5
HISTORY_TASKS = 5000
HISTORY_CACHE_SECONDS = 600


@dataclass(frozen=True)
class History:
    """A template version's finished tasks: the quartiles of their durations, and how many runs they came from."""

    q1: float
    median: float
    q3: float
    runs: int
    tasks: int


@dataclass(frozen=True)
class Estimate:
    """When a job should finish: `finish_at` between `low` and `high`, and the sentence saying what it is based on.
    All three are None when it is unknown; `basis` then says why."""

    finish_at: datetime | None
    low: datetime | None
    high: datetime | None
    basis: str

    @property
    def known(self) -> bool:
        return self.finish_at is not None


def _seconds(value: float) -> str:
    """A duration in words for a basis sentence: '40 s', '3.5 min', '2.1 h'."""
    if value < 90:
        return f"{value:.0f} s"
    if value < 5400:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _harmonic(n: int) -> float:
    """1 + 1/2 + … + 1/n; Euler's approximation past a few dozen terms (a job may have thousands running)."""
    if n <= 50:
        return sum(1 / k for k in range(1, n + 1))
    return math.log(n) + 0.5772156649 + 1 / (2 * n)


def estimate(*, now: datetime, remaining: int, running: int = 0, endings: int = 0, window_seconds: float = 0.0,
             history: History | None = None, slots: int = 0) -> Estimate:
    """The estimate from numbers alone.

    now: the time the numbers were read (the sync's); remaining: tasks not yet ended (waiting + running); running:
    of those, running now; endings: tasks that ended within the last `window_seconds` (the window starting no
    earlier than the first ending, which itself is not counted); history: the template version's task durations;
    slots: task slots the job's pool has now."""
    if remaining <= 0:
        return Estimate(now, now, now, "All its tasks have ended.")
    if endings >= MIN_ENDINGS and window_seconds > 0:
        rate = endings / window_seconds
        spread = 2 * math.sqrt(endings)
        fast = (endings + spread) / window_seconds
        slow = max(endings - spread, 0.5) / window_seconds
        # Busy slots ÷ rate is the mean time a task takes (Little's law). Remaining ÷ rate lets the last tasks end
        # one task's time after the queue empties, but the job waits for the slowest of the last n running: about
        # H(n) = 1 + 1/2 + … + 1/n task times for durations as spread as an exponential's (the backtest's lognormal
        # jobs on 12 slots ran a third early without it). The late end adds one more task time.
        busy = min(running, remaining)
        typical = running / rate if running else 0.0
        tail = typical * (_harmonic(busy) - 1) if busy else 0.0
        finish = now + timedelta(seconds=remaining / rate + tail)
        low = now + timedelta(seconds=remaining / fast)
        high = now + timedelta(seconds=remaining / slow + tail + typical)
        per_minute = rate * 60
        pace = f"{per_minute:.1f} tasks a minute" if per_minute >= 1 else f"a task every {_seconds(1 / rate)}"
        return Estimate(finish, low, high,
                        f"From its own pace: {endings:,} tasks ended in the last {_seconds(window_seconds)} "
                        f"({pace}), {remaining:,} to go.")
    if history is not None and slots > 0:
        waves = max(remaining / slots, 1.0)
        finish = now + timedelta(seconds=waves * history.median)
        low = now + timedelta(seconds=waves * history.q1)
        high = now + timedelta(seconds=waves * history.q3 + history.median)
        runs = "run" if history.runs == 1 else "runs"
        return Estimate(finish, low, high,
                        f"From this template's last {history.runs} {runs}: a task took {_seconds(history.median)} "
                        f"(median of {history.tasks:,}), {remaining:,} to go on {slots:,} slots.")
    if history is not None:
        why = "its pool has no nodes to run them on yet"
    elif endings or running:
        why = ("too few of its tasks have ended to tell its pace, and there are no finished runs of its template to "
               "go by")
    else:
        why = "none of its tasks has ended yet, and there are no finished runs of its template to go by"
    return Estimate(None, None, None, f"{why[0].upper()}{why[1:]}.")


def recent_since(now: datetime, first_end: datetime, nth_latest: datetime | None = None) -> datetime:
    """Where the rate's window starts: the recent past (RECENT_WINDOW, or the latest RECENT_SHARE of the time since
    the first ending if longer), never before the first ending, which is not counted itself, nor before
    `nth_latest`, the MAX_ENDINGS-th latest ending (so the count reads at most that many index entries)."""
    since = max(first_end, now - max(RECENT_WINDOW, (now - first_end) * RECENT_SHARE))
    return max(since, nth_latest) if nth_latest is not None else since


def from_end_times(*, now: datetime, end_times: Sequence[datetime], remaining: int, running: int = 0,
                   history: History | None = None, slots: int = 0) -> Estimate:
    """The estimate from a job's task end times as a list, with the windows job_estimates reads from the index: what
    bench/eta_backtest.py feeds from its snapshots of Batch and from finished jobs in the mirror."""
    ended = [end for end in end_times if end <= now]
    endings, window = 0, 0.0
    if ended:
        first_end = min(ended)
        latest = sorted(ended, reverse=True)
        since = recent_since(now, first_end, latest[MAX_ENDINGS - 1] if len(latest) >= MAX_ENDINGS else None)
        endings = sum(1 for end in ended if end > since)
        if endings < MIN_ENDINGS and since > first_end:
            since = first_end
            endings = sum(1 for end in ended if end > since)
        window = (now - since).total_seconds()
    return estimate(now=now, remaining=remaining, running=running, endings=endings, window_seconds=window,
                    history=history, slots=slots)


def template_history(version_id: int, account_id: int, exclude_job_id: str = "") -> History | None:
    """The finished tasks of the template version's latest runs (not the job asked about), cached per version: a
    few indexed reads of at most HISTORY_TASKS durations, at most once per HISTORY_CACHE_SECONDS."""
    key = f"eta-history:{version_id}:{exclude_job_id}"
    cached = cache.get(key)
    if cached is not None:
        return cached or None  # False: looked, nothing there
    job_ids = list(Submission.objects.filter(template_version_id=version_id, state=SubmissionState.SUBMITTED)
                   .exclude(job_id=exclude_job_id).order_by("-created_at")
                   .values_list("job_id", flat=True)[:HISTORY_RUNS])
    jobs = list(Job.objects.filter(account_id=account_id, job_id__in=job_ids).values_list("pk", flat=True))
    durations: list[float] = []
    runs = 0
    for pk in jobs:
        found = list(Task.objects.filter(job_id=pk, duration_seconds__isnull=False)
                     .values_list("duration_seconds", flat=True)[:HISTORY_TASKS - len(durations)])
        runs += bool(found)
        durations.extend(found)
        if len(durations) >= HISTORY_TASKS:
            break
    history = None
    if durations:
        if len(durations) == 1:
            q1 = median = q3 = durations[0]
        else:
            q1, median, q3 = statistics.quantiles(durations, n=4, method="inclusive")
        history = History(q1, median, q3, runs, len(durations))
    cache.set(key, history or False, HISTORY_CACHE_SECONDS)
    return history


def _as_of(job: Job) -> datetime:
    """When the mirror last read the job's tasks: the estimate runs from then, as Batch's counts do."""
    return job.tasks_synced_at or job.last_synced_at or timezone.now()


def _endings(windows: dict[int, tuple[datetime, datetime]]) -> dict[int, int]:
    """Tasks ended within each job's window (after its start, up to its end): one query, a range of task_job_end per
    job."""
    if not windows:
        return {}
    ranges = Q()
    for pk, (now, since) in windows.items():
        ranges |= Q(job_id=pk, end_time__gt=since, end_time__lte=now)
    rows = Task.objects.filter(ranges).order_by().values("job_id").annotate(n=Count("pk")).values_list("job_id", "n")
    return dict(rows)


def _template_versions(jobs: list[Job], submission: Submission | None) -> dict[int, int]:
    """The template version each job was submitted from, by job pk (outside jobs have none): one query."""
    if submission is not None and len(jobs) == 1:
        return {jobs[0].pk: submission.template_version_id}
    own = [job for job in jobs if job.job_id.startswith(Submission.JOB_ID_PREFIX)]
    if not own:
        return {}
    by_key = {(job.account_id, job.job_id): job.pk for job in own}
    rows = (Submission.objects.filter(account_id__in={job.account_id for job in own},
                                      job_id__in=[job.job_id for job in own])
            .values_list("account_id", "job_id", "template_version_id"))
    return {by_key[(account, job_id)]: version for account, job_id, version in rows if (account, job_id) in by_key}


def _pool_slots(jobs: list[Job]) -> dict[tuple[int, str], int]:
    """Task slots each job's pool has now (current nodes × slots per node), by (account, pool id): one query."""
    rows = (Pool.objects.filter(account_id__in={job.account_id for job in jobs},
                                pool_id__in={job.pool_id for job in jobs}, gone_at__isnull=True)
            .values_list("account_id", "pool_id", "current_dedicated_nodes", "current_low_priority_nodes",
                         "task_slots_per_node"))
    return {(account, pool_id): (dedicated + spot) * slots for account, pool_id, dedicated, spot, slots in rows}


def job_estimates(jobs: Sequence[Job], submission: Submission | None = None) -> dict[int, Estimate | None]:
    """When each job should finish, by pk, from the mirror as the last sync left it; None for a job with nothing to
    estimate (it has ended, or Batch counts no task of it). A fixed number of queries however many jobs (the
    dashboard's list): the first end time of each (a seek on task_job_end), the endings in each one's recent window
    (a range of task_job_end each; again over the whole time since the first ending for those whose window held too
    few), then, for jobs without a rate, their submissions (unless `submission`, the one job's, is given) and pools,
    and each template version's history, cached."""
    estimates: dict[int, Estimate | None] = {job.pk: None for job in jobs}
    live = [job for job in jobs if job.is_live and not job.has_ended and job.task_total > 0]
    if not live:
        return estimates
    # The first ending, and the MAX_ENDINGS-th latest up to the sync's time (a walk of that many index entries).
    as_of = Coalesce(OuterRef("tasks_synced_at"), OuterRef("last_synced_at"), Value(timezone.now()))
    rows = Job.objects.filter(pk__in=[job.pk for job in live]).annotate(
        first_end=Subquery(Task.objects.filter(job=OuterRef("pk"), end_time__isnull=False).order_by("end_time")
                           .values("end_time")[:1]),
        nth_latest=Subquery(Task.objects.filter(job=OuterRef("pk"), end_time__isnull=False, end_time__lte=as_of)
                            .order_by("-end_time").values("end_time")[MAX_ENDINGS - 1:MAX_ENDINGS]),
    ).order_by().values_list("pk", "first_end", "nth_latest")
    ends = {pk: (first, nth) for pk, first, nth in rows}
    first_ends = {pk: first for pk, (first, _) in ends.items()}
    windows: dict[int, tuple[datetime, datetime]] = {}
    for job in live:
        now, (first_end, nth_latest) = _as_of(job), ends.get(job.pk, (None, None))
        if first_end is not None and first_end < now:
            windows[job.pk] = (now, recent_since(now, first_end, nth_latest))
    counts = _endings(windows)
    # Too few lately (long tasks): the whole time since the first ending, still free of the start-up.
    wider = {pk: (now, first_ends[pk]) for pk, (now, since) in windows.items()
             if counts.get(pk, 0) < MIN_ENDINGS and since > first_ends[pk]}
    counts.update(_endings(wider))
    windows.update(wider)
    slow = [job for job in live if counts.get(job.pk, 0) < MIN_ENDINGS]
    versions = _template_versions(slow, submission) if slow else {}
    slots = _pool_slots(slow) if slow else {}
    for job in live:
        now = _as_of(job)
        history = None
        if job.pk in versions:
            history = template_history(versions[job.pk], job.account_id, job.job_id)
        window = windows.get(job.pk)
        estimates[job.pk] = estimate(
            now=now, remaining=job.task_active + job.task_running, running=job.task_running,
            endings=counts.get(job.pk, 0), window_seconds=(window[0] - window[1]).total_seconds() if window else 0.0,
            history=history, slots=slots.get((job.account_id, job.pool_id), 0))
    return estimates


def job_estimate(job: Job, submission: Submission | None = None) -> Estimate | None:
    """One job's estimate (see job_estimates): at most five queries besides a history cache miss."""
    return job_estimates([job], submission)[job.pk]
