"""Fault tests with real processes: a Celery worker (`celery -A batchsync worker -Q submit --pool solo`) on a real
Redis, SIGKILLed between two chunks of a 2,000-task submission; and that Redis (a private redis-server) restarted
without its data right after a submit. Each must end with exactly one job, every task exactly once, and the submission
final.

The worker reads the same database as the test, so these need a database another process can open: PostgreSQL,
as in CI (.ci/run). With the in-memory SQLite of a plain local run they are skipped."""

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import kombu.pools
import pytest
import redis
from django.contrib.auth.models import Group
from django.db import connection

from batchsync import submit
from batchsync.celery import app
from batchsync.gateway import BatchGateway, PoolSpec
from localbatch.server import Faults
from portal.models import JobTemplate, Submission, SubmissionState
from portal.submit import services
from tests.batchsync.test_sync import UBUNTU
from tests.factories import UserFactory
from tests.localbatch.helpers import wait_for

# serialized_rollback: the test database keeps the rows the migrations shipped (the example templates) for
# the tests after these, which a transactional test would otherwise truncate.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

REPO_ROOT = Path(__file__).resolve().parents[2]
CELERY = REPO_ROOT / ".venv" / "bin" / "celery"
TASKS = 2_000


def database_url() -> str | None:
    """The test database as a URL another process can use, or None if it cannot (in-memory SQLite)."""
    db = connection.settings_dict
    if connection.vendor != "postgresql":
        return None
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return f"postgres://{quote(db['USER'] or '')}{password}@{host}/{db['NAME']}"


class PrivateRedis:
    """A redis-server of the test's own, without persistence, so restarting it loses every message: what a Redis
    restart without its data does to a broker in production. The shared Redis is left alone."""

    def __init__(self, tmp_path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = tmp_path / "redis.log"
        self.process = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
                stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        wait_for(lambda: _answers(client), timeout=20, interval=0.1, message="redis-server to answer")
        return client

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def _answers(client) -> bool:
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


@pytest.fixture
def broker_url(tmp_path):
    """The broker: a private Redis; yields (url, client, server), `server` to restart it."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: install the redis-server package (.ci/run's machine has it)")
    server = PrivateRedis(tmp_path)
    client = server.start()
    # This process enqueues (submission_create, the re-driver) to the same Redis as the worker.
    previous = app.conf.broker_url
    app.conf.broker_url = server.url
    _drop_broker_connections()
    try:
        yield server.url, client, server
    finally:
        app.conf.broker_url = previous
        _drop_broker_connections()
        client.close()
        server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _drop_broker_connections():
    # Celery (and kombu, globally) cache connection and producer pools on first use; they must not keep the old
    # broker, nor hand out connections closed by the previous test.
    kombu.pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def needs_shared_database():
    url = database_url()
    if url is None:
        pytest.skip("needs a database a worker process can open (PostgreSQL, as in CI)")
    return url


@pytest.fixture
def batch(localbatch, settings, monkeypatch):
    settings.BATCH_ACCOUNT_URL = localbatch.endpoint
    settings.BATCH_ACCOUNT_NAME = localbatch.account_name
    settings.BATCH_ACCOUNT_KEY = localbatch.account_key
    monkeypatch.delenv("BATCH_ACCOUNT_KEY", raising=False)
    with BatchGateway(localbatch.endpoint, localbatch.account_name, localbatch.account_key) as gateway:
        gateway.create_pool(PoolSpec(id="demo-pool", vm_size="standard_d2s_v3", image=UBUNTU))
        yield localbatch, gateway


class Workers:
    """Real Celery workers, each its own process, started and killed by the test."""

    def __init__(self, tmp_path, env):
        self.tmp_path, self.env, self.processes = tmp_path, env, []

    def start(self, *, beat: bool = False, env: dict | None = None) -> subprocess.Popen:
        number = len(self.processes) + 1
        log = open(self.tmp_path / f"worker-{number}.log", "wb")
        # With `beat`, the worker runs the static schedule itself (-B), so the re-driver comes on its own.
        schedule = ["-B", "--schedule", str(self.tmp_path / f"beat-{number}")] if beat else []
        process = subprocess.Popen(
            [str(CELERY), "-A", "batchsync", "worker", "-Q", "submit", "--pool", "solo", "--loglevel", "INFO",
             "--without-mingle", "--without-gossip", "--hostname", f"fault{number}@%h", *schedule],
            cwd=REPO_ROOT, env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(path.read_text(errors="replace")[-3000:] for path in sorted(self.tmp_path.glob("*.log")))

    def stop_all(self):
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture
def workers(tmp_path, needs_shared_database, broker_url, batch):
    localbatch, _ = batch
    env = {**os.environ, "DATABASE_URL": needs_shared_database, "CELERY_BROKER_URL": broker_url[0],
           "BATCH_ACCOUNT_URL": localbatch.endpoint, "BATCH_ACCOUNT_NAME": localbatch.account_name,
           "BATCH_ACCOUNT_KEY": localbatch.account_key, "DJANGO_SETTINGS_MODULE": "portal.settings",
           # Progress recorded every 100 tasks; a killed worker's hold on a submission runs out after 3 s.
           "SUBMISSION_CHUNK_SIZE": "100", "SUBMISSION_LEASE_SECONDS": "3", "PYTHONPATH": str(REPO_ROOT)}
    env.pop("DJANGO_DEBUG", None)
    running = Workers(tmp_path, env)
    try:
        yield running
    finally:
        running.stop_all()


def frames(user, count) -> Submission:
    user.groups.add(Group.objects.get(name="Submitter"))
    version = JobTemplate.objects.get(slug="render-frames").current_version()
    return services.submission_create(user=user, template_version=version,
                                      parameters={"frames": str(count), "seconds_per_frame": "0"})


def assert_exactly_once(gateway, submission, count):
    assert [job.id for job in gateway.list_jobs()] == [submission.job_id]
    ids = [task.id for task in gateway.list_tasks(submission.job_id)]
    assert len(ids) == count and sorted(ids) == [f"t{n:05d}" for n in range(1, count + 1)]
    assert gateway.get_job(submission.job_id).on_all_tasks_complete == "terminatejob"


def test_a_worker_killed_between_chunks_leaves_one_job_with_every_task_once(batch, workers):
    localbatch, gateway = batch
    # Each request of 100 tasks takes half a second, so the submission is mid-way for several seconds.
    localbatch.app.faults = Faults(delay_ms=500, path_pattern="addtaskcollection")
    first = workers.start()
    submission = frames(UserFactory(), TASKS)   # committed, then enqueued to the real Redis

    def mid_way():
        submission.refresh_from_db()
        return 400 <= submission.tasks_added < TASKS
    try:
        wait_for(mid_way, timeout=60, interval=0.02, message="the first worker to be between chunks")
    except AssertionError:
        raise AssertionError(workers.logs()) from None
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    submission.refresh_from_db()
    assert submission.state == SubmissionState.ADDING_TASKS and submission.tasks_added < TASKS
    added_when_killed = submission.tasks_added

    localbatch.app.faults = Faults()
    workers.start()
    # The message died with the worker (acked late, it waits in Redis for an hour): the re-driver sends it again
    # once the dead worker's lease (3 s here) has run out.

    def finished():
        submission.refresh_from_db()
        if not submission.is_final:
            submit.redrive_submissions()
        return submission.is_final
    try:
        wait_for(finished, timeout=90, interval=0.5, message="the submission to end")
    except AssertionError:
        raise AssertionError(workers.logs()) from None

    assert submission.state == SubmissionState.SUBMITTED, submission.error_message
    assert submission.tasks_added == TASKS and submission.attempts == 2 and added_when_killed < TASKS
    assert_exactly_once(gateway, submission, TASKS)


def test_with_the_shipped_lease_and_schedule_a_killed_workers_submission_finishes_within_90_s(batch, workers):
    """No test-driven re-drive and no shortened lease: the worker's own beat re-drives, with the defaults."""
    localbatch, gateway = batch
    defaults = {"SUBMISSION_CHUNK_SIZE": str(submit.CHUNK_SIZE), "SUBMISSION_LEASE_SECONDS": str(submit.LEASE_SECONDS)}
    localbatch.app.faults = Faults(delay_ms=500, path_pattern="addtaskcollection")
    first = workers.start(env=defaults)
    submission = frames(UserFactory(), TASKS)

    def mid_way():
        submission.refresh_from_db()
        return 0 < submission.tasks_added < TASKS
    try:
        wait_for(mid_way, timeout=60, interval=0.02, message="the first worker to record a chunk")
    except AssertionError:
        raise AssertionError(workers.logs()) from None
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    localbatch.app.faults = Faults()
    restarted = time.monotonic()
    workers.start(beat=True, env=defaults)

    def finished():
        submission.refresh_from_db()
        return submission.is_final
    try:
        wait_for(finished, timeout=90, interval=0.5, message="the submission to end within 90 s of the restart")
    except AssertionError:
        raise AssertionError(workers.logs()) from None
    print(f"finished {time.monotonic() - restarted:.1f} s after the restart")
    assert submission.state == SubmissionState.SUBMITTED, submission.error_message
    assert submission.attempts == 2
    assert_exactly_once(gateway, submission, TASKS)


def test_a_submission_whose_message_redis_lost_is_re_driven(batch, workers, broker_url, settings):
    _, gateway = batch
    _, redis_client, server = broker_url
    submission = frames(UserFactory(), 300)
    submit_queue = f"{settings.REDIS_KEY_PREFIX}submit"  # this test run's own namespace in Redis
    assert redis_client.llen(submit_queue) == 1
    # Redis restarts without its data right after the submit: the doorbell is gone, the row is not.
    server.stop()
    redis_client = server.start()
    assert redis_client.llen(submit_queue) == 0
    _drop_broker_connections()
    workers.start()
    settings.SUBMISSION_STALE_SECONDS = 1

    def finished():
        submission.refresh_from_db()
        if not submission.is_final:
            submit.redrive_submissions()
        return submission.is_final
    try:
        wait_for(finished, timeout=90, interval=0.5, message="the submission to end")
    except AssertionError:
        raise AssertionError(workers.logs()) from None

    assert submission.state == SubmissionState.SUBMITTED and submission.attempts == 1
    assert_exactly_once(gateway, submission, 300)
