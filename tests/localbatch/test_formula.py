"""The autoscale formula language on its own: what parses, what a run gives, and what is refused."""

import time
from datetime import datetime, timezone

import pytest

from localbatch import formula

NOW = datetime(2024, 3, 4, 10, 30, tzinfo=timezone.utc)   # a Monday, in working hours


def context(samples: dict | None = None, dedicated: int = 0, current_dedicated: float = 0) -> formula.Context:
    history = samples or {}
    return formula.Context(now=NOW, target_dedicated=dedicated, target_low_priority=0,
                           current={"$CurrentDedicatedNodes": current_dedicated, "$CurrentLowPriorityNodes": 0.0,
                                    "$PreemptedNodeCount": 0.0, "$SampleNodeCount": current_dedicated},
                           samples=lambda metric: history.get(metric, []))


def run(text: str, ctx: formula.Context | None = None) -> formula.Outcome:
    ctx = ctx or context()
    return formula.evaluate(formula.parse(text), ctx)


def results(text: str, ctx: formula.Context | None = None) -> str:
    ctx = ctx or context()
    outcome = formula.evaluate(formula.parse(text), ctx)
    assert outcome.error is None, outcome.error
    return outcome.results(ctx)


def pending(values: list[float]) -> dict:
    """Samples of $PendingTasks every 30 s, the last one 15 s ago, for a context whose clock is real now."""
    now = time.time()
    return {"$PendingTasks": [(now + 15 - 30 * (len(values) - i), v) for i, v in enumerate(values)]}


def test_the_targets_and_option_come_first_then_the_variables_in_name_order():
    assert results("$TargetDedicatedNodes=3") == \
        "$TargetDedicatedNodes=3;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue"
    text = "zeta = 2; $alpha = 1.5; $TargetLowPriorityNodes = zeta * 2; $NodeDeallocationOption = taskcompletion"
    assert results(text) == ("$TargetDedicatedNodes=0;$TargetLowPriorityNodes=4;"
                             "$NodeDeallocationOption=taskcompletion;$alpha=1.5;zeta=2")


def test_unassigned_targets_keep_the_pools_current_targets():
    assert results("x = 1", context(dedicated=5)).startswith("$TargetDedicatedNodes=5;")


def test_arithmetic_comparisons_logic_and_the_ternary():
    outcome = run("a = 2 + 3 * 4; b = (2 + 3) * 4; c = -a / 2; d = a > b ? 1 : 0; e = !(a == 14) || 0;"
                  "f = a >= 14 && b != 20; $TargetDedicatedNodes = a < b ? a : b")
    assert outcome.values["a"] == 14 and outcome.values["b"] == 20 and outcome.values["c"] == -7
    assert (outcome.values["d"], outcome.values["e"], outcome.values["f"]) == (0, 0, 0)
    assert outcome.values["$targetdedicatednodes"] == 14


def test_comments_and_line_breaks_are_allowed():
    assert results("// how many\n$TargetDedicatedNodes = /* at most */ min(4,\n 7);\n") \
        .startswith("$TargetDedicatedNodes=4;")


def test_the_pending_tasks_example_of_the_documentation():
    text = ("startingNumberOfVMs = 1;\nmaxNumberofVMs = 25;\n"
            "pendingTaskSamplePercent = $PendingTasks.GetSamplePercent(180 * TimeInterval_Second);\n"
            "pendingTaskSamples = pendingTaskSamplePercent < 70 ? startingNumberOfVMs : "
            "avg($PendingTasks.GetSample(180 * TimeInterval_Second));\n"
            "$TargetDedicatedNodes=min(maxNumberofVMs, pendingTaskSamples);\n$NodeDeallocationOption = taskcompletion;")
    ctx = context(pending([9, 9, 9, 9, 2, 4, 6, 8, 10, 12]))
    ctx.now = datetime.now(timezone.utc)
    outcome = run(text, ctx)
    assert outcome.error is None
    assert outcome.values["pendingtasksamplepercent"] == 100
    assert outcome.values["$targetdedicatednodes"] == 7   # the average of the last six samples
    # With too few samples the formula falls back to its starting size.
    few = context(pending([30]))
    few.now = datetime.now(timezone.utc)
    assert run(text, few).values["$targetdedicatednodes"] == 1


def test_get_sample_by_count_and_by_window_with_a_percentage():
    ctx = context(pending([1, 2, 3, 4]))
    ctx.now = datetime.now(timezone.utc)
    outcome = run("last = $PendingTasks.GetSample(1); two = $PendingTasks.GetSample(2); "
                  "all = $PendingTasks.GetSample(TimeInterval_Minute * 2, 100); n = $PendingTasks.Count()", ctx)
    assert outcome.error is None
    assert outcome.values["last"] == [4] and outcome.values["two"] == [3, 4]
    assert outcome.values["all"] == [1, 2, 3, 4] and outcome.values["n"] == 4


def test_too_few_samples_fail_the_run_as_the_service_reports_it():
    ctx = context(pending([1, 2]))
    ctx.now = datetime.now(timezone.utc)
    outcome = run("x = 1;\n$TargetDedicatedNodes = avg($RunningTasks.GetSample(TimeInterval_Minute * 10, 70))", ctx)
    assert outcome.error.kind == "samples"
    assert str(outcome.error) == ("Line 2, Col 29: Insufficient data from data set: $RunningTasks wanted 70%, "
                                  "received 0%")
    outcome = run("$TargetDedicatedNodes = avg($PendingTasks.GetSample(TimeInterval_Minute * 10, 70))", ctx)
    assert "$PendingTasks wanted 70%, received 10%" in str(outcome.error)


def test_node_counts_read_as_numbers_task_counts_only_as_samples():
    assert results("$TargetDedicatedNodes = $CurrentDedicatedNodes * 1.5", context(current_dedicated=2)) \
        .startswith("$TargetDedicatedNodes=3;")
    outcome = run("$TargetDedicatedNodes = $PendingTasks")
    assert outcome.error.kind == "evaluation"
    assert "$PendingTasks.GetSample" in str(outcome.error)


def test_time_intervals_and_timestamps():
    outcome = run("$curTime = time(); $workHours = $curTime.hour >= 8 && $curTime.hour < 18;"
                  "$isWeekday = $curTime.weekday >= 1 && $curTime.weekday <= 5; five = TimeInterval_Minute * 5;"
                  "later = time(\"2024-03-04T11:00:00Z\") - $curTime;"
                  "$TargetDedicatedNodes = $workHours && $isWeekday ? 20 : 10")
    assert outcome.error is None
    assert outcome.values["$targetdedicatednodes"] == 20
    text = outcome.results(context())
    assert "$curTime=2024-03-04T10:30:00.000Z" in text and "five=00:05:00" in text and "later=00:30:00" in text


def test_functions_over_lists_of_doubles_and_vectors():
    outcome = run("v = $PendingTasks.GetSample(3); s = sum(v, 10); n = len(v, 1); r = range(v); "
                  "p = percentile(v, 50); third = val(v, 2); l = lg(8)",
                  _ctx_now(pending([2, 4, 6])))
    assert outcome.error is None
    assert outcome.values["s"] == 22 and outcome.values["n"] == 4 and outcome.values["r"] == 4
    assert outcome.values["p"] == 4 and outcome.values["third"] == 6 and outcome.values["l"] == 3


def _ctx_now(samples: dict) -> formula.Context:
    ctx = context(samples)
    ctx.now = datetime.now(timezone.utc)
    return ctx


def test_an_alias_counts_unless_the_full_name_is_set_too():
    assert run("$TargetDedicated = 4").target("$TargetDedicatedNodes", "$TargetDedicated", 0) == 4
    assert run("$TargetDedicated = 4; $TargetDedicatedNodes = 2").target(
        "$TargetDedicatedNodes", "$TargetDedicated", 0) == 2


@pytest.mark.parametrize("text, where", [
    ("$TargetDedicatedNodes = (1 + ", "Line 1, Col 30"),
    ("$TargetDedicatedNodes = 1 $TargetLowPriorityNodes = 2", "Line 1, Col 27"),
    ("x = 1;\ny = 2 +* 3", "Line 2, Col 8"),
    ("$TargetDedicatedNodes = spin(3)", "Line 1, Col 25"),
    ("max(1, 2)", "Line 1, Col 1"),
    ("$PendingTasks = 4", "Line 1, Col 1"),
    ("x = $PendingTasks.GetSamples(1)", "Line 1, Col 19"),
    ("x = 1 /* never closed", "Line 1, Col 7"),
    ("x = 'single'", "Line 1, Col 5"),
])
def test_syntax_errors_say_where(text, where):
    with pytest.raises(formula.FormulaError) as caught:
        formula.parse(text)
    assert caught.value.kind == "syntax"
    assert str(caught.value).startswith(where + ":")


@pytest.mark.parametrize("metric", ["$CPUPercent", "$MemoryBytes", "$NetworkInBytes"])
def test_metrics_localbatch_cannot_measure_are_refused_before_any_run(metric):
    with pytest.raises(formula.FormulaError) as caught:
        formula.parse(f"x = 1; $TargetDedicatedNodes = avg({metric}.GetSample(TimeInterval_Minute * 5))")
    assert caught.value.kind == "unsupported"
    assert f"localbatch does not measure {metric}" in str(caught.value)


def test_run_time_errors_keep_what_was_computed_before_them():
    outcome = run("a = 3; $TargetDedicatedNodes = a / (a - 3)")
    assert outcome.error.kind == "evaluation" and "Division by zero" in str(outcome.error)
    assert outcome.values == {"a": 3}


def test_stop_ends_the_run_with_the_values_so_far():
    outcome = run("$TargetDedicatedNodes = 2; x = stop(); $TargetDedicatedNodes = 9")
    assert outcome.error is None
    assert outcome.values["$targetdedicatednodes"] == 2


def test_a_formula_of_more_than_100_statements_is_refused():
    with pytest.raises(formula.FormulaError):
        formula.parse(";".join(f"v{i} = {i}" for i in range(101)))
