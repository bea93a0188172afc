"""Job schedules: create, update, replace, disable, enable, terminate and delete, and the recurrence that
creates their jobs (`<scheduleId>:job-<n>`) from the job specification."""

import copy
import time
from datetime import datetime, timezone

from . import errors, validate, wire
from .service import BatchService
from .state import AccountState, key_of
from .timeutil import format_duration, from_iso, iso_to_epoch, now_iso, parse_duration, to_iso
from .timing import Timing

MIN_INTERVAL = 60   # startWindow and recurrenceInterval: at least one minute
UNFINISHED_JOB_STATES = ("active", "disabling", "disabled", "enabling", "terminating", "deleting")


def check_schedule(value, name: str = "schedule") -> dict:
    """A schedule as stored: the times normalised, durations of at least a minute."""
    value = validate.check_object(value or {}, name)
    out = {}
    for field in ("doNotRunUntil", "doNotRunAfter"):
        if value.get(field) is not None:
            try:
                out[field] = to_iso(from_iso(validate.check_string(value[field], f"{name}.{field}")))
            except ValueError:
                raise errors.invalid_property(f"{name}.{field}", value[field],
                                              "Expected an ISO 8601 date and time.") from None
    for field in ("startWindow", "recurrenceInterval"):
        if value.get(field) is not None:
            seconds = validate.check_duration(value[field], f"{name}.{field}")
            if seconds < MIN_INTERVAL:
                raise errors.invalid_property(f"{name}.{field}", value[field], "The minimum is one minute.")
            out[field] = format_duration(seconds)
    return out


def check_job_specification(value, name: str = "jobSpecification") -> dict:
    """The specification of the jobs a schedule creates, checked as a job would be and stored with the same
    defaults a job gets (the service shows them: priority 0, maxParallelTasks -1, ...)."""
    value = validate.check_object(value, name)
    try:
        spec = validate.job_create(dict(value, id="jobspecification"))
    except errors.BatchError as exc:
        if exc.values.get("PropertyName"):
            exc.values["PropertyName"] = f"{name}.{exc.values['PropertyName']}"
        raise
    spec.pop("id")
    return spec


class JobSchedules:
    """Every method runs under the account lock."""

    def __init__(self, state: AccountState, service: BatchService, timing: Timing, account_url: str):
        self.state = state
        self.service = service
        self.timing = timing
        self.account_url = account_url

    # -- lookups and presentation ---------------------------------------------------------------
    def get(self, schedule_id: str) -> dict:
        schedule = self.state.job_schedules.get(key_of(schedule_id))
        if not schedule:
            raise errors.BatchError(404, "JobScheduleNotFound", "The specified job schedule does not exist.",
                                    {"JobScheduleId": schedule_id})
        return schedule

    def url(self, schedule: dict) -> str:
        return f"{self.account_url}/jobschedules/{schedule['id']}"

    def present(self, schedule: dict) -> dict:
        out = {k: copy.deepcopy(v) for k, v in schedule.items() if not k.startswith("_")}
        out["url"] = self.url(schedule)
        # The specification is written as a job is (unset lists left out, the auto pool's spellings).
        out["jobSpecification"] = wire.job(schedule["jobSpecification"], "")
        out["jobSpecification"].pop("url")
        info = {}
        if schedule.get("_next_run") is not None and schedule["state"] in ("active", "disabled"):
            info["nextRunTime"] = to_iso_epoch(schedule["_next_run"])
        if schedule.get("_recent_job"):
            job_id = schedule["_recent_job"]
            info["recentJob"] = {"id": job_id, "url": f"{self.account_url}/jobs/{job_id}"}
        if schedule.get("_end_time"):
            info["endTime"] = schedule["_end_time"]
        out["executionInfo"] = info
        if not out.get("metadata"):
            out.pop("metadata", None)
        return out

    def jobs(self, schedule: dict) -> dict[str, dict]:
        key = key_of(schedule["id"])
        return {job_key: job for job_key, job in self.state.jobs.items() if job.get("_schedule") == key}

    # -- operations -----------------------------------------------------------------------------
    def create(self, body) -> dict:
        validate.check_object(body, "body")
        schedule_id = validate.check_id(validate.require(body, "id"))
        schedule = {"id": schedule_id}
        if body.get("displayName") is not None:
            schedule["displayName"] = validate.check_string(body["displayName"], "displayName", 1024)
        schedule["schedule"] = check_schedule(validate.require(body, "schedule"))
        schedule["jobSpecification"] = check_job_specification(validate.require(body, "jobSpecification"))
        schedule["metadata"] = validate.check_list(body.get("metadata"), "metadata")
        key = key_of(schedule_id)
        if key in self.state.job_schedules:
            raise errors.exists("JobSchedule")
        if key in self.state.jobs:
            raise errors.conflict("JobWithSameIdExists", "A job with the specified job schedule id exists. Job and "
                                                         "job schedule cannot have the same id.")
        now = now_iso()
        schedule.update(creationTime=now, state="active", stateTransitionTime=now, _seq=self.state.next_seq(),
                        _jobs_created=0)
        self.state.touch(schedule)
        schedule["_next_run"] = self._first_run(schedule, iso_to_epoch(now))
        self.state.job_schedules[key] = schedule
        self._run_due(schedule, time.time())
        self.state.save_job_schedule(schedule)
        return schedule

    def update(self, schedule_id: str, body, replace: bool) -> None:
        """PATCH (replace=False) changes what is given; PUT (replace=True) resets what is not."""
        schedule = self.get(schedule_id)
        validate.check_object(body, "body")
        changes = {}
        if "schedule" in body or replace:
            changes["schedule"] = check_schedule(body.get("schedule"))
        if replace:
            changes["jobSpecification"] = check_job_specification(validate.require(body, "jobSpecification"))
        elif "jobSpecification" in body:
            changes["jobSpecification"] = check_job_specification(body["jobSpecification"])
        if "metadata" in body or replace:
            changes["metadata"] = validate.check_list(body.get("metadata"), "metadata")
        self._accepting_changes(schedule)
        schedule.update(changes)
        if "schedule" in changes:
            # Only later jobs follow the new schedule: the next run counts from the last job made, if any.
            last = schedule.get("_last_run")
            schedule["_next_run"] = self._next_after(schedule, last) if last else \
                self._first_run(schedule, time.time())
        self.state.touch(schedule)
        self.state.save_job_schedule(schedule)

    def disable(self, schedule_id: str) -> None:
        schedule = self.get(schedule_id)
        self._accepting_changes(schedule)
        if schedule["state"] != "disabled":
            self._set_state(schedule, "disabled")
        self.state.touch(schedule)
        self.state.save_job_schedule(schedule)

    def enable(self, schedule_id: str) -> None:
        schedule = self.get(schedule_id)
        self._accepting_changes(schedule)
        if schedule["state"] != "active":
            self._set_state(schedule, "active")
            self._run_due(schedule, time.time())
        self.state.touch(schedule)
        self.state.save_job_schedule(schedule)

    def terminate(self, schedule_id: str) -> None:
        schedule = self.get(schedule_id)
        if schedule["state"] == "completed":
            raise errors.conflict("JobScheduleCompleted", "The specified job schedule is already in completed state.")
        if schedule["state"] == "deleting":
            raise errors.conflict("JobScheduleBeingDeleted", "The specified job schedule has been marked for deletion "
                                                             "and is being reclaimed.")
        if schedule["state"] != "terminating":
            self._set_state(schedule, "terminating")
            self._end_jobs(schedule)
        self.state.touch(schedule)
        self.state.save_job_schedule(schedule)

    def delete(self, schedule_id: str) -> None:
        schedule = self.get(schedule_id)
        if schedule["state"] != "deleting":
            self._set_state(schedule, "deleting")
            self.state.touch(schedule)
            self.state.save_job_schedule(schedule)

    def _accepting_changes(self, schedule: dict) -> None:
        state = schedule["state"]
        if state == "completed":
            raise errors.conflict("JobScheduleCompleted", "The specified job schedule is already in completed state.")
        if state == "terminating":
            raise errors.conflict("JobScheduleBeingTerminated", "The specified job schedule is being terminated.")
        if state == "deleting":
            raise errors.conflict("JobScheduleBeingDeleted", "The specified job schedule has been marked for deletion "
                                                             "and is being reclaimed.")

    def _set_state(self, schedule: dict, state: str) -> None:
        schedule["previousState"], schedule["previousStateTransitionTime"] = \
            schedule["state"], schedule["stateTransitionTime"]
        schedule["state"], schedule["stateTransitionTime"] = state, now_iso()

    # -- recurrence ------------------------------------------------------------------------------
    def _first_run(self, schedule: dict, now: float) -> float:
        not_before = schedule["schedule"].get("doNotRunUntil")
        return max(now, iso_to_epoch(not_before)) if not_before else now

    def _next_after(self, schedule: dict, run: float) -> float | None:
        interval = schedule["schedule"].get("recurrenceInterval")
        return run + self.timing.real(parse_duration(interval)) if interval else None

    def _window(self, schedule: dict) -> float:
        """How long after its due time a job may still be created, in real seconds."""
        spec = schedule["schedule"]
        limits = [parse_duration(spec[name]) for name in ("startWindow", "recurrenceInterval") if spec.get(name)]
        return self.timing.real(min(limits)) if limits else float("inf")

    def _active_job(self, schedule: dict) -> dict | None:
        recent = schedule.get("_recent_job")
        job = self.state.jobs.get(key_of(recent)) if recent else None
        return job if job and job["state"] in UNFINISHED_JOB_STATES else None

    def _run_due(self, schedule: dict, now: float) -> bool:
        """Create the job that is due, skip the runs whose window has passed; True when something changed."""
        changed = False
        due = schedule.get("_next_run")
        while due is not None and now > due + self._window(schedule):
            due = schedule["_next_run"] = self._next_after(schedule, due)   # the chance of this run is lost
            changed = True
        if due is None or now < due or self._active_job(schedule):
            return changed
        not_after = schedule["schedule"].get("doNotRunAfter")
        if not_after and now > iso_to_epoch(not_after):
            return changed
        self._create_job(schedule)
        schedule["_last_run"] = due
        schedule["_next_run"] = self._next_after(schedule, due)
        return True

    def _create_job(self, schedule: dict) -> None:
        schedule["_jobs_created"] += 1
        job = copy.deepcopy(schedule["jobSpecification"])
        job["id"] = f"{schedule['id']}:job-{schedule['_jobs_created']}"
        job["_schedule"] = key_of(schedule["id"])
        pool_id = None
        auto = job["poolInfo"].get("autoPoolSpecification")
        if auto and auto["poolLifetimeOption"] == "jobschedule":
            # One pool for all the schedule's jobs, made with the first and removed with the schedule.
            pool = self.state.pools.get(key_of(schedule.get("_auto_pool") or ""))
            if pool is None or pool["state"] == "deleting":
                pool = self.service.add_auto_pool(auto)
                schedule["_auto_pool"] = pool["id"]
            pool_id = pool["id"]
        self.service.add_job(job, pool_id)
        schedule["_recent_job"] = job["id"]

    def _end_jobs(self, schedule: dict) -> None:
        for job in self.jobs(schedule).values():
            if job["state"] in ("active", "disabling", "disabled", "enabling"):
                self.service.scheduler.terminate_job(job, "TerminateJobSchedule")

    def _complete(self, schedule: dict) -> None:
        self._set_state(schedule, "completed")
        schedule["_end_time"] = schedule["stateTransitionTime"]
        schedule["_next_run"] = None
        self._release_auto_pool(schedule)
        self.state.touch(schedule)

    def _release_auto_pool(self, schedule: dict) -> None:
        pool = self.state.pools.get(key_of(schedule.pop("_auto_pool", None) or ""))
        if pool and pool["state"] == "active":
            self.service.delete_pool(pool["id"])

    def tick(self, now: float) -> float:
        """Create the jobs that are due and move schedules on; returns when something is next due."""
        next_due = now + 60
        for key, schedule in list(self.state.job_schedules.items()):
            state = schedule["state"]
            changed = False
            if state == "deleting":
                jobs = self.jobs(schedule)
                for job in jobs.values():
                    if job["state"] != "deleting":
                        self.service.delete_job(job["id"])
                if not jobs:
                    self._release_auto_pool(schedule)
                    del self.state.job_schedules[key]
                    self.state.store.delete("jobschedule", key)
                continue
            if state == "terminating":
                if not any(job["state"] != "completed" for job in self.jobs(schedule).values()):
                    self._complete(schedule)
                    changed = True
            elif state in ("active", "disabled"):
                if state == "active":
                    changed = self._run_due(schedule, now)
                not_after = schedule["schedule"].get("doNotRunAfter")
                finished = schedule.get("_next_run") is None or (not_after and now > iso_to_epoch(not_after))
                if finished and not self._active_job(schedule):
                    self._complete(schedule)
                    changed = True
                elif schedule.get("_next_run") is not None:
                    next_due = min(next_due, max(now, schedule["_next_run"]))
            if changed:
                self.state.save_job_schedule(schedule)
        return next_due


def to_iso_epoch(moment: float) -> str:
    return to_iso(datetime.fromtimestamp(moment, timezone.utc))
