"""The console entry point freezes the collector's objects before the interpreter exits, so the final full
collections of interpreter shutdown do not walk every object torch and lightning left (seconds per process:
a study waits for each run's process to end); atexit handlers still run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

PROBE = """
import atexit, gc, sys
atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count(), flush=True))
sys.argv = ["dimcollapse", "--help"]
from dimcollapse.cli.main import main
main()
"""


def test_the_entry_point_exits_with_the_objects_frozen_and_atexit_run() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("frozen at exit:"))
    assert int(line.split(":")[1]) > 10_000  # the imported CLI's objects, not a handful
