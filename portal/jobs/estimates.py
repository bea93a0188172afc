"""When will a job finish: an estimate with a range, from the mirror the sync writes.

Two parts. `estimate` is a pure function over numbers (remaining tasks, completions in a recent window, the
template's history, the slots the pool has): bench/eta_backtest.py feeds it what it reads from Batch, so the bench
measures this estimator and not a copy. `job_estimate` reads those numbers for one job from the mirror, on render:
the estimate is "updated by the sync" because every sync pass rewrites what it reads (Batch's task counts on the
job, each task's end time, the pool's node counts). Only the job's pace (its recent endings and their run times, the
part that reads thousands of index entries a job) is kept, in the shared cache for ESTIMATE_PACE_SECONDS, so a page
listing jobs costs the same with a million ended tasks as with ten thousand.

The basis, in order:
1. The job's own rate: tasks that ended in a recent window (from the task_job_end index: one bounded COUNT and the
   first end time). The window starts once the first wave of tasks has ended (at the ending as many as the tasks
   running), so the time nodes took to start, and the burst of the first wave's short tasks ending together, do not
   count as the pace; it keeps the recent part of the run only, so a pool that grew or shrank shows in the rate.
   The queue drains at that rate; then the job waits for the slowest of the tasks still running, whose rest
   follows from the run times of the tasks that ended in the window (the latest SAMPLE_TASKS of them, read with the
   count): tightly spread run times end together, a heavy tail keeps the job waiting for its last task. The range
   comes from the count's own uncertainty (±2√n), and the late end one typical task duration more.
2. Before two of its tasks have ended: the median duration of the finished tasks of the template version's last
   runs on the same machine (VM size and tasks per node) when there are any, cached per version and machine, times
   remaining tasks, over the slots it can get: the pool's now, at most the job's maxParallelTasks.
3. Neither: unknown, and the sentence says why.
"""

import functools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, F, OuterRef, Q, Subquery, Value, Window
from django.db.models.functions import Coalesce, RowNumber
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
# The run times of the latest this many endings in the window give the shape of the last wave (see _last_wave); below
# MIN_SAMPLE of them the shape is taken as an exponential's.
SAMPLE_TASKS = 500
MIN_SAMPLE = 5
# Template history: the finished tasks of this many of the version's latest runs, at most this many durations.
HISTORY_RUNS = 5
# Runs looked at to find HISTORY_RUNS on the job's own machine.
HISTORY_CANDIDATES = 4 * HISTORY_RUNS
HISTORY_TASKS = 5000
HISTORY_CACHE_SECONDS = 600


@dataclass(frozen=True)
class Machine:
    """What a task runs on, as far as its run time goes: the pool's VM size and how many tasks share a node."""

    vm_size: str
    slots_per_node: int

    def __str__(self) -> str:
        per_node = "1 task a node" if self.slots_per_node == 1 else f"{self.slots_per_node} tasks a node"
        return f"{self.vm_size}, {per_node}"


@dataclass(frozen=True)
class History:
    """A template version's finished tasks: the quartiles of their durations, and how many runs they came from.
    `machine`: the VM size and slots per node those runs had, when they all matched the job's pool (runs on the same
    machine are taken first); None when they ran on other machines (or their pools are unknown)."""

    q1: float
    median: float
    q3: float
    runs: int
    tasks: int
    machine: Machine | None = None


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


def _last_wave(durations: Sequence[float], n: int) -> float:
    """How long the last n tasks running when the queue empties take to end, all of them: the expected maximum of n
    residual run times. A task caught running has the rest of its run ahead of it, and long tasks are more likely to
    be caught (the inspection paradox), so a residual follows the equilibrium distribution of the durations,
    F_e(t) = ∫₀ᵗ S(u) du ÷ mean; E[max of n] = ∫ (1 − F_e(t)ⁿ) dt. Over the sorted sample S is a step, so F_e is
    linear between two durations and each piece integrates exactly. With exponential durations this is H(n) × mean;
    with tightly spread ones (uniform 0.5–3 s) much less; with a heavy tail, more."""
    ordered = sorted(d for d in durations if d > 0)
    if not ordered or n <= 0:
        return 0.0
    k, mean = len(ordered), statistics.fmean(ordered)
    total, at, level = 0.0, 0.0, 0.0   # level: F_e at `at`
    for j, value in enumerate(ordered):
        width = value - at
        if width > 0:
            slope = (k - j) / k / mean
            top = min(level + slope * width, 1.0)
            # ∫ (1 − (level + slope·u)ⁿ) du over the piece
            total += width - (top ** (n + 1) - level ** (n + 1)) / (slope * (n + 1))
            level, at = top, value
    return total


@functools.lru_cache(maxsize=1024)
def _last_wave_of(durations: tuple[float, ...], n: int) -> float:
    """_last_wave, remembered: a job's pace (its durations) is shared for ESTIMATE_PACE_SECONDS and its tasks running
    seldom change, so a page listing jobs computes each job's last wave once, not on every render."""
    return _last_wave(durations, n)


def estimate(*, now: datetime, remaining: int, running: int = 0, endings: int = 0, window_seconds: float = 0.0,
             history: History | None = None, slots: int = 0, durations: Sequence[float] = ()) -> Estimate:
    """The estimate from numbers alone.

    now: the time the numbers were read (the sync's); remaining: tasks not yet ended (waiting + running); running:
    of those, running now; endings: tasks that ended within the last `window_seconds` (the window starting no
    earlier than the first ending, which itself is not counted); durations: the run times of (the latest of) those
    endings; history: the template version's task durations; slots: task slots the job's pool has now."""
    if remaining <= 0:
        return Estimate(now, now, now, "All its tasks have ended.")
    if endings >= MIN_ENDINGS and window_seconds > 0:
        rate = endings / window_seconds
        spread = 2 * math.sqrt(endings)
        fast = (endings + spread) / window_seconds
        slow = max(endings - spread, 0.5) / window_seconds
        # The queue drains at the rate until the last n tasks run; then the job waits for the slowest of them.
        busy = min(running, remaining)
        if len(durations) >= MIN_SAMPLE:
            # From the shape of its own run times (the backtest's heavy-tailed jobs on 12 slots waited 5 mean task
            # times for the last wave, its uniform ones 1.1).
            typical = statistics.fmean(durations)
            tail = _last_wave_of(tuple(durations), busy)
        else:
            # Busy slots ÷ rate is the mean time a task takes (Little's law); the slowest of n exponential residuals
            # takes H(n) = 1 + 1/2 + … + 1/n of them.
            typical = running / rate if running else 0.0
            tail = typical * _harmonic(busy) if busy else 0.0
        queue = (remaining - busy) / rate
        finish = now + timedelta(seconds=queue + tail)
        # At best the queue drains at the fast end of the rate's range and the last wave takes one task time.
        low = now + timedelta(seconds=(remaining - busy) / fast + min(tail, typical))
        # The late end allows one more task time.
        high = now + timedelta(seconds=(remaining - busy) / slow + tail + typical)
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
        where = (f" on {history.machine}" if history.machine is not None
                 else " (on other VM sizes or slots per node than this job's pool)")
        return Estimate(finish, low, high,
                        f"From this template's last {history.runs} {runs}{where}: a task took "
                        f"{_seconds(history.median)} (median of {history.tasks:,}), {remaining:,} to go on "
                        f"{slots:,} slots.")
    if history is not None:
        why = "its pool has no nodes to run them on yet"
    elif endings or running:
        why = ("too few of its tasks have ended to tell its pace, and there are no finished runs of its template to "
               "go by")
    else:
        why = "none of its tasks has ended yet, and there are no finished runs of its template to go by"
    return Estimate(None, None, None, f"{why[0].upper()}{why[1:]}.")


def recent_since(now: datetime, first_end: datetime, nth_latest: datetime | None = None,
                 wave_end: datetime | None = None) -> datetime:
    """Where the rate's window starts: the recent past (RECENT_WINDOW, or the latest RECENT_SHARE of the time since
    the first ending if longer), never before the first ending, which is not counted itself, nor before
    `nth_latest`, the MAX_ENDINGS-th latest ending (so the count reads at most that many index entries), nor before
    `wave_end`, the ending as many as the tasks running (see wave_end)."""
    since = max(first_end, now - max(RECENT_WINDOW, (now - first_end) * RECENT_SHARE))
    if wave_end is not None:
        since = max(since, wave_end)
    return max(since, nth_latest) if nth_latest is not None else since


def wave_end(earliest: Sequence[datetime], running: int) -> datetime | None:
    """The running-th ending (of `earliest`, the end times in order): the job's first wave of tasks started together
    when its nodes came up, so their short tasks end in a burst that a steady pace never repeats; the rate is read
    after it. The backtest's jobs ran about 5 % slower than their first endings said, and starting after them took
    its error at 50 % from 10.6 / 11.4 / 9.8 % to 8.2 / 7.9 / 7.8 % on the same three runs' snapshots. None with one
    task running, more running than MAX_ENDINGS (the mirror reads at most that many), or fewer endings than that."""
    if running <= 1 or running > MAX_ENDINGS or running > len(earliest):
        return None
    return earliest[running - 1]


def from_end_times(*, now: datetime, end_times: Sequence[datetime], remaining: int, running: int = 0,
                   history: History | None = None, slots: int = 0,
                   durations: Sequence[float] | None = None) -> Estimate:
    """The estimate from a job's task end times as a list (and `durations`, each ended task's run time in the same
    order, when known), with the windows and the sample job_estimates reads from the index: what
    bench/eta_backtest.py feeds from its snapshots of Batch and from finished jobs in the mirror."""
    ended = [(end, durations[i] if durations is not None else None) for i, end in enumerate(end_times) if end <= now]
    endings, window, sample = 0, 0.0, []
    if ended:
        earliest = sorted(end for end, _ in ended)
        first_end, latest = earliest[0], earliest[::-1]
        since = recent_since(now, first_end, latest[MAX_ENDINGS - 1] if len(latest) >= MAX_ENDINGS else None,
                             wave_end(earliest, running))
        endings = sum(1 for end, _ in ended if end > since)
        if endings < MIN_ENDINGS and since > first_end:
            since = first_end
            endings = sum(1 for end, _ in ended if end > since)
        window = (now - since).total_seconds()
        in_window = sorted(((end, took) for end, took in ended if end > since and took is not None),
                           key=lambda pair: pair[0], reverse=True)
        sample = [took for _, took in in_window[:SAMPLE_TASKS]]
    return estimate(now=now, remaining=remaining, running=running, endings=endings, window_seconds=window,
                    history=history, slots=slots, durations=sample)


def template_history(version_id: int, account_id: int, exclude_job_id: str = "",
                     machine: Machine | None = None) -> History | None:
    """The finished tasks of the template version's latest runs (not the job asked about), cached per version and
    machine: a few indexed reads of at most HISTORY_TASKS durations, at most once per HISTORY_CACHE_SECONDS.

    A task's run time depends on the machine: the VM size, and how many tasks share a node's cores and disk. So the
    runs on the job's own machine (same VM size and slots per node) are taken when there are any, else those on the
    same VM size, else any, and History.machine says which."""
    key = f"eta-history:{version_id}:{exclude_job_id}:{machine.vm_size.lower() if machine else ''}:" \
          f"{machine.slots_per_node if machine else 0}"
    cached = cache.get(key)
    if cached is not None:
        return cached or None  # False: looked, nothing there
    job_ids = list(Submission.objects.filter(template_version_id=version_id, state=SubmissionState.SUBMITTED)
                   .exclude(job_id=exclude_job_id).order_by("-created_at")
                   .values_list("job_id", flat=True)[:HISTORY_CANDIDATES])
    order = {job_id: n for n, job_id in enumerate(job_ids)}
    jobs = sorted(Job.objects.filter(account_id=account_id, job_id__in=job_ids).values_list("pk", "job_id", "pool_id"),
                  key=lambda row: order[row[1]])
    pools = {pool_id: Machine(vm_size, max(slots, 1)) for pool_id, vm_size, slots in Pool.objects.filter(
        account_id=account_id, pool_id__in={row[2] for row in jobs}).exclude(vm_size="")
        .values_list("pool_id", "vm_size", "task_slots_per_node")}

    def fit(pool_id: str) -> int:
        """2: the job's machine; 1: its VM size; 0: another (or unknown)."""
        ran_on = pools.get(pool_id)
        if machine is None or ran_on is None or ran_on.vm_size.lower() != machine.vm_size.lower():
            return 0
        return 2 if ran_on.slots_per_node == machine.slots_per_node else 1

    best = max((fit(pool_id) for _, _, pool_id in jobs), default=0)
    chosen = [pk for pk, _, pool_id in jobs if fit(pool_id) == best][:HISTORY_RUNS]
    durations: list[float] = []
    runs = 0
    for pk in chosen:
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
        history = History(q1, median, q3, runs, len(durations), machine if best == 2 else None)
    cache.set(key, history or False, HISTORY_CACHE_SECONDS)
    return history


def _as_of(job: Job) -> datetime:
    """When the mirror last read the job's tasks: the estimate runs from then, as Batch's counts do."""
    return job.tasks_synced_at or job.last_synced_at or timezone.now()


def _endings(windows: dict[int, tuple[datetime, datetime]]) -> tuple[dict[int, int], dict[int, list[float]]]:
    """Tasks ended within each job's window (after its start, up to its end), and the run times of the latest
    SAMPLE_TASKS of them: one query, a range of task_job_end per job, its count taken over the whole range before
    the latest are kept."""
    if not windows:
        return {}, {}
    ranges = Q()
    for pk, (now, since) in windows.items():
        ranges |= Q(job_id=pk, end_time__gt=since, end_time__lte=now)
    rows = (Task.objects.filter(ranges).order_by()
            .annotate(n=Window(Count("pk"), partition_by=[F("job_id")]),
                      latest=Window(RowNumber(), partition_by=[F("job_id")],
                                    order_by=[F("end_time").desc(), F("task_id").desc()]))
            .filter(latest__lte=SAMPLE_TASKS).values_list("job_id", "n", "duration_seconds"))
    counts: dict[int, int] = {}
    samples: dict[int, list[float]] = {}
    for job_id, n, took in rows:
        counts[job_id] = n
        if took is not None:
            samples.setdefault(job_id, []).append(took)
    return counts, samples


def _wave_ends(bounds: dict[int, tuple[datetime, datetime | None]]) -> dict[int, datetime]:
    """Each job's task_running-th ending up to its sync time (see wave_end), for jobs with more than one task
    running: one query numbering each job's earliest endings, at most as many as the most tasks any of them has
    running (up to `bounds`' second time, that many-th earliest ending; None: the job has fewer) from the index
    task_job_end."""
    if not bounds:
        return {}
    ranges = Q()
    for pk, (now, kth_earliest) in bounds.items():
        ranges |= Q(job_id=pk, end_time__lte=min(now, kth_earliest) if kth_earliest is not None else now)
    rows = (Task.objects.filter(ranges).order_by()
            .annotate(running=F("job__task_running"),
                      nth=Window(RowNumber(), partition_by=[F("job_id")], order_by=[F("end_time").asc()]))
            .filter(nth=F("running")).values_list("job_id", "end_time"))
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


def _pools(jobs: list[Job]) -> dict[tuple[int, str], tuple[int, Machine | None]]:
    """Task slots each job's pool has now (current nodes × slots per node), and its machine, by (account, pool id):
    one query."""
    rows = (Pool.objects.filter(account_id__in={job.account_id for job in jobs},
                                pool_id__in={job.pool_id for job in jobs}, gone_at__isnull=True)
            .values_list("account_id", "pool_id", "current_dedicated_nodes", "current_low_priority_nodes",
                         "task_slots_per_node", "vm_size"))
    return {(account, pool_id): ((dedicated + spot) * slots, Machine(vm_size, max(slots, 1)) if vm_size else None)
            for account, pool_id, dedicated, spot, slots, vm_size in rows}


@dataclass(frozen=True)
class Pace:
    """What a job's own rate is read from: as of `at` (its sync time then), `endings` in the `window_seconds` before
    it, the run times of (the latest of) them, and the job's count of ended tasks then."""

    at: datetime
    endings: int
    window_seconds: float
    durations: tuple[float, ...]
    completed: int


def _read_paces(live: list[Job]) -> dict[int, Pace]:
    """Each job's Pace from the mirror, in a fixed number of queries however many jobs: the first end times of each
    (seeks on task_job_end), the end of each one's first wave (as many entries of task_job_end each as the most tasks
    running in one of them, at most MAX_ENDINGS), the endings in each one's recent window (a range of task_job_end
    each; again over the whole time since the first ending for those whose window held too few)."""
    # The first ending, the MAX_ENDINGS-th latest up to the sync's time (a walk of that many index entries), and the
    # k-th earliest, k the most tasks running in any of the jobs whose first wave is looked for (_wave_ends reads no
    # further: a first wave of 28 reads 28 entries a job, not MAX_ENDINGS).
    waved = [job for job in live if 1 < job.task_running <= MAX_ENDINGS]
    k = max((job.task_running for job in waved), default=1)
    as_of = Coalesce(OuterRef("tasks_synced_at"), OuterRef("last_synced_at"), Value(timezone.now()))
    rows = Job.objects.filter(pk__in=[job.pk for job in live]).annotate(
        first_end=Subquery(Task.objects.filter(job=OuterRef("pk"), end_time__isnull=False).order_by("end_time")
                           .values("end_time")[:1]),
        nth_latest=Subquery(Task.objects.filter(job=OuterRef("pk"), end_time__isnull=False, end_time__lte=as_of)
                            .order_by("-end_time").values("end_time")[MAX_ENDINGS - 1:MAX_ENDINGS]),
        kth_earliest=Subquery(Task.objects.filter(job=OuterRef("pk"), end_time__isnull=False, end_time__lte=as_of)
                              .order_by("end_time").values("end_time")[k - 1:k]),
    ).order_by().values_list("pk", "first_end", "nth_latest", "kth_earliest")
    ends = {pk: (first, nth) for pk, first, nth, _ in rows}
    first_ends = {pk: first for pk, (first, _) in ends.items()}
    waves = _wave_ends({job.pk: (_as_of(job), next((e for pk, _, _, e in rows if pk == job.pk), None))
                        for job in waved if ends.get(job.pk, (None,))[0]})
    windows: dict[int, tuple[datetime, datetime]] = {}
    for job in live:
        now, (first_end, nth_latest) = _as_of(job), ends.get(job.pk, (None, None))
        if first_end is not None and first_end < now:
            windows[job.pk] = (now, recent_since(now, first_end, nth_latest, waves.get(job.pk)))
    counts, samples = _endings(windows)
    # Too few lately (long tasks): the whole time since the first ending, still free of the start-up.
    wider = {pk: (now, first_ends[pk]) for pk, (now, since) in windows.items()
             if counts.get(pk, 0) < MIN_ENDINGS and since > first_ends[pk]}
    if wider:
        wider_counts, wider_samples = _endings(wider)
        for pk in wider:
            counts[pk] = wider_counts.get(pk, 0)
            samples[pk] = wider_samples.get(pk, [])
        windows.update(wider)
    paces = {}
    for job in live:
        window = windows.get(job.pk)
        paces[job.pk] = Pace(at=_as_of(job), endings=counts.get(job.pk, 0),
                             window_seconds=(window[0] - window[1]).total_seconds() if window else 0.0,
                             durations=tuple(samples.get(job.pk, ())), completed=job.task_completed)
    return paces


def _pace_key(job: Job) -> str:
    return f"eta-pace:v1:{job.pk}:{job.account_id}:{job.job_id}"


def _paces(live: list[Job]) -> dict[int, Pace]:
    """Each job's Pace, read from its tasks at most once per ESTIMATE_PACE_SECONDS for every page and viewer (the
    shared cache): the read costs up to thousands of index entries a job (MAX_ENDINGS, SAMPLE_TASKS), the same for
    each of a dashboard's jobs on every render; a minute's age moves a rate over 15 minutes or more little, and the
    estimate itself runs from the job's current counts and sync time. A Pace is read again once older than that
    (by the job's sync time), and at once for a job that had no rate yet and has had tasks end since (its first
    endings replace the template's history). Jobs whose sync time is unknown are read every time."""
    seconds = settings.ESTIMATE_PACE_SECONDS
    if seconds <= 0:
        return _read_paces(live)
    keys = {job.pk: _pace_key(job) for job in live if job.tasks_synced_at or job.last_synced_at}
    stored = cache.get_many(list(keys.values())) if keys else {}
    paces: dict[int, Pace] = {}
    for job in live:
        pace = stored.get(keys.get(job.pk, ""))
        if not isinstance(pace, Pace):
            continue
        age = (_as_of(job) - pace.at).total_seconds()
        if 0 <= age <= seconds and (pace.endings >= MIN_ENDINGS or pace.completed == job.task_completed):
            paces[job.pk] = pace
    stale = [job for job in live if job.pk not in paces]
    if stale:
        fresh = _read_paces(stale)
        paces.update(fresh)
        cache.set_many({keys[pk]: pace for pk, pace in fresh.items() if pk in keys}, timeout=seconds)
    return paces


def job_estimates(jobs: Sequence[Job], submission: Submission | None = None) -> dict[int, Estimate | None]:
    """When each job should finish, by pk, from the mirror as the last sync left it; None for a job with nothing to
    estimate (it has ended, or Batch counts no task of it). A fixed number of queries however many jobs (the
    dashboard's list): each job's pace (_paces: none while the shared copy is fresh), then, for jobs without a rate,
    their submissions (unless `submission`, the one job's, is given) and pools, and each template version's history,
    cached."""
    estimates: dict[int, Estimate | None] = {job.pk: None for job in jobs}
    live = [job for job in jobs if job.is_live and not job.has_ended and job.task_total > 0]
    if not live:
        return estimates
    paces = _paces(live)
    slow = [job for job in live if paces[job.pk].endings < MIN_ENDINGS]
    versions = _template_versions(slow, submission) if slow else {}
    pools = _pools(slow) if slow else {}
    for job in live:
        history = None
        slots, machine = pools.get((job.account_id, job.pool_id), (0, None))
        if job.max_parallel_tasks > 0:   # the slots it can get: no more than its maxParallelTasks at once
            slots = min(slots, job.max_parallel_tasks)
        if job.pk in versions:
            history = template_history(versions[job.pk], job.account_id, job.job_id, machine)
        pace = paces[job.pk]
        estimates[job.pk] = estimate(
            now=_as_of(job), remaining=job.task_active + job.task_running, running=job.task_running,
            endings=pace.endings, window_seconds=pace.window_seconds, history=history, slots=slots,
            durations=pace.durations)
    return estimates


def job_estimate(job: Job, submission: Submission | None = None) -> Estimate | None:
    """One job's estimate (see job_estimates): at most five queries besides a history cache miss."""
    return job_estimates([job], submission)[job.pk]
