"""The end-to-end row of `make gpu-check`: one named paper study through `dimcollapse study`, timed.

DirectCLR table 1 (configs/papers/dc_t1.yaml: ResNet-50, ImageNet-1k recipe) at its scale-down variant
``one_gpu_short`` (one device, global batch 256, lr scaled), cut to a couple of optimizer steps per run on
generated in-memory images of the recipe's size (no ImageNet here), with a small evaluation: every run is
its own `dimcollapse train` process (the local executor), then the study's results and report. quick: the
same study at 16 px, batch 8, no baselines, no weight spectra in the monitor (the width stays: the rows'
d0 reach D = 2048). tests/test_gpu_check.py resolves and builds every run of it (the four processes and
the report take minutes on a loaded 2-core CPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STUDY = "configs/papers/dc_t1.yaml"
SCALE = "one_gpu_short"
STEPS = 2


def study_overrides(dev_type: str, quick: bool) -> list[str]:
    """A couple of steps on generated data of the recipe's size, a small evaluation, the device here."""
    size, n = (16, 64) if quick else (224, 1024)
    out = [
        "data.name=synthetic",
        "data.root=null",
        f"data.kwargs={{n: {n}, num_classes: 10, channels: 3, image_size: {size}}}",
        "data.num_workers=0",
        "data.persistent_workers=false",
        "data.prefetch_factor=null",
        f"optim.max_steps={STEPS}",
        f"trainer.accelerator={'gpu' if dev_type == 'cuda' else 'cpu'}",
        "trainer.log_every=1",
        "trainer.progress_bar=false",
        "monitor.every_n_steps=1",
        "monitor.probe_size=16",
        "monitor.lid_k=4",
        "eval.max_train=256",
        "eval.max_test=64",
        "eval.lid_k=4",
        "eval.knn_k=[20]",
        "eval.linear_probe_epochs=10",
    ]
    if dev_type != "cuda":
        out.append("trainer.precision=32-true")
    if quick:
        out += [
            "data.batch_size=8",
            "monitor.weight_spectra=false",  # full-width ResNet-50: its rows' d0 reach D = 2048
            "eval.max_train=32",
            "eval.max_test=16",
            "eval.knn_k=[5]",
        ]
    return out


def study_command(dev_type: str, quick: bool, folder: Path) -> list[str]:
    """The `dimcollapse study` command line of the check."""
    cmd = [sys.executable, "-m", "dimcollapse", "study", str(ROOT / STUDY), "--scale", SCALE]
    return (
        cmd
        + ["--out", str(folder), *study_overrides(dev_type, quick)]
        + (["--no-baselines"] if quick else [])
    )


def study_rows(dev_type: str, quick: bool, out: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows: wall time of the whole study and per run, runs done; notes), the study in ``out``."""
    folder = out / "study"
    cmd = study_command(dev_type, quick, folder)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
    wall = time.perf_counter() - t0
    results = folder / "results.json"
    runs = json.loads(results.read_text()) if results.is_file() else []
    finished = sum(r.get("status") == "done" and r.get("steps") == STEPS for r in runs)
    if done.returncode != 0 or not runs or finished != len(runs):
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        failed = [f"{r.get('variant')}: {r.get('status')}" for r in runs if r.get("status") != "done"]
        raise RuntimeError(f"internal error: the study run failed (exit {done.returncode}): {failed} {tail}")
    tag = f"study {Path(STUDY).stem} --scale {SCALE} ({len(runs)} runs x {STEPS} steps)"
    rows = [
        {"row": f"{tag}: end to end", "value": wall, "unit": "s (train processes, evaluation, report)"},
        {"row": f"{tag}: per run", "value": wall / len(runs), "unit": "s"},
        {"row": f"{tag}: runs done", "value": float(finished), "unit": "runs"},
    ]
    notes = [f"study: generated data of the recipe's size; `{' '.join(cmd[2:5])} ...` in {folder}"]
    return rows, notes
