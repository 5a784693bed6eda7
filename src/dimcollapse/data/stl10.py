"""STL-10 (Coates et al. 2011) binary format: 96x96 RGB, 5,000 train / 8,000 test labelled, 100,000 unlabeled.

Each image is 3 x 96 x 96 bytes in column-major order (per channel, columns of 96 pixels one after another);
labels are bytes 1..10 (stored), returned as 0..9; unlabeled images get label -1.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dimcollapse.data.base import InMemoryDataset, subset_indices
from dimcollapse.data.paths import find_dir
from dimcollapse.errors import ConfigError, InputError
from dimcollapse.registry import register

SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE
DEFAULT_ROOTS: list[str | Path] = []
SUBDIRS = ("stl10_binary", "stl10", "stl-10")
SPLITS = ("train", "test", "unlabeled", "train+unlabeled")
HOW_TO_GET = (
    "Download stl10_binary.tar.gz from https://cs.stanford.edu/~acoates/stl10/ and extract it "
    "(it creates stl10_binary/ with train_X.bin, train_y.bin, test_X.bin, test_y.bin, unlabeled_X.bin)."
)


def read_images(path: Path, indices: np.ndarray | None = None) -> np.ndarray:
    """uint8 [N, 3, 96, 96] from a *_X.bin file (column-major images transposed to row-major)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}.") from None
    if size == 0 or size % IMAGE_BYTES:
        raise InputError(
            f"{path}: {size} bytes is not a whole number of {IMAGE_BYTES}-byte 96x96x3 images "
            f"({size % IMAGE_BYTES} bytes left over): the file is truncated or not an STL-10 image file."
        )
    mm = np.memmap(path, dtype=np.uint8, mode="r", shape=(size // IMAGE_BYTES, 3, SIDE, SIDE))
    chosen = mm if indices is None else mm[indices]
    return np.ascontiguousarray(np.asarray(chosen).transpose(0, 1, 3, 2))


def read_labels(path: Path, count: int, images_path: Path) -> np.ndarray:
    """Labels 1..10 from a *_y.bin file -> int64 0..9; count and range checked."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}.") from None
    if raw.size != count:
        raise InputError(
            f"count mismatch: {path} holds {raw.size} labels but {images_path} holds {count} images."
        )
    if raw.size and (raw.min() < 1 or raw.max() > 10):
        raise InputError(
            f"{path}: labels must lie in 1..10 (STL-10 stores 1-based), found {raw.min()}..{raw.max()}."
        )
    return raw.astype(np.int64) - 1


def _count(path: Path) -> int:
    return path.stat().st_size // IMAGE_BYTES if path.is_file() else 0


@register("dataset", "stl10")
def stl10(
    root: str | os.PathLike[str] | None = None,
    train: bool = True,
    split: str | None = None,
    fraction: float = 1.0,
    seed: int = 0,
) -> InMemoryDataset:
    """STL-10 as uint8 [N, 3, 96, 96], 10 classes; split "train", "test", "unlabeled" (labels -1) or
    "train+unlabeled" (default: "train" if train else "test"). `fraction` subsets before reading."""
    chosen = split or ("train" if train else "test")
    if chosen not in SPLITS:
        raise ConfigError(f"stl10 split must be one of {', '.join(SPLITS)}, got {split!r}.")
    parts = ["train", "unlabeled"] if chosen == "train+unlabeled" else [chosen]
    required = [(f"{p}_X.bin",) for p in parts] + [(f"{p}_y.bin",) for p in parts if p != "unlabeled"]
    directory = find_dir("STL-10", root, required, SUBDIRS, DEFAULT_ROOTS, HOW_TO_GET)
    x_paths = [directory / f"{p}_X.bin" for p in parts]
    for xp in x_paths:
        read_images(xp, np.zeros(0, dtype=np.int64))  # size check before anything is read
    counts = [_count(xp) for xp in x_paths]
    keep = subset_indices(sum(counts), fraction, seed).numpy()
    images, labels, offset = [], [], 0
    for part, xp, n in zip(parts, x_paths, counts, strict=True):
        local = keep[(keep >= offset) & (keep < offset + n)] - offset
        offset += n
        lbl = (
            np.full(n, -1, dtype=np.int64)
            if part == "unlabeled"
            else read_labels(directory / f"{part}_y.bin", n, xp)
        )
        images.append(read_images(xp, local))
        labels.append(lbl[local])
    return InMemoryDataset(
        np.concatenate(images), np.concatenate(labels), 10, "stl10", source=str(x_paths[0])
    )
