"""Autoscale of pools: enable, evaluate and disable, the periodic evaluation at each pool's
autoScaleEvaluationInterval that resizes the pool, and the task and node samples formulas read."""

import time
from collections import defaultdict, deque

from . import errors, formula, validate
from .state import AccountState, key_of
from .timeutil import format_duration, now_iso, parse_duration, utcnow
from .timing import Timing

ENABLE_SPACING = 30        # the service refuses a second enable within 30 s
SAMPLE_SECONDS = 30        # the service takes a sample every 30 s
SAMPLES_KEPT = 2 * 24 * 60  # a day of samples per pool
MAX_TARGET = 1000          # as resize_pool allows


# -- the engine -------------------------------------------------------------------------------

class Autoscaler:
    """Samples and evaluations of every autoscale pool of one account; all methods run under its lock."""

    def __init__(self, state: AccountState, timing: Timing):
        self.state = state
        self.timing = timing
        self.samples: dict[str, deque] = defaultdict(lambda: deque(maxlen=SAMPLES_KEPT))
        self._sampled_at: dict[str, float] = {}

    # operations
    def enable(self, pool: dict, body) -> None:
        validate.check_object(body, "body")
        pool_key = key_of(pool["id"])
        text, interval = body.get("autoScaleFormula"), body.get("autoScaleEvaluationInterval")
        if pool["state"] == "deleting":
            raise errors.conflict("PoolBeingDeleted", "The specified pool has been marked for deletion and is being "
                                                      "reclaimed.")
        if not pool.get("enableAutoScale"):
            if text in (None, ""):
                raise errors.missing_property("autoScaleFormula")
            if pool["allocationState"] != "steady":
                raise errors.conflict("PoolBeingResized", "The specified pool is being resized; enable autoscale "
                                                          "once its allocation state is steady.")
        elif text in (None, "") and interval is None:
            raise errors.missing_property("autoScaleFormula")
        now = time.time()
        enabled_at = pool.get("_autoscale_enabled_at")
        if enabled_at and now - enabled_at < self.timing.real(ENABLE_SPACING):
            raise errors.BatchError(503, "TooManyEnableAutoScaleRequests",
                                    "Too many Enable Pool AutoScale requests are issued on the pool: allow 30 seconds "
                                    "between them.")
        if text not in (None, ""):
            validate.check_formula(text)
        seconds = validate.check_interval(interval) if interval is not None else None
        restart = seconds is not None or not pool.get("enableAutoScale")
        if seconds is None:
            seconds = parse_duration(pool.get("autoScaleEvaluationInterval") or "PT15M")
        pool.update(enableAutoScale=True, autoScaleEvaluationInterval=format_duration(seconds),
                    _autoscale_enabled_at=now)
        if text not in (None, ""):
            pool["autoScaleFormula"] = text
        if restart:
            pool["_autoscale_due"] = now + self.timing.real(seconds)
        self.state.touch(pool)
        self._run_and_apply(pool_key, pool, pool["lastModified"])

    def evaluate(self, pool: dict, body) -> dict:
        """The AutoScaleRun of a formula on the pool now, without applying it."""
        validate.check_object(body, "body")
        if pool["state"] == "deleting":
            raise errors.conflict("PoolBeingDeleted", "The specified pool has been marked for deletion and is being "
                                                      "reclaimed.")
        if not pool.get("enableAutoScale"):
            raise errors.BatchError(409, "OperationInvalidForCurrentState",
                                    "The specified operation is not valid for the current state of the resource.",
                                    {"Reason": "Autoscale is not enabled on the pool: enable it before evaluating "
                                               "a formula."})
        text = body.get("autoScaleFormula")
        if text in (None, ""):
            raise errors.missing_property("autoScaleFormula")
        validate.check_string(text, "autoScaleFormula")
        run, _ = self._run(key_of(pool["id"]), pool, text, now_iso())
        return run

    def disable(self, pool: dict) -> None:
        if pool["state"] == "deleting":
            raise errors.conflict("PoolBeingDeleted", "The specified pool has been marked for deletion and is being "
                                                      "reclaimed.")
        for name in ("autoScaleFormula", "autoScaleEvaluationInterval", "autoScaleRun", "_autoscale_due"):
            pool.pop(name, None)
        pool["enableAutoScale"] = False
        self.samples.pop(key_of(pool["id"]), None)
        self.state.touch(pool)
        self.state.save_pool(pool)

    def first_run(self, pool: dict) -> None:
        """A pool created with enableAutoScale: its targets come from the formula's first run."""
        pool.setdefault("targetDedicatedNodes", 0)
        pool.setdefault("targetLowPriorityNodes", 0)
        seconds = parse_duration(pool["autoScaleEvaluationInterval"])
        pool["_autoscale_due"] = time.time() + self.timing.real(seconds)
        self._run_and_apply(key_of(pool["id"]), pool, pool.get("lastModified") or now_iso())

    # the clock
    def tick(self, now: float) -> float:
        """Take the samples that are due and run the evaluations that are due; returns when next due."""
        next_due = now + 60
        period = self.timing.real(SAMPLE_SECONDS)
        for pool_key, pool in list(self.state.pools.items()):
            if not pool.get("enableAutoScale") or pool["state"] != "active":
                self.samples.pop(pool_key, None)
                self._sampled_at.pop(pool_key, None)
                continue
            sampled_at = self._sampled_at.get(pool_key)
            if sampled_at is None or now - sampled_at >= period:
                self.samples[pool_key].append((now, self._metrics(pool_key, pool)))
                self._sampled_at[pool_key] = sampled_at = now
            next_due = min(next_due, sampled_at + period)
            due = pool.get("_autoscale_due")
            if due is None:
                continue
            if now >= due:
                seconds = parse_duration(pool.get("autoScaleEvaluationInterval") or "PT15M")
                pool["_autoscale_due"] = due = now + self.timing.real(seconds)
                self._run_and_apply(pool_key, pool, now_iso())
            next_due = min(next_due, due)
        return next_due

    # evaluation
    def _metrics(self, pool_key: str, pool: dict) -> dict[str, float]:
        active = running = succeeded = failed = 0
        for job_key, job in self.state.jobs.items():
            if job["state"] != "active" or key_of((job.get("executionInfo") or {}).get("poolId") or "") != pool_key:
                continue
            counts = self.state.task_counts[job_key]
            active += counts["active"]
            running += counts["running"] + counts["preparing"]
            succeeded += counts["success"]
            failed += counts["failure"]
        metrics = {"$ActiveTasks": active, "$RunningTasks": running, "$PendingTasks": active + running,
                   "$SucceededTasks": succeeded, "$FailedTasks": failed}
        metrics.update(self._node_counts(pool_key))
        return {name: float(value) for name, value in metrics.items()}

    def _node_counts(self, pool_key: str) -> dict[str, float]:
        nodes = list(self.state.nodes.get(pool_key, {}).values())
        present = [n for n in nodes if n["state"] != "leavingpool"]
        dedicated = sum(1 for n in present if n["isDedicated"])
        return {"$CurrentDedicatedNodes": float(dedicated), "$CurrentLowPriorityNodes": float(len(present) - dedicated),
                "$PreemptedNodeCount": 0.0, "$SampleNodeCount": float(len(nodes))}

    def _run(self, pool_key: str, pool: dict, text: str, timestamp: str) -> tuple[dict, tuple | None]:
        """(AutoScaleRun, (dedicated, low priority, deallocation option) when it succeeded)."""
        history = self.samples.get(pool_key, ())
        context = formula.Context(
            now=utcnow(), target_dedicated=pool.get("targetDedicatedNodes", 0),
            target_low_priority=pool.get("targetLowPriorityNodes", 0), current=self._node_counts(pool_key),
            samples=lambda metric: [(moment, values[metric]) for moment, values in history],
            sample_seconds=SAMPLE_SECONDS, time_scale=self.timing.scale)
        try:
            outcome = formula.evaluate(formula.parse(text), context)
        except formula.FormulaError as exc:
            return {"timestamp": timestamp, "error": _run_error(exc)}, None
        run = {"timestamp": timestamp, "results": outcome.results(context)}
        error = outcome.error
        targets = None
        if error is None:
            try:
                targets = (_target(outcome, formula.TARGET_DEDICATED, "$TargetDedicated", context.target_dedicated),
                           _target(outcome, formula.TARGET_LOW_PRIORITY, "$TargetLowPriority",
                                   context.target_low_priority),
                           outcome.values.get(formula.DEALLOCATION.lower(), "requeue"))
            except formula.FormulaError as exc:
                error = exc
        if error is not None:
            run["error"] = _run_error(error)
            return run, None
        return run, targets

    def _run_and_apply(self, pool_key: str, pool: dict, timestamp: str) -> None:
        run, targets = self._run(pool_key, pool, pool["autoScaleFormula"], timestamp)
        pool["autoScaleRun"] = run
        if targets:
            dedicated, low, option = targets
            if (dedicated, low) != (pool.get("targetDedicatedNodes"), pool.get("targetLowPriorityNodes")):
                pool.update(targetDedicatedNodes=dedicated, targetLowPriorityNodes=low, _deallocation=option)
                if pool["allocationState"] == "steady":
                    pool["allocationState"], pool["allocationStateTransitionTime"] = "resizing", now_iso()
                if timestamp != pool.get("lastModified"):
                    self.state.touch(pool)
        self.state.save_pool(pool)


def _target(outcome: formula.Outcome, name: str, alias: str, current: int) -> int:
    value = outcome.target(name, alias, current)
    if isinstance(value, int):
        return value
    if not isinstance(value, float) or not 0 <= value <= MAX_TARGET:
        raise formula.FormulaError("evaluation", None, f"{name} must be a number between 0 and {MAX_TARGET}, "
                                                     f"not {formula.show(value)}.")
    return int(value)   # a fraction of a node is no node: the target is rounded down


def _run_error(exc: formula.FormulaError) -> dict:
    code, message = validate.FORMULA_ERRORS[exc.kind]
    return {"code": code, "message": message, "values": [{"name": "Message", "value": str(exc)}]}
