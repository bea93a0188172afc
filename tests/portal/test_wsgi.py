"""The WSGI entry point gunicorn loads (portal/wsgi.py)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_web_process_leaves_its_startup_objects_out_of_full_collections():
    # A fresh interpreter, as a gunicorn worker loading the portal: this test process has long been set up.
    loaded = subprocess.run(
        [sys.executable, "-c", "import gc, portal.wsgi; print(gc.get_freeze_count())"],
        cwd=ROOT, env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=60)

    assert loaded.returncode == 0, loaded.stderr[-2000:]
    # Django, every module and the middleware: far more than a bare interpreter's few thousand.
    assert int(loaded.stdout.split()[-1]) > 20_000
