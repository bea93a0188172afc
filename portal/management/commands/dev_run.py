"""Run the processes of Procfile.dev together (`make dev`), and stop every one of them within seconds when asked: by
Ctrl-C, by SIGINT or SIGTERM to `make` alone, or when make dies. For development only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

# SIGTERM first, SIGKILL this long after: every process is gone within 5 s of the request to stop.
GRACE_SECONDS = 3.0
POLL_SECONDS = 0.1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Service:
    name: str
    command: str


@dataclass
class Running:
    name: str
    process: subprocess.Popen[bytes]


def read_procfile(path: Path) -> list[Service]:
    """`name: command` lines; blank lines and # comments skipped."""
    services = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not name.strip() or not command.strip():
            raise CommandError(f"{path}:{number}: expected `name: command`, got {line!r}")
        services.append(Service(name.strip(), command.strip()))
    if not services:
        raise CommandError(f"{path} names no process")
    return services


def caught_signals(pid: int) -> int | None:
    """The mask of signals process `pid` has a handler for, from /proc (Linux); None where that cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return int(line.split(":", 1)[1], 16)
    except (OSError, ValueError):
        pass
    return None


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class MakeWatch:
    """Tells when the `make` that started us has been told to stop.

    GNU make passes SIGTERM on to its recipe, but not SIGINT: it expects the terminal to have sent that to the whole
    process group, and waits for the recipe to end, so a SIGINT to make alone left every service running. What shows
    from outside is that make, once it has such a signal, resets its handler for it before waiting; so a stop signal
    make caught at our start and no longer catches means make is stopping. Linux only (/proc); elsewhere Ctrl-C,
    SIGTERM and make's death still stop us."""

    def __init__(self, parent_pid: int):
        self.parent_pid = parent_pid
        is_make = process_name(parent_pid) in ("make", "gmake")
        self.caught_at_start = caught_signals(parent_pid) if is_make else None

    def stopping(self) -> str | None:
        if os.getppid() != self.parent_pid:
            return "make has gone"
        if self.caught_at_start is None:
            return None
        now = caught_signals(self.parent_pid)
        if now is None:
            return None
        for sig in STOP_SIGNALS:
            bit = 1 << (sig - 1)
            if self.caught_at_start & bit and not now & bit:
                return f"make got {signal.Signals(sig).name}"
        return None


def group_alive(pgid: int) -> bool:
    """Is any process of group `pgid` still running (zombies, which only wait to be reaped, do not count)?"""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so split after its last ")".
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Command(BaseCommand):
    help = ("Run the processes of a Procfile (Procfile.dev) with their output interleaved; when one exits, or on "
            "Ctrl-C, SIGINT or SIGTERM (to this command or to the make that runs it), stop them all: SIGTERM, then "
            f"SIGKILL after {GRACE_SECONDS:g} s. For development only.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--procfile", default="Procfile.dev", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        services = read_procfile(options["procfile"])
        stop_reason: list[str] = []
        for sig in STOP_SIGNALS:
            signal.signal(sig, lambda signum, frame: stop_reason.append(f"got {signal.Signals(signum).name}"))
        watch = MakeWatch(os.getppid())
        width = max(len(service.name) for service in services)
        printing = threading.Lock()

        running = []
        for service in services:
            # Each in a session of its own, so a signal for one reaches all its children (runserver's reloader,
            # Celery's pool) and Ctrl-C in the terminal reaches only us: we decide the order of the shutdown.
            process = subprocess.Popen(
                service.command, shell=True, start_new_session=True, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            running.append(Running(service.name, process))
            threading.Thread(target=self.relay, args=(running[-1], width, printing), daemon=True).start()
            self.say(f"{service.name} started (pid {process.pid})", width, printing)

        reason, failed = "", False
        while not reason:
            time.sleep(POLL_SECONDS)
            ended = next((each for each in running if each.process.poll() is not None), None)
            if ended:
                reason, failed = f"{ended.name} exited with {ended.process.returncode}", ended.process.returncode != 0
            else:
                reason = (stop_reason[0] if stop_reason else "") or (watch.stopping() or "")
        self.say(f"stopping every process: {reason}", width, printing)
        self.stop(running, width, printing)
        if failed:
            sys.exit(1)

    def stop(self, services: list[Running], width: int, printing: threading.Lock) -> None:
        groups = [service.process.pid for service in services]
        for pgid in groups:
            signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        while time.monotonic() < deadline:
            for service in services:
                service.process.poll()   # reap the group leaders, so they do not count as alive
            if not any(group_alive(pgid) for pgid in groups):
                return
            time.sleep(POLL_SECONDS)
        for service in services:
            if group_alive(service.process.pid):
                self.say(f"{service.name} did not stop in {GRACE_SECONDS:g} s: SIGKILL", width, printing)
                signal_group(service.process.pid, signal.SIGKILL)
        for service in services:
            service.process.wait()

    def relay(self, service: Running, width: int, printing: threading.Lock) -> None:
        assert service.process.stdout is not None
        for line in iter(service.process.stdout.readline, b""):
            self.say(line.decode(errors="replace").rstrip("\n"), width, printing, name=service.name)

    def say(self, text: str, width: int, printing: threading.Lock, *, name: str = "dev") -> None:
        with printing:
            sys.stdout.write(f"{time.strftime('%H:%M:%S')} {name:<{width}} | {text}\n")
            sys.stdout.flush()
