"""Helpers of the launch tests: a tiny 4-run grid, the CLI, results compared to float noise, SLURM."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

# 128 synthetic 16x16 images, batch 32: 4 steps an epoch; a small ResNet; a short linear probe
BASE = """\
data: {name: synthetic, batch_size: 32, kwargs: {n: 128, image_size: 16}}
model: {backbone: small_resnet, backbone_kwargs: {widths: [8, 8, 16, 16]}}
optim: {epochs: 1}
trainer: {progress_bar: false, tensorboard: false}
monitor: {every_n_steps: 2, probe_size: 64}
eval: {linear_probe_epochs: 2}
"""
GRID4 = """\
name: grid4
base: base.yaml
runs:
  - {name: mlp, set: {model.projector: mlp}}
  - {name: none, set: {model.projector: none}}
grid: {trainer.seed: [0, 1]}
"""
DDP = """\
name: ddp
base: base.yaml
set: {trainer.strategy: ddp, trainer.devices: 2, trainer.accelerator: cpu}
runs: [{name: ddp2}]
"""
# how long a run took and how fast it went differ between executors; nothing else may
TIMING = ("time_s", "images_per_s", "monitor_fraction", "git_commit", "host", "executor", "job", "array",
          "requeue", "resumed", "slurm")  # fmt: skip


def write_study(folder: Path, text: str, base: str = BASE) -> Path:
    """base.yaml + study.yaml in ``folder``; the study file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "base.yaml").write_text(base)
    (folder / "study.yaml").write_text(text)
    return folder / "study.yaml"


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``dimcollapse.cli.main.run(argv)``: status, stdout, stderr."""
    from dimcollapse.cli.main import run

    status = run(argv)
    out, err = capsys.readouterr()
    return status, out, err


def rows(folder: Path) -> dict[str, dict[str, str]]:
    """results.csv by run id."""
    with open(folder / "results.csv", newline="") as fh:
        return {r["run_id"]: r for r in csv.DictReader(fh)}


def _is_timing(key: str) -> bool:
    return any(t in key for t in TIMING)


ACCURACY_ROWS = 3  # test predictions that float32 reduction-order noise may flip between thread counts


def _is_accuracy(key: str) -> bool:
    return "top1" in key or key.endswith("_acc") or "accuracy" in key


def assert_same_results(a: dict[str, Any], b: dict[str, Any], what: str) -> None:
    """Equal keys; equal values except timings; floats to float32 noise of a whole run (1e-4 relative)."""
    assert set(a) == set(b), f"{what}: keys differ: {set(a) ^ set(b)}"
    for key in a:
        if _is_timing(key):
            continue
        x, y = a[key], b[key]
        try:
            fx, fy = float(x), float(y)
        except (TypeError, ValueError):
            assert x == y, f"{what}: {key}: {x!r} != {y!r}"
            continue
        # the same seeds and data on the same CPU kind: runs agree to reduction-order noise in float32
        # accumulated over a few steps (thread counts may differ between executors). An accuracy is a
        # count of test rows: that noise can flip a near-tie vote, so it may differ by a few rows
        # (ACCURACY_ROWS of the tiny study's 256 test rows); every continuous metric is held to 1e-4.
        if _is_accuracy(key):
            assert abs(fx - fy) <= ACCURACY_ROWS / 256 + 1e-9, f"{what}: {key}: {fx} != {fy}"
            continue
        assert abs(fx - fy) <= 1e-4 * max(1.0, abs(fx), abs(fy)), f"{what}: {key}: {fx} != {fy}"


def metrics(run_dir: Path) -> dict[str, Any]:
    """A run's metrics.json."""
    data = json.loads((run_dir / "metrics.json").read_text())
    assert isinstance(data, dict)
    return data


def require_slurm() -> None:
    """Skip where sbatch is absent (one line), except under CI, where a missing SLURM fails the test."""
    if shutil.which("sbatch") is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI=true but SLURM's sbatch is missing (run scripts/slurm-up.sh as root first)")
        pytest.skip("sbatch is not installed here (scripts/slurm-up.sh starts a one-node SLURM as root)")
    answer = subprocess.run(
        ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30, check=False
    )
    assert answer.returncode == 0 and answer.stdout.strip(), f"SLURM does not answer: {answer.stderr.strip()}"
