"""`make dev` stops every process it started when make alone is signalled (manage.py dev_run): a real make, running
a Procfile whose processes have children and one that ignores SIGTERM, signalled the way a tool or `kill` does."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from portal.management.commands.dev_run import GRACE_SECONDS

REPO_ROOT = Path(__file__).resolve().parents[2]
PROCFILE = """\
# comments and blank lines are skipped

plain: echo plain up; exec sleep 300
stubborn: trap '' TERM; echo stubborn up; sleep 300
family: echo family up; sleep 300 & sleep 301 & wait
"""


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_until(check, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(message)
        time.sleep(0.05)


@pytest.fixture
def make_dev(tmp_path):
    """A `make dev` whose recipe is the real one's last line, over the Procfile above; yields (make, its output)."""
    (tmp_path / "Procfile").write_text(PROCFILE)
    (tmp_path / "Makefile").write_text(
        f"dev:\n\texec {sys.executable} {REPO_ROOT / 'manage.py'} dev_run --procfile {tmp_path / 'Procfile'}\n")
    log = tmp_path / "output.log"
    env = {**os.environ, "PORTAL_VAR_DIR": str(tmp_path / "var"), "DJANGO_SETTINGS_MODULE": "portal.settings"}
    with open(log, "wb") as out:
        make = subprocess.Popen(["make", "--no-print-directory", "-f", str(tmp_path / "Makefile"), "dev"],
                                cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    started = []
    try:
        wait_until(lambda: all(f"{name} up" in log.read_text() for name in ("plain", "stubborn", "family")),
                   60, "the processes did not start")
        # Every service and its children, down to the four sleeps they run.
        wait_until(lambda: sum(command(pid) == "sleep" for pid in descendants(make.pid)) == 4, 30,
                   "not every process was up")
        started.extend(descendants(make.pid))
        yield make, log, started
    finally:
        for pid in [make.pid, *started]:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        make.wait()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_make_alone_stops_every_process_it_started(make_dev, sig):
    make, log, started = make_dev

    make.send_signal(sig)   # to make only, not its process group: what Ctrl-C in a terminal would do for all
    make.wait(timeout=30)

    still_running = [pid for pid in started if running(pid)]
    assert not still_running, f"left running: {still_running}\n{log.read_text()}"
    output = log.read_text()
    assert f"stopping every process: make got {sig.name}" in output or f"got {sig.name}" in output, output
    # The process that ignores SIGTERM was killed once the grace was over.
    assert f"stubborn did not stop in {GRACE_SECONDS:g} s: SIGKILL" in output, output


def test_make_killed_outright_still_stops_everything(make_dev):
    make, log, started = make_dev

    make.kill()
    make.wait()

    wait_until(lambda: not any(running(pid) for pid in started), 30, f"left running\n{log.read_text()}")
    assert "stopping every process: make has gone" in log.read_text()


def test_one_process_ending_stops_the_others(tmp_path):
    procfile = tmp_path / "Procfile"
    procfile.write_text("short: echo bye; exit 3\nlong: exec sleep 300\n")
    env = {**os.environ, "PORTAL_VAR_DIR": str(tmp_path / "var"), "DJANGO_SETTINGS_MODULE": "portal.settings"}

    result = subprocess.run([sys.executable, "manage.py", "dev_run", "--procfile", str(procfile)], cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True, timeout=60)

    assert "stopping every process: short exited with 3" in result.stdout
    assert result.returncode == 1
    assert "long" in result.stdout and "SIGKILL" not in result.stdout


def test_a_malformed_procfile_is_refused_before_anything_starts(tmp_path):
    procfile = tmp_path / "Procfile"
    procfile.write_text("web python manage.py runserver\n")
    env = {**os.environ, "PORTAL_VAR_DIR": str(tmp_path / "var"), "DJANGO_SETTINGS_MODULE": "portal.settings"}

    result = subprocess.run([sys.executable, "manage.py", "dev_run", "--procfile", str(procfile)], cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode != 0 and "expected `name: command`" in result.stderr and "started" not in result.stdout
