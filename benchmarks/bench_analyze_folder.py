"""`analyze --model` on an image folder: wall time and peak memory, 2,000 and 50,000 generated 32 px images.

    python benchmarks/bench_analyze_folder.py [--sizes 2000 50000] [--workers 0]

Each size is one `dimcollapse analyze --model` subprocess (a small TorchScript CNN, `--image-size 32`,
`--no-figures`); its peak resident memory is the child's ru_maxrss. The images are PNGs in 10 class
folders, written once to a temporary folder. Results: benchmarks/results/analyze_folder.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import host, save


def write_folder(root: Path, n: int, size: int = 32, classes: int = 10) -> None:
    """``n`` random RGB PNGs of side ``size`` in ``classes`` subfolders."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / f"c{i % classes}" / f"{i:06d}.png")


def write_model(path: Path) -> None:
    """A small CNN as TorchScript (no --arch needed): 3 -> 64 channels, global pooling."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    torch.jit.save(torch.jit.script(model), str(path))


# runs the command and prints its peak resident memory (KiB): a fresh parent per measurement
WRAP = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
)


def measure(model: Path, folder: Path, out: Path, workers: int) -> dict[str, float]:
    """Wall seconds and the child's peak RSS (GiB) of one analyze run."""
    argv = [
        sys.executable,
        "-m",
        "dimcollapse",
        "analyze",
        "--model",
        str(model),
        "--data",
        str(folder),
        "--image-size",
        "32",
        "--no-figures",
        "--out",
        str(out),
        "--num-workers",
        str(workers),
    ]
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WRAP, *argv], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    peak_kib = int(proc.stdout.strip().splitlines()[-1])
    return {"wall_s": wall, "peak_rss_gib": peak_kib / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 50000])
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_model(root / "cnn.pt")
        for n in sorted(args.sizes):  # ru_maxrss of children is a running max: smallest first
            folder = root / f"images_{n}"
            t = time.perf_counter()
            write_folder(folder, n)
            gen = time.perf_counter() - t
            results[str(n)] = {
                **measure(root / "cnn.pt", folder, root / f"out_{n}", args.workers),
                "write_s": gen,
            }
            print(n, results[str(n)], flush=True)
    save("analyze_folder", {"host": host(), "workers": args.workers, "results": results}, quick=False)


if __name__ == "__main__":
    main()
