"""Helpers of the robustness tests (tests/test_robust_*.py): a tiny recipe, hostile files, the CLI in a
subprocess with its stderr in a file."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"

TINY_YAML = """\
data: {name: synthetic, batch_size: 16, kwargs: {n: 160, image_size: 8, channels: 1, num_classes: 4}}
model: {backbone_kwargs: {widths: [4, 8], blocks: [1, 1]}, projector_kwargs: {hidden_dim: 16, out_dim: 8}}
optim: {max_steps: 4}
monitor: {every_n_steps: 2, probe_size: 16, lid_k: 4}
trainer: {progress_bar: false, tensorboard: false, checkpoint_every: 2}
eval: {linear_probe_epochs: 5, knn_k: [5], lid_k: 4}
"""

TINY = [
    "data.name=synthetic",
    "data.kwargs={n: 160, image_size: 8, channels: 1, num_classes: 4}",
    "data.batch_size=16",
    "model.backbone_kwargs={widths: [4, 8], blocks: [1, 1]}",
    "model.projector_kwargs={hidden_dim: 16, out_dim: 8}",
    "monitor.every_n_steps=2",
    "monitor.probe_size=16",
    "monitor.lid_k=4",
    "trainer.progress_bar=false",
    "trainer.tensorboard=false",
    "eval.linear_probe_epochs=5",
    "eval.knn_k=[5]",
    "eval.lid_k=4",
]


def env(**extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: this worktree's source first, a 40-column terminal."""
    e = dict(os.environ)
    e["PYTHONPATH"] = str(SRC) + os.pathsep + e.get("PYTHONPATH", "")
    e.update({"COLUMNS": "40", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"})
    e.update(extra)
    return e


def start_cli(args: list[str], cwd: Path, err_file: Path) -> subprocess.Popen[bytes]:
    """``python -m dimcollapse ARGS 2>err_file`` (stdout discarded), not waited for."""
    return subprocess.Popen(
        [sys.executable, "-m", "dimcollapse", *args],
        cwd=cwd,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=err_file.open("wb"),
    )


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header says width x height (8-bit grey) with an empty image stream: opening it checks
    the size without decoding (how a decompression bomb presents itself)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) +
                     chunk(b"IEND", b""))  # fmt: skip


def idx_gzip_bomb(path: Path, zeros: int) -> None:
    """A gzip IDX file whose header announces 60000 x 28 x 28 images followed by ``zeros`` bytes."""
    header = bytes([0, 0, 8, 3]) + np.asarray([60000, 28, 28], dtype=">u4").tobytes()
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [comp.compress(header)]
    block = b"\0" * 2**20
    for _ in range(zeros // len(block)):
        parts.append(comp.compress(block))
    parts.append(comp.flush())
    path.write_bytes(b"".join(parts))
