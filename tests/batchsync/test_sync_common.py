"""batchsync.sync.common.Fetcher: answers handled on the caller's thread, and the idle hook that batches their work."""

import threading
import time

from batchsync.sync.common import Fetcher


def test_answers_arriving_while_others_are_pending_wait_for_one_idle_call():
    handled, idle_calls = [], []
    with Fetcher(4) as fetcher:
        for delay in (0.01, 0.02, 0.03):
            fetcher.fetch(lambda delay=delay: time.sleep(delay) or delay,
                          lambda answer: handled.append(answer.result()))

        # A linger far longer than the answers take: idle runs once nothing is pending, not after each answer.
        fetcher.run(idle=lambda: idle_calls.append(list(handled)), linger=30.0)

    assert sorted(handled) == [0.01, 0.02, 0.03]
    assert idle_calls == [handled], "one idle call, after every answer was handled"


def test_idle_may_fetch_more_and_runs_again_once_that_is_handled():
    handled, calls = [], []
    with Fetcher(2) as fetcher:
        fetcher.fetch(lambda: "first", lambda answer: handled.append(answer.result()))

        def idle():
            calls.append(len(handled))
            if len(calls) == 1:
                fetcher.fetch(lambda: "from idle", lambda answer: handled.append(answer.result()))

        fetcher.run(idle=idle, linger=30.0)

    assert handled == ["first", "from idle"] and calls == [1, 2]


def test_the_fetch_threads_are_kept_for_the_next_fetcher():
    size = 7   # a size no other test uses: its threads are this test's
    # The Thread objects themselves, kept referenced: a new thread is a new object (an ident could be reused).
    served: list[set[threading.Thread]] = []
    for _ in range(2):
        threads: set[threading.Thread] = set()
        with Fetcher(size) as fetcher:
            for _ in range(size):   # each holds its thread a while: all `size` threads serve the first pass
                fetcher.fetch(lambda: time.sleep(0.05) or threading.current_thread(),
                              lambda answer, threads=threads: threads.add(answer.result()))
            fetcher.run()
        served.append(threads)

    assert served[1] <= served[0], "the second pass ran on the first one's threads, which outlived it"
