"""One run of a thing at a time: named Redis locks with an expiry and an owner token, or a file lock
in development when no Redis answers."""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


def _redis_lock(name: str, ttl: float) -> redis.lock.Lock | None:
    """A redis-py Lock, or None when Redis is unreachable and DEBUG allows the file fallback."""
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
    return client.lock(f"{settings.REDIS_KEY_PREFIX}{KEY_PREFIX}{_database()}:{name}", timeout=ttl)


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
