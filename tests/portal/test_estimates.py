"""When will a job finish (portal.jobs.estimates): the estimator on constructed series, the selector's reads from
the mirror and its query bound, and the line on the job, submission and dashboard pages."""

import math
import re
import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from portal.jobs.estimates import History, Machine, estimate, from_end_times, job_estimate, job_estimates
from portal.models import Job, JobTemplate, Submission, SubmissionState
from tests.factories import JobFactory, PoolFactory, TaskFactory
from tests.portal.pages import text

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=dt_timezone.utc)
ESTIMATE_LINE = re.compile(r"Finishes about <time[^>]*>[^<]+</time>, between <time[^>]*>[^<]+</time> and "
                           r"<time[^>]*>[^<]+</time>")


@pytest.fixture(autouse=True)
def own_cache(settings):
    """A memory cache of this module's own: the template history is cached per version, and versions' ids repeat
    from one test's database to the next."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": "test-estimates"}}
    cache.clear()


def minutes(value: datetime | None) -> float:
    assert value is not None
    return (value - NOW).total_seconds() / 60


# --- The estimator over numbers -------------------------------------------------------------------------------

def test_a_steady_rate_gives_the_remaining_over_the_rate_with_a_range_around_it():
    # 100 tasks ended in the last 10 minutes, 8 running: 10 a minute, 300 to go.
    result = estimate(now=NOW, remaining=300, running=8, endings=100, window_seconds=600)

    assert result.known
    # A task takes 8 slots ÷ 10 a minute = 0.8 min; the last wave waits for the slowest of 8: H(8) − 1 more tasks.
    tail = 0.8 * (1 + 1 / 2 + 1 / 3 + 1 / 4 + 1 / 5 + 1 / 6 + 1 / 7 + 1 / 8 - 1)
    assert minutes(result.finish_at) == pytest.approx(30 + tail)
    assert minutes(result.low) < minutes(result.finish_at) < minutes(result.high)
    # ±2√100 = ±20 on the count: the 292 queued drain at 12 a minute early and the last wave takes one task time;
    # late at 8 a minute, the last wave in full, and one task more.
    assert minutes(result.low) == pytest.approx(292 / 12 + 0.8)
    assert minutes(result.high) == pytest.approx(292 / 8 + 0.8 + tail + 0.8)
    assert "100 tasks ended in the last 10.0 min (10.0 tasks a minute), 300 to go" in result.basis


def test_the_last_wave_waits_for_the_slowest_of_the_tasks_running():
    one_slot = estimate(now=NOW, remaining=20, running=1, endings=60, window_seconds=600)
    many_slots = estimate(now=NOW, remaining=20, running=12, endings=60, window_seconds=600)
    thousands = estimate(now=NOW, remaining=5000, running=4000, endings=60000, window_seconds=600)

    assert minutes(one_slot.finish_at) == pytest.approx(20 / 6), "one at a time: no wave to wait for"
    assert minutes(many_slots.finish_at) > 20 / 6 + 2 * 12 / 6
    assert minutes(thousands.finish_at) == pytest.approx(5000 / 6000 + 4000 / 6000 * (math.log(4000) + 0.5772 - 1),
                                                         rel=0.001)


def test_the_last_wave_follows_the_shape_of_the_jobs_own_run_times():
    # The same pace (6 a minute, 12 running, 20 to go) with run times of the same mean (2 min) but different spread:
    # the last wave waits for the slowest of 12, which a heavy tail makes much later than a tight spread.
    tight = [1.5 * 60 + n for n in range(61)]                   # 90–150 s
    heavy = [30.0] * 45 + [480.0] * 15                         # mostly short, a quarter 8 min: mean 142.5 s
    exponential = [-120 * math.log(1 - (n + 0.5) / 400) for n in range(400)]
    results = {name: estimate(now=NOW, remaining=20, running=12, endings=60, window_seconds=600, durations=sample)
               for name, sample in (("tight", tight), ("heavy", heavy), ("exponential", exponential))}

    queue = 8 / 6   # minutes until the 8 waiting have started
    assert minutes(results["tight"].finish_at) < queue + 2.6, "the slowest of 12 residuals is under 150 s"
    assert minutes(results["heavy"].finish_at) > queue + 7, "one of the 8-minute tasks is almost surely running"
    harmonic = sum(1 / k for k in range(1, 13))
    assert minutes(results["exponential"].finish_at) == pytest.approx(queue + 2 * harmonic, rel=0.03)
    for result in results.values():
        assert result.low <= result.finish_at < result.high


def test_too_few_run_times_fall_back_to_an_exponentials_last_wave():
    without = estimate(now=NOW, remaining=20, running=12, endings=60, window_seconds=600)
    few = estimate(now=NOW, remaining=20, running=12, endings=60, window_seconds=600, durations=[5.0] * 4)

    assert few == without


def test_the_rate_is_read_after_the_first_wave_has_ended():
    # 8 tasks ran at once; the first wave's short ones ended in a burst (8 in 8 s), then one every 10 s.
    burst = [NOW - timedelta(seconds=208 - n) for n in range(8)]
    steady = [NOW - timedelta(seconds=200 - 10 * n) for n in range(1, 21)]

    result = from_end_times(now=NOW, end_times=burst + steady, remaining=40, running=8)
    counted_burst = from_end_times(now=NOW, end_times=burst + steady, remaining=40, running=1)

    assert "20 tasks ended in the last 3.4 min (6.0 tasks a minute)" in result.basis
    assert "27 tasks ended" in counted_burst.basis, "one at a time: no wave"


def test_more_endings_narrow_the_range():
    few = estimate(now=NOW, remaining=100, endings=10, window_seconds=600)
    many = estimate(now=NOW, remaining=100, endings=1000, window_seconds=60000)

    assert minutes(few.finish_at) == pytest.approx(minutes(many.finish_at))
    assert minutes(many.high) - minutes(many.low) < (minutes(few.high) - minutes(few.low)) / 5


def test_a_slow_start_does_not_count_when_the_window_starts_at_the_first_ending():
    # Nodes took 20 minutes to start; since the first task ended 10 minutes ago 50 more ended (5 a minute). The
    # naive estimate over the job's whole life (elapsed × (1 − p) / p) would make it half as fast.
    result = estimate(now=NOW, remaining=50, running=0, endings=50, window_seconds=600)
    naive_minutes = 30 * (50 / 101) / (51 / 101)

    assert minutes(result.finish_at) == pytest.approx(10)
    assert naive_minutes > 25


def test_before_any_ending_the_templates_history_and_the_pools_slots_are_used():
    history = History(q1=50, median=60, q3=90, runs=3, tasks=240, machine=Machine("Standard_D2s_v3", 4))

    result = estimate(now=NOW, remaining=40, running=8, history=history, slots=8)

    # 40 tasks on 8 slots: five waves of a minute.
    assert minutes(result.finish_at) == pytest.approx(5)
    assert minutes(result.low) == pytest.approx(5 * 50 / 60)
    assert minutes(result.high) == pytest.approx(5 * 1.5 + 1)
    assert ("last 3 runs on Standard_D2s_v3, 4 tasks a node: a task took 60 s (median of 240), 40 to go on 8 slots"
            in result.basis)


def test_fewer_tasks_than_slots_still_take_one_task_duration():
    result = estimate(now=NOW, remaining=3, history=History(60, 120, 180, 1, 10), slots=16)

    assert minutes(result.finish_at) == pytest.approx(2)


def test_it_is_unknown_without_endings_or_history_and_says_why():
    nothing = estimate(now=NOW, remaining=10)
    one_ending = estimate(now=NOW, remaining=10, running=2, endings=1, window_seconds=60)
    no_nodes = estimate(now=NOW, remaining=10, history=History(1, 2, 3, 1, 5), slots=0)

    for result in (nothing, one_ending, no_nodes):
        assert not result.known and result.low is None and result.high is None
    assert nothing.basis == ("None of its tasks has ended yet, and there are no finished runs of its template to "
                             "go by.")
    assert "Too few of its tasks have ended" in one_ending.basis
    assert "pool has no nodes" in no_nodes.basis


def test_nothing_left_means_it_finishes_now():
    result = estimate(now=NOW, remaining=0)

    assert result.finish_at == result.low == result.high == NOW


# --- The selector, from the mirror ------------------------------------------------------------------------------

def running_job(**fields):
    fields.setdefault("tasks_synced_at", NOW)
    fields.setdefault("last_synced_at", NOW)
    return JobFactory(**fields)


def ended_tasks(job, count: int, first: datetime, every: timedelta) -> None:
    for n in range(count):
        end = first + n * every
        TaskFactory(job=job, start_time=end - timedelta(seconds=30), end_time=end, duration_seconds=30)


@pytest.mark.django_db
def test_the_selector_reads_the_rate_from_the_recent_window_of_end_times():
    job = running_job(task_active=100, task_completed=41)
    # Nodes started late: the first task ended 20 minutes after the job began, then one every 15 s.
    ended_tasks(job, 41, NOW - timedelta(minutes=10), timedelta(seconds=15))

    result = job_estimate(job)

    assert result is not None and result.known
    # 40 endings after the first in 10 minutes: 4 a minute, 100 to go.
    assert minutes(result.finish_at) == pytest.approx(25)
    assert "40 tasks ended in the last 10.0 min" in result.basis


@pytest.mark.django_db
@pytest.mark.parametrize("every", [timedelta(seconds=15), timedelta(minutes=10)])
def test_the_benchs_list_of_end_times_gives_what_the_selector_reads_from_the_mirror(every):
    job = running_job(task_active=30, task_running=5, task_completed=12)
    ends = [NOW - 12 * every + n * every + timedelta(seconds=n * n) for n in range(12)]
    for end in ends:
        TaskFactory(job=job, start_time=end - timedelta(seconds=30), end_time=end)

    assert job_estimate(job) == from_end_times(now=NOW, end_times=ends, remaining=35, running=5,
                                               durations=[30.0] * len(ends))


@pytest.mark.django_db
def test_a_fast_job_is_measured_over_its_latest_endings_only(monkeypatch):
    monkeypatch.setattr("portal.jobs.estimates.MAX_ENDINGS", 10)
    job = running_job(task_active=50, task_completed=30)
    # 20 ended slowly (one a minute), then 10 quickly (one every 6 s): the latest ten tell the pace.
    ends = ([NOW - timedelta(minutes=21) + n * timedelta(minutes=1) for n in range(20)]
            + [NOW - timedelta(seconds=60) + n * timedelta(seconds=6) for n in range(1, 11)])
    for end in ends:
        TaskFactory(job=job, start_time=end - timedelta(seconds=30), end_time=end)

    result = job_estimate(job)

    assert result is not None and "9 tasks ended in the last 54 s (10.0 tasks a minute)" in result.basis
    assert result == from_end_times(now=NOW, end_times=ends, remaining=50, durations=[30.0] * len(ends))


@pytest.mark.django_db
def test_the_selector_ignores_endings_the_sync_has_not_reached():
    # The task rows were synced 5 minutes ago; rows ending after that (written by a later pass of another job's
    # sync, or a clock ahead) are not counted against the counts read then.
    job = running_job(task_active=10, task_completed=31, tasks_synced_at=NOW - timedelta(minutes=5))
    ended_tasks(job, 31, NOW - timedelta(minutes=15), timedelta(seconds=30))

    result = job_estimate(job)

    # 20 after the first up to the sync, in 10 minutes: 2 a minute, 10 to go from the sync's time.
    assert result is not None and "20 tasks ended in the last 10.0 min" in result.basis
    assert result.finish_at == NOW - timedelta(minutes=5) + timedelta(minutes=5)


@pytest.mark.django_db
def test_before_its_first_ending_the_selector_uses_the_templates_last_runs_and_the_pools_slots():
    version = JobTemplate.objects.get(slug="render-frames").current_version()
    earlier = running_job(job_id="sub-earlier", pool_id="render", state="completed", task_completed=5)
    for seconds in (40, 50, 60, 70, 80):
        TaskFactory(job=earlier, duration_seconds=seconds)
    Submission.objects.create(public_id="00000000-0000-0000-0000-0000000000e1", account=earlier.account,
                              template_version=version, job_id="sub-earlier", state=SubmissionState.SUBMITTED)
    PoolFactory(account=earlier.account, pool_id="render", current_dedicated_nodes=2, task_slots_per_node=4)
    job = running_job(job_id="sub-now", pool_id="render", task_active=16, task_running=8)
    Submission.objects.create(public_id="00000000-0000-0000-0000-0000000000e2", account=job.account,
                              template_version=version, job_id="sub-now", state=SubmissionState.SUBMITTED)

    result = job_estimate(job)

    assert result is not None and result.known
    # 24 tasks on 8 slots: three waves of the median 60 s.
    assert minutes(result.finish_at) == pytest.approx(3)
    assert "last 1 run on standard_d2s_v3, 4 tasks a node: a task took 60 s (median of 5), 24 to go on 8 slots" \
        in result.basis


def earlier_run(version, pool, job_id: str, seconds: list[int]) -> None:
    job = running_job(account=pool.account, job_id=job_id, pool_id=pool.pool_id, state="completed",
                      task_completed=len(seconds))
    for took in seconds:
        TaskFactory(job=job, duration_seconds=took)
    Submission.objects.create(public_id=uuid.uuid4(), account=pool.account, template_version=version, job_id=job_id,
                              state=SubmissionState.SUBMITTED)


@pytest.mark.django_db
def test_before_its_first_ending_a_job_gets_no_more_slots_than_its_max_parallel_tasks():
    version = JobTemplate.objects.get(slug="render-frames").current_version()
    pool = PoolFactory(pool_id="render", current_dedicated_nodes=2, task_slots_per_node=4)
    earlier_run(version, pool, "sub-before", [60, 60, 60])
    job = running_job(account=pool.account, job_id="sub-capped", pool_id="render", task_active=16,
                      max_parallel_tasks=2)
    Submission.objects.create(public_id=uuid.uuid4(), account=pool.account, template_version=version,
                              job_id="sub-capped", state=SubmissionState.SUBMITTED)

    result = job_estimate(job)

    # 16 tasks, two at a time, a minute each: 8 minutes (on all 8 of the pool's slots it would be 2).
    assert result is not None and minutes(result.finish_at) == pytest.approx(8)
    assert "16 to go on 2 slots" in result.basis


@pytest.mark.django_db
def test_the_templates_history_is_taken_from_runs_on_the_jobs_own_vm_size_and_slots_first():
    version = JobTemplate.objects.get(slug="render-frames").current_version()
    pool = PoolFactory(pool_id="render", vm_size="Standard_D2s_v3", current_dedicated_nodes=2, task_slots_per_node=4)
    account = pool.account
    big = PoolFactory(account=account, pool_id="big", vm_size="Standard_D16s_v3", task_slots_per_node=4)
    packed = PoolFactory(account=account, pool_id="packed", vm_size="Standard_D2s_v3", task_slots_per_node=8)
    # Newest first: a run on a bigger VM size (fast), one on the same size with twice the tasks a node (slow), and
    # the oldest on the job's own machine.
    earlier_run(version, pool, "sub-same", [60, 60, 60])
    earlier_run(version, packed, "sub-packed", [150, 150, 150])
    earlier_run(version, big, "sub-big", [20, 20, 20])
    job = running_job(account=account, job_id="sub-now", pool_id="render", task_active=16)
    Submission.objects.create(public_id=uuid.uuid4(), account=account, template_version=version, job_id="sub-now",
                              state=SubmissionState.SUBMITTED)

    result = job_estimate(job)

    assert result is not None and minutes(result.finish_at) == pytest.approx(2), "two waves of the same machine's 60 s"
    assert "last 1 run on Standard_D2s_v3, 4 tasks a node: a task took 60 s" in result.basis

    # Without a run on its machine: the same VM size with other slots per node, said to be another machine.
    other = running_job(account=account, job_id="sub-other", pool_id="packed", task_active=16)
    Submission.objects.create(public_id=uuid.uuid4(), account=account, template_version=version,
                              job_id="sub-other", state=SubmissionState.SUBMITTED)
    packed.current_dedicated_nodes = 1
    packed.save()
    result = job_estimate(other)
    assert result is not None and "last 1 run on Standard_D2s_v3, 8 tasks a node: a task took 2.5 min" in result.basis

    # A VM size no run had: every run, and the sentence says they ran elsewhere.
    PoolFactory(account=account, pool_id="fresh", vm_size="Standard_F4s_v2", task_slots_per_node=4)
    fresh = running_job(account=account, job_id="sub-fresh", pool_id="fresh", task_active=16)
    Submission.objects.create(public_id=uuid.uuid4(), account=account, template_version=version,
                              job_id="sub-fresh", state=SubmissionState.SUBMITTED)
    result = job_estimate(fresh)
    assert result is not None and ("last 3 runs (on other VM sizes or slots per node than this job's pool): a task "
                                   "took 60 s (median of 9)") in result.basis


@pytest.mark.django_db
def test_long_tasks_with_few_recent_endings_count_from_the_first_ending():
    job = running_job(task_active=10, task_completed=3)
    # Three ended 100, 90 and 80 minutes ago, none in the last 50 (the recent half of the time since the first).
    ended_tasks(job, 3, NOW - timedelta(minutes=100), timedelta(minutes=10))

    result = job_estimate(job)

    assert result is not None and "2 tasks ended in the last 1.7 h (a task every 50.0 min)" in result.basis
    assert minutes(result.finish_at) == pytest.approx(10 * 50)


@pytest.mark.django_db
def test_the_selector_says_unknown_and_nothing_for_an_ended_job():
    assert not job_estimate(running_job(task_active=5)).known
    assert job_estimate(running_job(state="completed", task_completed=5)) is None
    assert job_estimate(running_job()) is None, "no tasks"


@pytest.mark.django_db
@pytest.mark.parametrize("tasks", [3, 60])
def test_the_selectors_queries_do_not_grow_with_the_job(tasks):
    job = running_job(job_id="sub-unknown", task_active=100, task_running=4, task_completed=tasks)
    ended_tasks(job, tasks, NOW - tasks * timedelta(seconds=20), timedelta(seconds=20))
    without = running_job(task_active=100)

    with CaptureQueriesContext(connection) as with_rate:
        job_estimate(job)
    with CaptureQueriesContext(connection) as cold, CaptureQueriesContext(connection):
        job_estimate(without)
    with CaptureQueriesContext(connection) as warm:
        job_estimate(without)

    assert len(with_rate) == 3, "the first end times, the end of the first wave, the window's count"
    assert len(cold) <= 5 and len(warm) <= 4, "and the submission, the pool, the history once"


@pytest.mark.django_db
def test_the_first_wave_is_looked_for_among_as_many_endings_as_tasks_running():
    job = running_job(task_active=100, task_running=4, task_completed=60)
    ended_tasks(job, 60, NOW - 60 * timedelta(seconds=20), timedelta(seconds=20))

    with CaptureQueriesContext(connection) as queries:
        result = job_estimate(job)

    # The 4th earliest ending bounds the numbering of the first wave's endings (not the MAX_ENDINGS-th).
    assert "OFFSET 3" in queries.captured_queries[0]["sql"]
    assert result == from_end_times(now=NOW, end_times=[NOW - 60 * timedelta(seconds=20) + n * timedelta(seconds=20)
                                                        for n in range(60)],
                                    remaining=104, running=4, durations=[30.0] * 60)


@pytest.mark.django_db
def test_a_jobs_pace_is_read_once_per_interval_for_every_page_and_viewer(settings):
    settings.ESTIMATE_PACE_SECONDS = 60
    jobs = [running_job(task_active=100, task_running=4, task_completed=tasks) for tasks in (30, 300)]
    for job, tasks in zip(jobs, (30, 300), strict=True):
        ended_tasks(job, tasks, NOW - tasks * timedelta(seconds=2), timedelta(seconds=2))
    pks = [job.pk for job in jobs]

    def read(**synced):
        # Each page reads its jobs afresh, as a request does.
        Job.objects.filter(pk__in=pks).update(**synced)
        fresh = list(Job.objects.filter(pk__in=pks).order_by("pk"))
        with CaptureQueriesContext(connection) as queries:
            estimates = job_estimates(fresh)
        return estimates, len(queries)

    first, cold = read()
    again, warm = read()
    assert cold == 3 and warm == 0, "read once; then from the shared copy, whatever the jobs' sizes"
    assert again == first

    # The next sync pass: the same pace, from the job's new sync time and counts.
    moved, warm = read(tasks_synced_at=NOW + timedelta(seconds=30), task_active=90)
    assert warm == 0
    assert moved[pks[0]].finish_at < first[pks[0]].finish_at + timedelta(seconds=30), "ten fewer to go"
    # Older than the interval: read again, over the window up to the new sync time.
    _, read_again = read(tasks_synced_at=NOW + timedelta(seconds=61))
    assert read_again == 3


@pytest.mark.django_db
def test_a_job_without_a_pace_reads_it_again_as_soon_as_its_tasks_end(settings):
    settings.ESTIMATE_PACE_SECONDS = 60
    job = running_job(task_active=100, task_running=4)
    assert not job_estimate(job).known

    ended_tasks(job, 10, NOW - timedelta(minutes=5), timedelta(seconds=30))
    job.task_completed, job.task_active = 10, 90

    result = job_estimate(job)
    assert result is not None and "6 tasks ended in the last 3.5 min" in result.basis, "after the first wave"


# --- The pages ----------------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_job_page_shows_the_estimate_and_unknown(client, viewer):
    now = timezone.now()
    job = JobFactory(task_active=50, task_running=4, task_completed=41, tasks_synced_at=now, last_synced_at=now)
    for n in range(41):
        end = now - timedelta(minutes=10) + n * timedelta(seconds=15)
        TaskFactory(job=job, start_time=end - timedelta(seconds=30), end_time=end)
    waiting = JobFactory(task_active=5)
    client.force_login(viewer)

    page = text(client.get(reverse("job_detail", args=[job.pk])))
    # Counted from the 4th ending on (4 running: the first wave's end).
    assert ESTIMATE_LINE.search(page) and "37 tasks ended in the last 9.2 min" in page

    page = text(client.get(reverse("job_detail", args=[waiting.pk])))
    assert "Finish time unknown" in page and "None of its tasks has ended yet" in page

    dashboard = text(client.get(reverse("dashboard")))
    assert ESTIMATE_LINE.search(dashboard) and "Finish time unknown" in dashboard


@pytest.mark.django_db
def test_an_ended_job_shows_no_estimate(client, viewer):
    job = JobFactory(state="completed", task_completed=3, task_succeeded=3)
    client.force_login(viewer)

    page = text(client.get(reverse("job_detail", args=[job.pk])))

    assert "Finishes about" not in page and "Finish time unknown" not in page


@pytest.mark.django_db
def test_the_submission_page_shows_the_estimate(client, submitter):
    version = JobTemplate.objects.get(slug="render-frames").current_version()
    job = JobFactory(job_id="sub-eta", task_active=3)
    submission = Submission.objects.create(public_id="00000000-0000-0000-0000-0000000000e3", account=job.account,
                                           template_version=version, submitted_by=submitter, job_id="sub-eta",
                                           state=SubmissionState.SUBMITTED, total_tasks=3, tasks_added=3)
    client.force_login(submitter)

    page = text(client.get(reverse("submission_detail", args=[submission.public_id])))

    assert "Finish time unknown" in page

    ended_tasks(job, 4, timezone.now() - timedelta(minutes=4), timedelta(minutes=1))
    page = text(client.get(reverse("submission_detail", args=[submission.public_id])))
    assert ESTIMATE_LINE.search(page) and "3 tasks ended in the last 4.0 min" in page
