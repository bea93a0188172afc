"""Bounded reads of task files on real localbatch nodes: windows, the tail, only-new-bytes, big files, bad
bytes, refused names, the shared tail and the streamed download."""

import hashlib
import threading

import pytest

from portal.logs.files import InvalidFileName, open_file, stream, validate_name
from portal.logs.tail import shared_tail
from portal.logs.windows import WINDOW_BYTES, read_window
from portal.models import Job, Task
from tests.localbatch.helpers import wait_for, wait_task_completed
from tests.logfiles import CountingGateway, add_task, file_size

# Fixtures, imported so pytest finds them here.

pytestmark = pytest.mark.django_db

MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def empty_cache(local_cache):
    return local_cache


def unsaved_task(account, task_id: str) -> Task:
    """The task's row as the views hold it, for localbatch's task `task_id` of logs-job; never saved."""
    return Task(job=Job(account=account, job_id="logs-job"), task_id=task_id)


def test_a_running_tasks_tail_grows_and_a_read_after_its_end_brings_only_the_new_bytes(
        account, gateway, batch_client, batch_job, tmp_path):
    go = tmp_path / "go"
    add_task(batch_client, "talker", f"echo first; echo second; while [ ! -e {go} ]; do sleep 0.05; done; "
                                     "echo third; echo fourth")
    wait_for(lambda: file_size(gateway, "talker") == len("first\nsecond\n"), message="two lines written")

    tail = read_window(account, "logs-job", "talker", "stdout.txt", hold_partial=True)
    assert (tail.text, tail.start, tail.end, tail.at_start, tail.at_end) == ("first\nsecond\n", 0, 13, True, True)
    assert tail.lines == ["first", "second"] and tail.source == "node"

    go.touch()
    wait_task_completed(batch_client, "logs-job", "talker")
    counting = CountingGateway(gateway)
    new = read_window(account, "logs-job", "talker", "stdout.txt", start=tail.end, gateway=counting)

    assert new.text == "third\nfourth\n" and (new.start, new.end, new.size) == (13, 26, 26)
    assert counting.reads == [13]        # only the new bytes came from Batch


def test_an_unfinished_last_line_is_held_back_until_it_ends(account, gateway, batch_client, batch_job, tmp_path):
    go = tmp_path / "go"
    add_task(batch_client, "partial", f"echo done; printf half; while [ ! -e {go} ]; do sleep 0.05; done; echo -way")
    wait_for(lambda: file_size(gateway, "partial") == len("done\nhalf"), message="a line and a half")

    held = read_window(account, "logs-job", "partial", "stdout.txt", hold_partial=True)
    assert held.text == "done\n" and held.end == 5 and held.size == 9

    go.touch()
    wait_task_completed(batch_client, "logs-job", "partial")
    rest = read_window(account, "logs-job", "partial", "stdout.txt", start=held.end)
    assert rest.text == "half-way\n"


def test_a_50_mb_stdout_opens_at_either_end_reading_one_window(account, gateway, batch_client, batch_job):
    add_task(batch_client, "big", "yes 0123456789abcdef | head -c 52428800")
    wait_task_completed(batch_client, "logs-job", "big", timeout=60)
    counting = CountingGateway(gateway)

    last = read_window(account, "logs-job", "big", "stdout.txt", gateway=counting)
    first = read_window(account, "logs-job", "big", "stdout.txt", start=0, gateway=counting)

    assert sum(counting.reads) <= 2 * WINDOW_BYTES <= MiB and len(counting.reads) == 2
    assert last.size == first.size == 52428800 and last.at_end and not last.at_start
    assert first.at_start and not first.at_end and first.end - first.start <= WINDOW_BYTES
    # Both windows are whole lines: the tail drops the line its range began inside, the head the one it ended in.
    assert set(last.lines[:-1]) == {"0123456789abcdef"} and set(first.lines) == {"0123456789abcdef"}
    assert first.text.endswith("\n") and first.end % 17 == 0 and last.start % 17 == 0

    earlier = read_window(account, "logs-job", "big", "stdout.txt", end=last.start, gateway=counting)
    assert earlier.end == last.start and set(earlier.lines) == {"0123456789abcdef"}
    assert counting.reads[-1] <= WINDOW_BYTES


def test_invalid_utf8_and_a_character_cut_at_a_window_edge_decode_without_error(
        account, gateway, batch_client, batch_job):
    # \377\376 is never valid UTF-8; then 50,000 two-byte characters (é) on one line.
    add_task(batch_client, "bytes", "printf 'ok \\377\\376 bad\\n'; "
                                    "python3 -c \"import sys; sys.stdout.write('\\u00e9' * 50000)\"")
    wait_task_completed(batch_client, "logs-job", "bytes")

    bad = read_window(account, "logs-job", "bytes", "stdout.txt", start=0, max_bytes=12)
    assert bad.text == "ok \ufffd\ufffd bad\n"

    # Starting inside a character (odd offset after the 12-byte first line) and ending inside one (odd length).
    for start in (13, 14):
        window = read_window(account, "logs-job", "bytes", "stdout.txt", start=start, max_bytes=1001)
        assert window.text and set(window.text) == {"é"}
        assert (window.end - window.start) % 2 == 0 and window.start % 2 == 0

    tail = read_window(account, "logs-job", "bytes", "stdout.txt", max_bytes=1001)
    assert set(tail.text) == {"é"} and tail.at_end


@pytest.mark.parametrize("name", ["../../etc/passwd", "..", "wd/../../x", "/etc/passwd", "wd\\..\\x", "%2e%2e/x",
                                  "%2E%2E%2Fx", "std\x00out.txt", "", "wd//x", "./stdout.txt", "a\nb"])
def test_names_no_task_file_could_have_are_refused_before_anything_reaches_batch(account, gateway, name):
    counting = CountingGateway(gateway)

    with pytest.raises(InvalidFileName):
        read_window(account, "logs-job", "any", name, gateway=counting)
    with pytest.raises(InvalidFileName):
        shared_tail(account, "logs-job", "any", name, gateway=counting)
    with pytest.raises(InvalidFileName):
        open_file(unsaved_task(account, "any"), name, batch=counting, store=None, live=True)
    assert counting.calls == 0


def test_names_from_a_task_file_list_pass():
    for name in ["stdout.txt", "stderr.txt", "wd/out put.log", "wd/results/100%.csv", "wd/é.txt"]:
        assert validate_name(name) == name


def test_many_viewers_of_one_running_task_within_a_second_cost_one_read(
        account, gateway, batch_client, batch_job, tmp_path):
    go = tmp_path / "go"
    add_task(batch_client, "watched", f"seq 1 1000; while [ ! -e {go} ]; do sleep 0.05; done")
    wait_for(lambda: file_size(gateway, "watched") == 3893, message="1000 lines written")
    counting = CountingGateway(gateway)
    viewers = 20
    barrier = threading.Barrier(viewers)
    answers, failures = [], []

    def view():
        try:
            barrier.wait()
            answers.append(shared_tail(account, "logs-job", "watched", "stdout.txt", gateway=counting))
        except Exception as exc:   # reported by the assertion on failures below
            failures.append(exc)

    threads = [threading.Thread(target=view) for _ in range(viewers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not failures
    assert (counting.size_calls, len(counting.reads)) == (1, 1)
    assert len(answers) == viewers and {a.text for a in answers} == {answers[0].text}
    assert answers[0].lines[-1] == "1000"
    # A viewer already holding the first 500 lines is answered from the same read: only what follows.
    caught_up = shared_tail(account, "logs-job", "watched", "stdout.txt", after=1892, gateway=counting)
    assert caught_up.lines[0] == "501" and caught_up.start == 1892 and len(counting.reads) == 1
    go.touch()


def test_a_download_streams_the_exact_bytes_in_bounded_ranges(account, gateway, batch_client, batch_job, store):
    add_task(batch_client, "dl", "head -c 9000000 /dev/urandom")
    wait_task_completed(batch_client, "logs-job", "dl")
    expected = b"".join(batch_client.download_task_file("logs-job", "dl", "stdout.txt"))
    counting = CountingGateway(gateway)

    # As the download view does: the copy to show (here the node's, as nothing is saved yet), then its bytes.
    source = open_file(unsaved_task(account, "dl"), "stdout.txt", batch=counting, store=store, live=False)
    size, chunks = source.size(), stream(source, chunk_bytes=2 * MiB)
    digest, total = hashlib.sha256(), 0
    for chunk in chunks:
        digest.update(chunk)
        total += len(chunk)

    assert size == total == len(expected) == 9000000
    assert digest.hexdigest() == hashlib.sha256(expected).hexdigest()
    assert max(counting.reads) == 2 * MiB and len(counting.reads) == 5
