"""The `az` CLI for tests: azure-cli from PyPI in a virtualenv of its own outside the repository (it pins its
own azure-batch), built on first use and kept in the user's cache."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

AZURE_CLI_VERSION = "2.91.0"


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "batch-portal"


def az_executable() -> Path:
    """The `az` of azure-cli AZURE_CLI_VERSION, building its virtualenv first if no finished one is cached.

    A file lock keeps two pytest processes from building it at once; a venv left half-built by an interrupted
    run has no `.complete` marker and is built again. Raises RuntimeError, with pip's last words, if it fails."""
    venv = cache_dir() / f"azure-cli-{AZURE_CLI_VERSION}"
    az, complete = venv / "bin" / "az", venv / ".complete"
    if complete.exists():
        return az
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / f"azure-cli-{AZURE_CLI_VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if complete.exists():   # another process built it while we waited
            return az
        shutil.rmtree(venv, ignore_errors=True)
        log = cache_dir() / f"azure-cli-{AZURE_CLI_VERSION}.log"
        with open(log, "wb") as out:
            steps = [[_base_python(), "-m", "venv", str(venv)],
                     [str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", "--no-input",
                      f"azure-cli=={AZURE_CLI_VERSION}"],
                     [str(az), "--version"]]
            for step in steps:
                if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env=az_environment(cache_dir() / "az-build-config")).returncode != 0:
                    tail = log.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"Could not build the azure-cli {AZURE_CLI_VERSION} virtualenv at {venv} "
                                       f"({' '.join(step[:3])} failed); full log in {log}:\n{tail}")
        complete.write_text(f"azure-cli=={AZURE_CLI_VERSION}\n")
    return az


def az_environment(config_dir: Path, **extra: str) -> dict[str, str]:
    """An environment in which `az` keeps its state in `config_dir` and never phones home: no telemetry, no survey,
    no upgrade check, no sign-in (Batch commands authenticate with the account key they are given)."""
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith(("AZURE_", "AZ_", "VIRTUAL_ENV", "PYTHON"))}
    environment.update(
        AZURE_CONFIG_DIR=str(config_dir), AZURE_CORE_COLLECT_TELEMETRY="no", AZURE_CORE_SURVEY_MESSAGE="no",
        AZURE_CORE_ONLY_SHOW_ERRORS="true", AZURE_CORE_NO_COLOR="true", AZURE_CORE_DISABLE_PROGRESS_BAR="true",
        AZURE_AUTO_UPGRADE_ENABLE="no", AZURE_CORE_OUTPUT="json", **extra)
    return environment


def _base_python() -> str:
    # The interpreter our own virtualenv was made from: az gets its own venv, not one nested in ours.
    return str(Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}")
