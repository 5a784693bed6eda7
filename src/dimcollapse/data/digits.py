"""scikit-learn's 8x8 handwritten digits (UCI optdigits test set, 1,797 images) as uint8 grey images."""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import numpy as np
import torch

from dimcollapse.data.base import InMemoryDataset
from dimcollapse.registry import register

TEST_FRACTION = 0.2
SPLIT_SEED = 0  # the split is fixed: the same 359 images are always the test split


@functools.lru_cache(maxsize=1)
def load_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(values [1797, 8, 8] in 0..16, targets) read from scikit-learn's bundled digits.csv.gz directly
    (no sklearn import: that costs seconds); falls back to sklearn.datasets.load_digits."""
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.origin is not None:
        csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
        if csv.is_file():
            table = np.loadtxt(csv, delimiter=",")
            if table.shape == (1797, 65):
                return table[:, :64].reshape(-1, 8, 8), table[:, 64].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.asarray(bunch.images, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


@register("dataset", "digits")
def digits(
    root: str | os.PathLike[str] | None = None, train: bool = True, fraction: float = 1.0, seed: int = 0
) -> InMemoryDataset:
    """Digits as uint8 [N, 1, 8, 8]: pixel = round(v * 255 / 16) for sklearn's values v in 0..16; a fixed
    seeded 80/20 train/test split (1,438 / 359). `root` is ignored (the data ships with scikit-learn)."""
    values, target = load_arrays()
    images = np.rint(values * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]
    labels = target.astype(np.int64)
    n = images.shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED)).numpy()
    n_test = round(TEST_FRACTION * n)
    idx = np.sort(perm[n_test:] if train else perm[:n_test])
    return InMemoryDataset(
        images[idx],
        labels[idx],
        10,
        "digits",
        fraction=fraction,
        seed=seed,
        source="sklearn.datasets.load_digits",
    )
