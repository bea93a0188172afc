"""batchsync.locks with the real Redis at REDIS_URL, and the file fallback when no Redis answers."""

import multiprocessing
import threading
import uuid

import pytest
import redis
from django.conf import settings

from batchsync import locks
from tests.localbatch.helpers import wait_for

NO_REDIS = "redis://127.0.0.1:9/0"   # the discard port: nothing answers there


@pytest.fixture
def name():
    # Unique per test: the Redis may be shared with a running portal or another test run.
    return f"test-{uuid.uuid4().hex}"



def redis_keys(client, name):
    return client.keys(f"{settings.REDIS_KEY_PREFIX}{locks.KEY_PREFIX}*:{name}")


def test_a_held_lock_is_refused_to_a_second_holder_until_released(real_redis, name):
    with locks.hold(name) as first:
        assert first
        assert len(redis_keys(real_redis, name)) == 1, "the lock lives in Redis"
        with locks.hold(name) as second:
            assert not second
        with locks.hold(f"{name}-other") as other:
            assert other, "locks of different things are independent"

    assert redis_keys(real_redis, name) == []
    with locks.hold(name) as again:
        assert again


def test_a_refused_holder_does_not_release_the_lock(real_redis, name):
    with locks.hold(name) as first:
        with locks.hold(name) as second:
            assert first and not second
        with locks.hold(name) as third:
            assert not third, "leaving the refused block must not have released the first holder's lock"


def test_the_lock_is_released_when_the_block_raises(real_redis, name):
    with pytest.raises(RuntimeError):
        with locks.hold(name):
            raise RuntimeError("sync failed")

    with locks.hold(name) as acquired:
        assert acquired


def test_an_expired_lock_can_be_taken_and_its_old_holder_does_not_release_the_new_one(real_redis, name):
    # Entered and left by hand: the two holders overlap without nesting.
    first = locks.hold(name, ttl=0.3)
    assert first.__enter__()
    # The first holder outlives its ttl (a stalled worker); another one takes the lock.
    wait_for(lambda: not redis_keys(real_redis, name), timeout=10, message="the lock to expire")
    second = locks.hold(name, ttl=30)
    assert second.__enter__()

    first.__exit__(None, None, None)

    with locks.hold(name) as third:
        assert not third, "the token kept the old holder from releasing the new holder's lock"
    second.__exit__(None, None, None)
    with locks.hold(name) as fourth:
        assert fourth


class Holder(threading.Thread):
    """Holds the lock in another thread until told to let go; `letting_go` is set just before it does."""

    def __init__(self, name):
        super().__init__()
        self.name_, self.held, self.release, self.letting_go = name, threading.Event(), threading.Event(), \
            threading.Event()
        self.start()
        assert self.held.wait(10)

    def run(self):
        with locks.hold(self.name_) as acquired:
            assert acquired
            self.held.set()
            self.release.wait(30)
            self.letting_go.set()


@pytest.mark.parametrize("backend", ["redis", "file"])
def test_a_waiting_caller_gets_the_lock_once_its_holder_is_done(real_redis, settings, tmp_path, name, backend):
    if backend == "file":
        settings.REDIS_URL, settings.DEBUG, settings.VAR_DIR = NO_REDIS, True, tmp_path
    holder = Holder(name)
    threading.Timer(0.5, holder.release.set).start()

    with locks.hold(name, wait=30) as acquired:
        assert acquired and holder.letting_go.is_set(), "it got the lock once the holder let go, not before"
    holder.join()


@pytest.mark.parametrize("backend", ["redis", "file"])
def test_a_caller_gives_up_when_the_wait_is_over(real_redis, settings, tmp_path, name, backend):
    if backend == "file":
        settings.REDIS_URL, settings.DEBUG, settings.VAR_DIR = NO_REDIS, True, tmp_path
    holder = Holder(name)

    with locks.hold(name, wait=0.2) as acquired:
        assert not acquired
    holder.release.set()
    holder.join()


def test_without_redis_in_debug_a_file_lock_excludes_a_second_holder(settings, tmp_path, name):
    settings.REDIS_URL, settings.DEBUG, settings.VAR_DIR = NO_REDIS, True, tmp_path

    with locks.hold(name) as first:
        assert first
        assert list((tmp_path / "locks").iterdir()), "the lock is a file under VAR_DIR/locks"
        with locks.hold(name) as second:
            assert not second
        with locks.hold(f"{name}-other") as other:
            assert other

    with locks.hold(name) as again:
        assert again


def _try_file_lock(name, var_dir, answer):
    """In another process: can it take the lock?"""
    # Lazy: a spawned process sets Django up itself before it reads the settings.
    import django  # noqa: PLC0415
    django.setup()
    from django.conf import settings as child_settings  # noqa: PLC0415
    child_settings.REDIS_URL, child_settings.DEBUG, child_settings.VAR_DIR = NO_REDIS, True, var_dir
    with locks.hold(name) as acquired:
        answer.put(acquired)


def test_the_file_lock_holds_across_processes(settings, tmp_path, name):
    settings.REDIS_URL, settings.DEBUG, settings.VAR_DIR = NO_REDIS, True, tmp_path
    context = multiprocessing.get_context("spawn")
    answer = context.Queue()

    with locks.hold(name) as held:
        assert held
        child = context.Process(target=_try_file_lock, args=(name, tmp_path, answer))
        child.start()
        child.join(60)
        assert answer.get(timeout=5) is False

    child = context.Process(target=_try_file_lock, args=(name, tmp_path, answer))
    child.start()
    child.join(60)
    assert answer.get(timeout=5) is True


def test_without_redis_outside_debug_the_lock_refuses_to_fall_back(settings, tmp_path, name):
    # Several machines share the work in production: a private file lock would let them all run.
    settings.REDIS_URL, settings.DEBUG, settings.VAR_DIR = NO_REDIS, False, tmp_path

    with pytest.raises(redis.ConnectionError):
        with locks.hold(name):
            pass


def test_locks_taken_together_exclude_other_holders_and_are_released_together(real_redis, name):
    with locks.hold(f"{name}-busy") as busy:
        taken = locks.take_many([f"{name}-a", f"{name}-busy", f"{name}-b"], ttl=60)
        assert busy and taken.held == {f"{name}-a", f"{name}-b"}, "a lock held elsewhere is not taken"
    with locks.hold(f"{name}-a") as other:
        assert not other, "held by the set"

    taken.release([f"{name}-a"])

    with locks.hold(f"{name}-a") as other:
        assert other, "released on its own"
    with locks.hold(f"{name}-b") as other:
        assert not other, "the others stay held"
    taken.close()
    assert redis_keys(real_redis, f"{name}-b") == []


def test_locks_taken_together_release_only_their_own(real_redis, name):
    taken = locks.take_many([name], ttl=60)
    real_redis.delete(*redis_keys(real_redis, name))   # expired; someone else took it since
    with locks.hold(name) as other:
        assert other
        taken.close()
        assert len(redis_keys(real_redis, name)) == 1, "the new holder's lock stays"


def test_without_redis_locks_taken_together_are_file_locks(settings, tmp_path, name):
    settings.REDIS_URL, settings.DEBUG, settings.VAR_DIR = NO_REDIS, True, tmp_path
    with locks.hold(f"{name}-busy") as busy:
        taken = locks.take_many([f"{name}-a", f"{name}-busy"])
        assert busy and taken.held == {f"{name}-a"}
    with locks.hold(f"{name}-a") as other:
        assert not other
    taken.close()
    with locks.hold(f"{name}-a") as other:
        assert other
