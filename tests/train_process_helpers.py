"""Helpers of the training-process tests: ``dimcollapse train`` in a subprocess (clean launcher environment),
waiting for a step in progress.json, the pids of its DDP ranks, the result keys of metrics.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from robust_helpers import SRC

LAUNCHER_VARS = ("LOCAL_RANK", "NODE_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK")
TIMING_KEYS = {"train_time_s", "fit_time_s", "images_per_s", "monitor_time_s", "monitor_fraction"}
RECORD_KEYS = {"versions", "git_commit", "resumed", "host", "executor", "requeue_count"}

SMALL_YAML = """\
data: {name: synthetic, batch_size: 16, kwargs: {n: 400, image_size: 8, channels: 1, num_classes: 4}}
model: {backbone_kwargs: {widths: [4, 8], blocks: [1, 1]}, projector_kwargs: {hidden_dim: 16, out_dim: 8}}
optim: {max_steps: 60}
monitor: {every_n_steps: 10, probe_size: 16, lid_k: 4}
trainer: {progress_bar: false, tensorboard: false, checkpoint_every: 1000, log_every: 1, num_threads: 1}
eval: {linear_probe_epochs: 5, knn_k: [5], lid_k: 4}
"""


def clean_env(**extra: str) -> dict[str, str]:
    """This worktree's source first, one thread, no launcher or SLURM variables inherited, plus ``extra``."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in LAUNCHER_VARS}
    e.pop("DIMCOLLAPSE_EXECUTOR", None)
    e["PYTHONPATH"] = str(SRC) + os.pathsep + e.get("PYTHONPATH", "")
    e.update({"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "COLUMNS": "200"})
    e.update(extra)
    return e


def start_train(cfg: Path, out: Path, err: Path, *overrides: str, **env: str) -> subprocess.Popen[bytes]:
    """``python -m dimcollapse train CFG OVERRIDES --out OUT 2>err`` in a new session, not waited for."""
    return subprocess.Popen(
        [sys.executable, "-m", "dimcollapse", "train", str(cfg), *overrides, "--out", str(out)],
        env=clean_env(**env),
        stdout=subprocess.DEVNULL,
        stderr=err.open("wb"),
        start_new_session=True,
    )


def progress(out: Path) -> dict[str, Any]:
    """progress.json of ``out`` ({} while it does not exist)."""
    try:
        return dict(json.loads((out / "progress.json").read_text()))
    except (OSError, ValueError):
        return {}


def wait_for_step(out: Path, step: int, proc: subprocess.Popen[bytes], timeout: float = 240.0) -> int:
    """Wait until progress.json says running at ``step`` or later; returns that step."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        p = progress(out)
        if p.get("state") == "running" and int(p.get("step", 0)) >= step:
            return int(p["step"])
        if proc.poll() is not None:
            raise AssertionError(f"training exited with {proc.returncode} before step {step}")
        time.sleep(0.05)
    raise AssertionError(f"step {step} not reached in {timeout} s")


def child_pids(pid: int) -> list[int]:
    """The pids of the direct children of ``pid`` (Lightning's re-executed DDP ranks)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(t) for t in text]
    return found


def wait_for_children(pid: int, n: int, timeout: float = 120.0) -> list[int]:
    """Wait until ``pid`` has ``n`` children; return their pids."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        kids = child_pids(pid)
        if len(kids) >= n:
            return kids
        time.sleep(0.1)
    raise AssertionError(f"process {pid} did not start {n} child process(es)")


def result_keys(metrics: dict[str, Any]) -> dict[str, Any]:
    """The results of a run (evaluation, collapse metrics, steps): metrics.json without timings and the
    record of where and how it ran."""
    return {
        k: v for k, v in metrics.items() if not k.endswith("_time_s") and k not in TIMING_KEYS | RECORD_KEYS
    }
