"""CPU input pipeline, images per second per worker: the old image-folder path against the ImageNet loader.

    python benchmarks/bench_input.py              # 96 JPEGs of 500 x 375 (ImageNet's typical size), 7 rounds
    python benchmarks/bench_input.py --quick      # 16 images, 2 rounds (checks that it runs)

Writes a generated ImageNet-style tree (train/<wnid>/*.JPEG, quality 90, smooth random content) to a
temporary folder, then measures, interleaved round after round in one process with one thread (one
DataLoader worker does exactly this per sample), process CPU time:
- ``old_fit_224``: image_folder's ``load_image`` (JPEG draft, fit to 224, centre crop): the old training
  sample (its views were then cut on the device from that centre square);
- ``new_rrc_2views``: the ImageNet loader's training sample, two random-resized crops of 224 cut from the
  full decoded image (``CropSamples``);
- ``new_rrc_1view``: the same with one crop (the per-view comparison with the old path);
- ``new_eval_256_224``: an evaluation sample (full decode, resize 256, centre 224);
- ``gpu_path_worker``: a worker's share when JPEGs are decoded on the GPU (read bytes, header, boxes).
Images/s = images / CPU seconds; median (min-max) over rounds. Results: benchmarks/results/input.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, host, interleaved

from dimcollapse.data.crops import CropSpec
from dimcollapse.data.image_folder import load_image
from dimcollapse.data.imagenet import ImageNetDataset
from dimcollapse.data.loader_crops import CropSamples, EncodedSamples
from dimcollapse.utils.atomic import atomic_write_json


def write_tree(root: Path, n: int) -> None:
    """n JPEGs of 500 x 375 in 4 class folders (+ an empty val/ class folder so the layout is complete)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        small = rng.integers(0, 256, size=(47, 63, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((500, 375), Image.Resampling.BICUBIC)
        path = root / "train" / f"n0000000{i % 4}" / f"img_{i}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, format="JPEG", quality=90)


def measure(n: int, rounds: int) -> dict[str, object]:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "imagenet"
        write_tree(root, n)
        ds = ImageNetDataset(root, True, index_dir=Path(tmp) / "index")
        rows = list(range(len(ds)))
        spec = CropSpec(224, (0.08, 1.0), (3 / 4, 4 / 3))
        two = CropSamples(ds.samples, rows, [spec, spec], 256)
        one = CropSamples(ds.samples, rows, [spec], 256)
        enc = EncodedSamples(ds.samples, rows, [spec, spec], 256)
        paths = [p for p, _ in ds.samples]
        jobs = {
            "old_fit_224": lambda: [load_image(p, 224, 3) for p in paths],
            "new_rrc_2views": lambda: [two[(i, i)] for i in rows],
            "new_rrc_1view": lambda: [one[(i, i)] for i in rows],
            "new_eval_256_224": lambda: [ds[i] for i in rows],
            "gpu_path_worker": lambda: [enc[(i, i)] for i in rows],
        }
        times = interleaved(jobs, rounds, clock=time.process_time)
    rates = {k: [n / t for t in v] for k, v in times.items()}
    return {
        k: {"median": statistics.median(v), "min": min(v), "max": max(v), "rounds": len(v)}
        for k, v in rates.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    n, rounds = (16, 2) if a.quick else (a.images, a.rounds)
    cases = measure(n, rounds)
    out = {"host": host(), "images": n, "source_size": [500, 375], "threads": 1, "cases": cases}
    folder = RESULTS_DIR / "quick" if a.quick else RESULTS_DIR
    atomic_write_json(folder / "input.json", out)
    print(f"images/s per worker (1 thread, CPU time), {n} JPEGs 500x375, {rounds} rounds; host {out['host']}")
    for k, v in cases.items():
        print(f"  {k:18s} {v['median']:8.1f}  ({v['min']:.1f}-{v['max']:.1f})")
    old = cases["old_fit_224"]["median"]
    for k in ("new_rrc_2views", "new_rrc_1view", "new_eval_256_224", "gpu_path_worker"):
        print(f"  {k} / old_fit_224 = {cases[k]['median'] / old:.2f}")


if __name__ == "__main__":
    main()
