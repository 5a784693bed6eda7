"""`analyze --model` on an image folder: wall time and peak memory, 2,000 and 50,000 generated 32 px images.

    python benchmarks/bench_analyze_folder.py                      # 2,000 images + stages: ~2 min
    python benchmarks/bench_analyze_folder.py --sizes 2000 50000   # the issue's sizes: ~6-10 min

Each size is one `dimcollapse analyze --model` subprocess (a small TorchScript CNN, `--image-size 32`,
`--no-figures`) per `--workers` value; its peak resident memory is the child's ru_maxrss. The images are
PNGs in 10 class folders, written once to a temporary folder. Then where the time goes (``--stages N``
images, in this process, ``ROUNDS`` interleaved rounds, medians): decoding the folder (0 and 2 DataLoader
workers), preprocessing (scale + normalise), the model's forward, the metrics on N rows and on the 20,000
rows LID is capped at (a 50,000-image run's LID). Results: benchmarks/results/analyze_folder.json.
"""

from __future__ import annotations

import argparse
import shutil
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


ROUNDS = 3


def stages(root: Path, n: int) -> dict[str, float]:
    """Median seconds of each stage of `analyze --model` on ``n`` images (see the module docstring)."""
    from _common import interleaved

    from dimcollapse.analysis.analyze import Options, compute_metrics
    from dimcollapse.analysis.inputs import Preprocess, load_inputs

    folder = root / f"images_{n}"
    if not folder.is_dir():
        write_folder(folder, n)
    inputs = load_inputs(str(folder), decode_size=32)
    model = torch.jit.load(str(root / "cnn.pt")).eval()
    prep = Preprocess(image_size=32)
    raw = torch.cat(list(inputs.batches(256)))
    x = prep(raw)
    with torch.no_grad():
        z = model(x).double().numpy()
    wide = np.random.default_rng(0).normal(size=(20000, z.shape[1]))

    def forward() -> None:
        with torch.no_grad():
            for i in range(0, n, 256):
                model(x[i : i + 256])

    jobs = {
        "decode_0_workers": lambda: [b for b in inputs.batches(256)],
        "decode_2_workers": lambda: [b for b in inputs.batches(256, 2)],
        "preprocess": lambda: [prep(raw[i : i + 256]) for i in range(0, n, 256)],
        "forward": forward,
        "metrics_n_rows": lambda: compute_metrics(z, Options(k=20)),
        "metrics_20000_rows": lambda: compute_metrics(wide, Options(k=20)),
    }
    times = interleaved(jobs, ROUNDS)
    return {name: float(np.median(t)) for name, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000])
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--stages", type=int, default=5000, help="images for the per-stage times (0: none)")
    args = ap.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_model(root / "cnn.pt")
        for n in sorted(args.sizes):  # ru_maxrss of children is a running max: smallest first
            folder = root / f"images_{n}"
            t = time.perf_counter()
            write_folder(folder, n)
            gen = time.perf_counter() - t
            for w in args.workers:  # one subprocess each, workers interleaved within a size
                key = f"{n}_workers{w}"
                results[key] = {**measure(root / "cnn.pt", folder, root / f"out_{key}", w), "write_s": gen}
                print(key, {k: round(v, 3) for k, v in results[key].items()}, flush=True)
            shutil.rmtree(folder)
        stage_s = stages(root, args.stages) if args.stages else {}
        if stage_s:
            print(f"stages on {args.stages} images (median of {ROUNDS} interleaved rounds, seconds):")
            for name, sec in stage_s.items():
                print(f"  {name:20s} {sec:8.3f}  ({args.stages / sec:8.0f} images/s)", flush=True)
    save(
        "analyze_folder",
        {"host": host(), "workers": args.workers, "results": results, "stages_images": args.stages,
         "stages_s": stage_s},
        quick=False,
    )  # fmt: skip


if __name__ == "__main__":
    main()
