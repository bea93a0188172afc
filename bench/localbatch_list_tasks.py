"""How long listing 10,000 tasks takes through the SDK with $select=id,state.

Compared in the same run with the same listing without $select, and with the raw HTTP time of
the same pages (SharedKey-signed GETs with requests, no SDK deserialisation)."""

import argparse

import requests

import _common as c

GOAL_SECONDS = 1.0


def sdk_list(client, select, expected: int):
    with c.Timer() as timer:
        tasks = list(client.list_tasks("listing", select=select))
    if len(tasks) != expected:
        raise RuntimeError(f"listed {len(tasks)} tasks, expected {expected}")
    return timer.seconds


def raw_list(server, session, query: str, expected: int) -> tuple[float, int, int]:
    """(seconds, pages, bytes) following odata.nextLink as a client would."""
    path = f"/jobs/listing/tasks?api-version={c.API_VERSION}{query}"
    count = pages = size = 0
    with c.Timer() as timer:
        while path:
            response = c.signed_get(session, server, path)
            response.raise_for_status()
            body = response.json()
            count += len(body["value"])
            pages += 1
            size += len(response.content)
            next_link = body.get("odata.nextLink")
            path = next_link[len(server.endpoint):] if next_link else None
    if count != expected:
        raise RuntimeError(f"raw listing saw {count} tasks, expected {expected}")
    return timer.seconds, pages, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="each figure is the best of this many runs, to keep a one-off pause out of it")
    args = c.arguments(parser, smoke={"tasks": 1_500, "rounds": 1})
    tasks, rounds = args.tasks, args.rounds
    from azure.batch import models
    c.header(f"localbatch: list {tasks:,} tasks (active, never run) through azure-batch list_tasks")
    with c.localbatch_server() as server:
        client = c.batch_client(server)
        c.make_pool(client, "empty", nodes=0)
        c.make_job(client, "listing", "empty")
        client.create_tasks("listing", [models.BatchTaskCreateOptions(id=f"t{i:05d}", command_line="/bin/true")
                                        for i in range(tasks)], max_concurrency=4)
        session = requests.Session()
        selected_runs = [sdk_list(client, ["id", "state"], tasks) for _ in range(rounds)]
        full_runs = [sdk_list(client, None, tasks) for _ in range(rounds)]
        selected, full = min(selected_runs), min(full_runs)
        raw_selected = min((raw_list(server, session, "&$select=id,state", tasks) for _ in range(rounds)),
                           key=lambda r: r[0])
        raw_full = min((raw_list(server, session, "", tasks) for _ in range(rounds)), key=lambda r: r[0])
        client.close()
        session.close()

    c.result("SDK list_tasks, $select=id,state", selected, "s", f"<= {GOAL_SECONDS:.0f} s", selected <= GOAL_SECONDS,
             f"raw HTTP {raw_selected[0]:.3f} s; SDK without $select {full:.3f} s")
    c.result("  every run, $select=id,state", max(selected_runs), "s (max)",
             compared="runs " + ", ".join(f"{s:.3f}" for s in selected_runs) + " s")
    c.result("SDK list_tasks, no $select", full, "s", compared=f"raw HTTP {raw_full[0]:.3f} s; runs "
             + ", ".join(f"{s:.3f}" for s in full_runs) + " s")
    c.result("raw HTTP pages, $select=id,state", raw_selected[0], "s",
             compared=f"{raw_selected[1]} pages, {raw_selected[2] / 1e6:.2f} MB")
    c.result("raw HTTP pages, no $select", raw_full[0], "s",
             compared=f"{raw_full[1]} pages, {raw_full[2] / 1e6:.2f} MB")
    c.result("SDK deserialisation share, $select", (selected - raw_selected[0]) / selected * 100, "%")
    c.result("SDK deserialisation share, no $select", (full - raw_full[0]) / full * 100, "%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
