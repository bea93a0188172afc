"""localbatch's index of task transitions (AccountState.tasks_since), at the model: rebuilt when the model is loaded
from its store, and kept to a bounded size however often a task moves."""

from datetime import timedelta

from localbatch.odata import parse_datetime
from localbatch.state import AccountState
from localbatch.store import Store


def _add(state: AccountState, task_id: str) -> dict:
    task = {"id": task_id, "state": "active", "stateTransitionTime": "2026-12-07T10:00:00.000000Z"}
    state.add_task("job", task)
    return task


def _moved_since(state: AccountState, moment: str) -> list[str]:
    """The task ids the index offers from `moment`, kept only if their transition is that late (as a filter does)."""
    since = parse_datetime(moment)
    return sorted(task["id"] for task in state.tasks_since("job", since).values()
                  if parse_datetime(task["stateTransitionTime"]) >= since)


def test_the_index_is_rebuilt_from_the_store_when_the_model_loads(tmp_path):
    path = str(tmp_path / "state.db")
    state = AccountState(Store(path))
    with state.tx():
        tasks = [_add(state, f"t{n}") for n in range(5)]
    moment = "2026-12-07T10:00:00.000001Z"
    with state.tx():
        state.update_task(tasks[1], "completed", endTime="2026-12-07T10:05:00.000000Z")
        state.update_task(tasks[3], "running", startTime="2026-12-07T10:01:00.000000Z")
    assert _moved_since(state, moment) == ["t1", "t3"]

    reloaded = AccountState(Store(path))
    assert _moved_since(reloaded, moment) == ["t1", "t3"]
    assert _moved_since(reloaded, "2026-12-07T10:02:00.000000Z") == ["t1"]
    assert len(reloaded.transitions["job"]) == 5


def test_entries_left_by_earlier_transitions_are_dropped_once_they_outnumber_the_tasks(tmp_path):
    state = AccountState(Store(str(tmp_path / "state.db")))
    with state.tx():
        tasks = [_add(state, f"t{n}") for n in range(10)]
    start = parse_datetime("2026-12-07T10:00:00Z")
    with state.tx():
        for step in range(1, 400):
            task = tasks[step % 10]
            moment = start + timedelta(seconds=step)
            state.update_task(task, "running" if task["state"] != "running" else "active",
                              startTime=f"{moment:%Y-%m-%dT%H:%M:%S.%fZ}")
            assert len(state.transitions["job"]) <= 2 * 10 + 64 + 1
    # The last ten moves, one per task: only those from second 395 on are offered as that late.
    assert _moved_since(state, "2026-12-07T10:06:35Z") == ["t5", "t6", "t7", "t8", "t9"]
    with state.tx():
        state.remove_task("job", tasks[7])
    assert _moved_since(state, "2026-12-07T10:06:35Z") == ["t5", "t6", "t8", "t9"]
