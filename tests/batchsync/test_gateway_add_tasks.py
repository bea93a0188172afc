"""BatchGateway.add_tasks as the submission pipeline uses it: the JSON it sends is exactly what the SDK's models
serialise to, and progress is reported in order while requests run, on a real localbatch."""

import json

import pytest
from azure.batch._utils.model_base import SdkJSONEncoder

from batchsync.gateway import (
    BatchGateway,
    JobSpec,
    NotFound,
    OutputFileSpec,
    PoolSpec,
    ResourceFileSpec,
    TaskSpec,
    convert,
)
from batchsync.gateway.client import REQUESTS_AHEAD_PER_THREAD, TASKS_PER_REQUEST
from localbatch.server import Faults
from tests.batchsync.test_sync import UBUNTU

SPECS = [
    TaskSpec(id="t00001", command_line="/bin/true"),
    TaskSpec(id="t00002", command_line="/bin/sh -c 'echo \"x\" $(y)'", display_name="frame 2",
             environment={"A": "1", "B": "two words"},
             resource_files=(ResourceFileSpec("https://blob/in/a%20b.txt?sig=s", "inputs/a b.txt"),),
             output_files=(OutputFileSpec("../std*.txt", "https://blob/logs?sig=t", "sub-1/t00002/logs"),
                           OutputFileSpec("out/*.png", "https://blob/out?sig=u", upload_condition="tasksuccess")),
             max_task_retry_count=2, max_wall_clock_seconds=3725, required_slots=3),
    TaskSpec(id="t00003", command_line="c", max_wall_clock_seconds=86_400 * 3),
    TaskSpec(id="t00004", command_line="c", max_task_retry_count=-1),
]


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_task_wire_is_the_json_the_sdk_would_send(spec):
    through_sdk = json.loads(json.dumps(convert.task_create_options(spec), cls=SdkJSONEncoder, exclude_readonly=True))

    assert convert.task_wire(spec) == through_sdk


@pytest.fixture
def job(localbatch):
    with BatchGateway(localbatch.endpoint, localbatch.account_name, localbatch.account_key) as gateway:
        gateway.create_pool(PoolSpec(id="pool-1", vm_size="standard_d2s_v3", image=UBUNTU))
        gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
        yield gateway


def specs(count, start=1):
    return [TaskSpec(id=f"t{n:05d}", command_line="/bin/true") for n in range(start, start + count)]


def test_progress_is_reported_in_order_and_reaches_every_task(localbatch, job):
    localbatch.app.faults = Faults(rate=0.2, status=503, retry_after=0)
    seen = []
    try:
        result = job.add_tasks("job-1", specs(1000), on_progress=seen.append)
    finally:
        localbatch.app.faults = Faults()

    assert len(result.added) == 1000 and result.failures == ()
    assert seen == sorted(seen) and seen[-1] == 1000 and all(n % 100 == 0 for n in seen)
    assert len(list(job.list_tasks("job-1"))) == 1000


def test_progress_stops_before_a_task_batch_refuses(job):
    tasks = specs(300)
    tasks[150] = TaskSpec(id="t00151", command_line="/bin/true", required_slots=0)   # Batch refuses 0 slots
    seen = []

    result = job.add_tasks("job-1", tasks, on_progress=seen.append, max_concurrency=1)

    assert [failure.id for failure in result.failures] == ["t00151"]
    assert seen == [100]


def test_an_error_raised_by_on_progress_stops_the_remaining_requests(job):
    class Stop(Exception):
        pass

    def stop(prefix):
        raise Stop()

    with pytest.raises(Stop):
        job.add_tasks("job-1", specs(2000), on_progress=stop, max_concurrency=1)

    assert len(list(job.list_tasks("job-1"))) < 2000


def test_specs_given_lazily_are_taken_just_ahead_of_the_requests(job):
    taken = []

    def lazily():
        for spec in specs(2000):
            taken.append(spec.id)
            yield spec

    taken_at_progress = []
    result = job.add_tasks("job-1", lazily(), on_progress=lambda n: taken_at_progress.append(len(taken)),
                           max_concurrency=1)

    assert len(result.added) == 2000 and result.failures == ()
    # Not all built before the first request: at most the requests queued ahead, and one more being built.
    assert taken_at_progress[0] <= (REQUESTS_AHEAD_PER_THREAD + 2) * TASKS_PER_REQUEST < 2000
    assert len(list(job.list_tasks("job-1"))) == 2000


def test_specs_that_stop_early_end_the_call_once_what_they_gave_is_added(job):
    seen = []

    result = job.add_tasks("job-1", iter(specs(250)), on_progress=seen.append)

    assert len(result.added) == 250 and seen[-1] == 250
    assert sorted(task.id for task in job.list_tasks("job-1")) == [f"t{n:05d}" for n in range(1, 251)]


def test_an_error_raised_while_taking_the_specs_stops_the_remaining_requests(job):
    class Broken(Exception):
        pass

    def breaking():
        yield from specs(300)
        raise Broken()

    with pytest.raises(Broken):
        job.add_tasks("job-1", breaking(), max_concurrency=1)

    assert len(list(job.list_tasks("job-1"))) <= 300


@pytest.mark.parametrize("count", [0, 250, 5000])
def test_on_sending_is_called_once_with_the_first_requests_queued_before_any_progress(job, count):
    events = []

    def lazily():
        for spec in specs(count):
            events.append("taken")
            yield spec

    result = job.add_tasks("job-1", lazily(), on_sending=lambda: events.append("sending"),
                           on_progress=lambda n: events.append("progress"), max_concurrency=2)

    assert len(result.added) == count and events.count("sending") == 1
    sending = events.index("sending")
    assert "progress" not in events[:sending]
    # The requests queued ahead were handed to the threads first (or every spec, when there are fewer).
    assert events[:sending].count("taken") == min(count, REQUESTS_AHEAD_PER_THREAD * 2 * TASKS_PER_REQUEST)


def test_on_sending_comes_before_a_refusal_of_the_whole_request_is_raised(job):
    sent = []

    with pytest.raises(NotFound):
        job.add_tasks("no-such-job", specs(300), on_sending=lambda: sent.append(True), max_concurrency=1)

    assert sent == [True]
