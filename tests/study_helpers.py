"""Helpers of the study/report tests: the tiny study's files, the CLI with captured output, copies.

The fixtures that train it once per session are in conftest_study.py.

The study: 3 SimCLR runs (MLP projector, no projector, MLP + SO) on 256 synthetic 16x16 images, a
small ResNet of widths 8-16-16-32, one short epoch (a few steps); about 10 s of CPU on a quiet machine.
Two runs carry a (made-up) paper number, one of them null, so the paper-vs-measured table is exercised.
Tests that change a study folder must work on a copy (``copy_study``).
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

BASE_YAML = """\
data: {name: synthetic, batch_size: 32, kwargs: {n: 256, image_size: 16}}
model: {backbone: small_resnet, backbone_kwargs: {widths: [8, 16, 16, 32]}}
optim: {epochs: 1}
trainer: {progress_bar: false, tensorboard: false}
monitor: {every_n_steps: 2, probe_size: 128}
eval: {linear_probe_epochs: 5}
"""

STUDY_YAML = """\
name: tiny
base: base.yaml
paper: {table: tiny paper table, metric: knn_k20_top1, protocol: kNN k = 20}
runs:
  - {name: simclr_mlp, set: {model.projector: mlp}, paper: 50.0}
  - {name: simclr_none, set: {model.projector: none}, paper: null}
  - {name: simclr_so, set: {regularizers: [{name: so, kwargs: {weight: 0.001}}]}}
"""

RUN_IDS = ("simclr_mlp", "simclr_none", "simclr_so")
IMAGE_PIXELS = 16 * 16  # one channel


@dataclass(frozen=True)
class TinyStudy:
    """A finished tiny study: its YAML, its output folder and what `dimcollapse study` printed."""

    study_file: Path
    folder: Path
    console: str


def run_cli(argv: list[str]) -> tuple[int, str]:
    """``dimcollapse.cli.main.run(argv)`` with stdout and stderr captured into one string."""
    from dimcollapse.cli.main import run

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        status = run(argv)
    return status, buf.getvalue()


def write_study(folder: Path, study_text: str = STUDY_YAML) -> Path:
    """Write base.yaml and study.yaml into ``folder``; return the study file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "base.yaml").write_text(BASE_YAML)
    study = folder / "study.yaml"
    study.write_text(study_text)
    return study


def copy_study(tiny: TinyStudy, dest: Path) -> Path:
    """A private copy of the finished study folder (for tests that rerun or damage it)."""
    shutil.copytree(tiny.folder, dest)
    return dest


def flat(text: str) -> str:
    """Console text with rich's line wrapping and rule padding undone (runs of space and '─' -> one space)."""
    return re.sub(r"[\s─]+", " ", text)
