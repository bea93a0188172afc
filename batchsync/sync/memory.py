"""What a job's task pass remembers for the next one, in the shared cache: whether it stored changes (the job is busy)
and the version of each task it listed within OVERLAP of the watermark it set (see mirror.TaskWrite)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.core.cache import cache
from django.db import connection

from portal.models import Job

# How long what a pass saw is remembered: passes run every few seconds; past this what the job lists is written again.
REMEMBER_SECONDS = 600
# Past this many recent tasks in one job, a pass remembers none of them and the next one writes them.
REMEMBER_AT_MOST = 50_000


@dataclass(frozen=True)
class Memory:
    """What the task pass that set a job's watermark remembers for the next one."""
    wrote: bool                    # it stored changes: the job is busy, and likely to have more
    versions: dict[str, tuple]     # task id → version (rows.task_version) of what it listed near the watermark


def key(job: Job, watermark: datetime) -> str:
    """Where the memory of the pass that set `watermark` on `job` is kept: a pass finding another watermark finds
    nothing. The database's name and the job's creation in Batch as well as its pk: a pk can be reused (tests roll
    back, a job deleted in Batch can be made again under its id)."""
    created = job.creation_time.timestamp() if job.creation_time else None
    return f"batchsync:seen:{connection.settings_dict['NAME']}:{job.pk}:{created}:{watermark.timestamp()}"


def recall(jobs: list[Job]) -> dict[int, Memory]:
    """What the passes that set these jobs' watermarks remember, by job pk, in one read."""
    keys = {key(job, job.task_watermark_at): job.pk for job in jobs if job.task_watermark_at is not None}
    if not keys:
        return {}
    found = cache.get_many(list(keys))
    return {keys[name]: value for name, value in found.items() if isinstance(value, Memory)}


def keep(memories: dict[str, Memory]) -> None:
    """Keep these (by `key`), in one write; a job with too many recent tasks keeps only whether it wrote."""
    if memories:
        cache.set_many({name: memory if len(memory.versions) <= REMEMBER_AT_MOST else Memory(memory.wrote, {})
                        for name, memory in memories.items()}, timeout=REMEMBER_SECONDS)
