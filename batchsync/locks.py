"""One run of a thing at a time: named Redis locks with an expiry and an owner token, or a file lock
in development when no Redis answers."""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from urllib.parse import quote

import redis
from django.conf import settings
from django.db import connection
from redis.exceptions import LockError

log = logging.getLogger(__name__)

KEY_PREFIX = "batchsync:lock:"
PING_EVERY = 5.0
_answered: dict[str, float] = {}   # Redis URL → when it last answered a ping (time.monotonic())


@contextmanager
def hold(name: str, *, ttl: float = 600, wait: float = 0.0) -> Iterator[bool]:
    """Try to take the lock `name`, waiting up to `wait` seconds for its holder; yield whether this
    caller got it, and release it after.

    The lock expires after `ttl` seconds, so a worker killed while holding it blocks the next run for
    no longer than that. Work done under a lock must therefore stay correct should it outlive the lock
    (the sync's upserts never go back in time and its watermarks only move forward)."""
    lock = _redis_lock(name, ttl)
    if lock is None:
        with _file_lock(name, wait) as acquired:
            yield acquired
        return
    acquired = lock.acquire(blocking=wait > 0, blocking_timeout=wait or None)
    try:
        yield acquired
    finally:
        if acquired:
            try:
                lock.release()
            except LockError:
                # It expired and someone else may hold it now; the token keeps us from releasing theirs.
                log.warning("lock %s expired before its holder finished (ttl %ss)", name, ttl)


class LockSet:
    """Locks taken together without waiting (`take_many`), released together: a sync pass takes one per job it
    lists, hundreds a pass, and a round trip to Redis for each was a good part of its time."""

    def __init__(self, client: redis.Redis | None, keys: dict[str, str], token: str):
        self._client, self._keys, self._token = client, keys, token
        self.held: set[str] = set(keys)
        self._file_locks: dict[str, ExitStack] = {}   # without Redis: each held lock's file

    def release(self, names: Iterable[str]) -> None:
        """Release these of the held locks (others are ignored), in one round trip."""
        names = [name for name in names if name in self.held]
        if not names:
            return
        self.held.difference_update(names)
        if self._client is None:
            for name in names:
                self._file_locks.pop(name).close()
            return
        script = _release_script(self._client)
        with self._client.pipeline(transaction=False) as pipe:
            for name in names:
                script(keys=[self._keys[name]], args=[self._token], client=pipe)
            released = pipe.execute()
        for name, done in zip(names, released, strict=True):
            if not done:
                log.warning("lock %s expired before its holder finished", name)

    def close(self) -> None:
        self.release(list(self.held))


def take_many(names: list[str], *, ttl: float = 600) -> LockSet:
    """Try to take each lock of `names` (as `hold` does, without waiting); the returned set's `held` says which
    this caller got. Release them with its `release` or `close`."""
    if not names:
        return LockSet(None, {}, "")
    client = _client_or_none()
    token = uuid.uuid4().hex
    if client is None:
        locks = LockSet(None, {}, token)
        for name in names:
            stack = ExitStack()
            if stack.enter_context(_file_lock(name, 0.0)):
                locks._file_locks[name] = stack
                locks.held.add(name)
            else:
                stack.close()
        return locks
    keys = {name: _key(name) for name in names}
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.set(keys[name], token, nx=True, px=int(ttl * 1000))
        taken = pipe.execute()
    return LockSet(client, {name: keys[name] for name, ok in zip(names, taken, strict=True) if ok}, token)


@functools.lru_cache(maxsize=4)
def _release_script(client: redis.Redis) -> Any:
    # The token check and the delete in one step, as redis-py's own Lock.release does it.
    return client.register_script(
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end")


def _key(name: str) -> str:
    return f"{settings.REDIS_KEY_PREFIX}{KEY_PREFIX}{_database()}:{name}"


def _client_or_none() -> redis.Redis | None:
    """The Redis client, or None when Redis is unreachable and DEBUG allows the file fallback."""
    client = _client(settings.REDIS_URL)
    try:
        # Asked once per PING_EVERY at most: a sync pass takes a lock per job, hundreds a pass, and a ping each
        # doubled its round trips to Redis. Should Redis go away meanwhile, taking the lock fails plainly.
        if time.monotonic() - _answered.get(settings.REDIS_URL, -PING_EVERY) >= PING_EVERY:
            client.ping()
            _answered[settings.REDIS_URL] = time.monotonic()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        if not settings.DEBUG:
            # Several machines need one shared lock; a private file lock would let them all run.
            raise
        _warn_fallback(settings.REDIS_URL, exc.__class__.__name__)
        return None
    return client


def _redis_lock(name: str, ttl: float) -> redis.lock.Lock | None:
    """A redis-py Lock, or None when Redis is unreachable and DEBUG allows the file fallback."""
    client = _client_or_none()
    return None if client is None else client.lock(_key(name), timeout=ttl)


def _database() -> str:
    # Locks guard rows of one database; several databases (tests, a second portal) may share one Redis.
    return str(connection.settings_dict["NAME"])


@functools.lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    # Short timeouts: a lock is asked for on every sync pass, and a dead Redis must not stall it.
    return redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=5)


@functools.lru_cache(maxsize=4)
def _warn_fallback(url: str, reason: str) -> None:
    # Cached: said once per process and reason, not on every pass.
    log.warning("no Redis answers at %s (%s): using file locks under %s, which hold for this machine only",
                url, reason, settings.VAR_DIR / "locks")


@contextmanager
def _file_lock(name: str, wait: float) -> Iterator[bool]:
    # flock is released by the kernel when the process dies, so no expiry is needed here.
    folder = settings.VAR_DIR / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    # VAR_DIR belongs to one installation, and so to one database: the name alone is enough here.
    fd = os.open(folder / f"{quote(name, safe='')}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.1)
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
