"""Write a small ImageNet-1k tree in the layout as distributed: train/<wnid>/<wnid>_<k>.JPEG and a flat
val/ILSVRC2012_val_<k:08d>.JPEG with its labels in one of the distributed forms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

WNIDS = ("n01440764", "n01443537", "n01484850")  # sorted: class index 0, 1, 2
ILSVRC_IDS = {"n01440764": 449, "n01443537": 450, "n01484850": 442}  # the devkit's ids are not sorted order


def write_jpeg(path: Path, width: int, height: int, seed: int) -> None:
    """A random smooth RGB JPEG of width x height (quality 90)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="JPEG", quality=90)


def write_meta(path: Path) -> None:
    """A devkit meta.mat: a 'synsets' struct (ILSVRC2012_ID, WNID) of the leaf classes and one parent."""
    import scipy.io

    dt = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
    rows = [(ILSVRC_IDS[w], w, f"class {w}", 0) for w in WNIDS] + [(1001, "n00001740", "entity", 3)]
    synsets = np.array(rows, dtype=dt)
    scipy.io.savemat(str(path), {"synsets": synsets})


def write_imagenet(
    root: Path,
    per_class: int = 3,
    val_per_class: int = 2,
    labels: str = "csv",
    size: tuple[int, int] = (50, 40),
) -> dict[str, int]:
    """The tree under root; returns {val file name: true class index}. labels: csv | pairs | devkit | none."""
    seed = 0
    for c, wnid in enumerate(WNIDS):
        for k in range(per_class):
            seed += 1
            write_jpeg(root / "train" / wnid / f"{wnid}_{k}.JPEG", size[0] + c, size[1], seed)
    truth: dict[str, int] = {}
    order = [c for k in range(val_per_class) for c in range(len(WNIDS))]  # interleaved classes
    for k, c in enumerate(order, 1):
        name = f"ILSVRC2012_val_{k:08d}.JPEG"
        write_jpeg(root / "val" / name, size[1], size[0], 1000 + k)
        truth[name] = c
    if labels == "csv":
        lines = ["ImageId,PredictionString"]
        lines += [f"{n[:-5]},{WNIDS[c]} 1 2 30 40 {WNIDS[c]} 3 4 20 20" for n, c in truth.items()]
        (root / "LOC_val_solution.csv").write_text("\n".join(lines) + "\n")
    elif labels == "pairs":
        (root / "val_labels.txt").write_text("".join(f"{n}\t{WNIDS[c]}\n" for n, c in truth.items()))
    elif labels == "devkit":
        data = root / "ILSVRC2012_devkit_t12" / "data"
        data.mkdir(parents=True)
        gt = "".join(f"{ILSVRC_IDS[WNIDS[c]]}\n" for c in truth.values())
        (data / "ILSVRC2012_validation_ground_truth.txt").write_text(gt)
        write_meta(data / "meta.mat")
    return truth
