"""In-memory image datasets (uint8 tensors) with a seeded `fraction` subset and a fixed train/val split."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from dimcollapse.errors import ConfigError, InputError


def check_fraction(fraction: float) -> float:
    """Validate a subset fraction: 0 < fraction <= 1."""
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise ConfigError(f"fraction must be a number in (0, 1], got {fraction!r}.") from None
    if not (0.0 < value <= 1.0) or math.isnan(value):
        raise ConfigError(f"fraction must be in (0, 1], got {fraction!r}; use 1.0 for the whole dataset.")
    return value


def subset_indices(n: int, fraction: float, seed: int = 0) -> Tensor:
    """Sorted indices of a seeded random subset of round(fraction * n) items (at least 1) out of n."""
    frac = check_fraction(fraction)
    if frac >= 1.0:
        return torch.arange(n)
    k = max(1, round(frac * n))
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n, generator=gen)[:k].sort().values


class InMemoryDataset(Dataset[tuple[Tensor, int]]):
    """A dataset of `(uint8 image [C, H, W], label)` held as `.images` uint8 [N, C, H, W] and `.labels` int64.

    Labels lie in [0, num_classes); -1 marks an unlabeled image (STL-10's unlabeled split).
    `fraction` < 1 keeps a seeded random subset (the same one for the same seed).
    """

    def __init__(
        self,
        images: Tensor | np.ndarray,
        labels: Tensor | np.ndarray,
        num_classes: int,
        name: str,
        fraction: float = 1.0,
        seed: int = 0,
        source: str = "",
    ) -> None:
        images_t = torch.as_tensor(images)
        labels_t = torch.as_tensor(labels).to(torch.int64).reshape(-1)
        where = f" ({source})" if source else ""
        if images_t.dtype != torch.uint8 or images_t.ndim != 4:
            raise InputError(
                f"dataset '{name}'{where}: images must be uint8 [N, C, H, W], got {images_t.dtype} "
                f"{tuple(images_t.shape)}."
            )
        if images_t.shape[0] != labels_t.shape[0]:
            raise InputError(
                f"dataset '{name}'{where}: {images_t.shape[0]} images but {labels_t.shape[0]} labels; "
                "the image and label files do not belong together."
            )
        if labels_t.numel() and (int(labels_t.min()) < -1 or int(labels_t.max()) >= num_classes):
            raise InputError(
                f"dataset '{name}'{where}: labels must lie in [0, {num_classes}) (or -1 for unlabeled), "
                f"found range [{int(labels_t.min())}, {int(labels_t.max())}]."
            )
        if images_t.shape[-1] != images_t.shape[-2]:
            raise InputError(f"dataset '{name}'{where}: images must be square, got {tuple(images_t.shape)}.")
        idx = subset_indices(images_t.shape[0], fraction, seed)
        if idx.numel() != images_t.shape[0]:
            images_t, labels_t = images_t[idx], labels_t[idx]
        self.images: Tensor = images_t.contiguous()
        self.labels: Tensor = labels_t.contiguous()
        self.num_classes: int = int(num_classes)
        self.name: str = name
        self.source: str = source

    @property
    def channels(self) -> int:
        """Number of image channels C."""
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        """Side length H (= W) of the square images."""
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.images[i], int(self.labels[i])

    def subset(self, indices: Tensor | list[int], name: str | None = None) -> InMemoryDataset:
        """A new dataset holding the rows `indices` (same classes and name unless `name` is given)."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return InMemoryDataset(
            self.images[idx], self.labels[idx], self.num_classes, name or self.name, source=self.source
        )

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the pixels scaled to [0, 1]: mean_c = E[x_c / 255], std_c likewise."""
        x = self.images.to(torch.float64) / 255.0
        mean = x.mean(dim=(0, 2, 3))
        std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def __repr__(self) -> str:
        return (
            f"InMemoryDataset(name={self.name!r}, n={len(self)}, channels={self.channels}, "
            f"image_size={self.image_size}, num_classes={self.num_classes})"
        )


def train_val_split(
    dataset: InMemoryDataset, val_fraction: float = 0.1, seed: int = 0
) -> tuple[InMemoryDataset, InMemoryDataset]:
    """Fixed seeded split into (train, val): val gets round(val_fraction * N) rows, train the rest."""
    if not (0.0 < float(val_fraction) < 1.0):
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction!r}.")
    n = len(dataset)
    n_val = round(float(val_fraction) * n)
    if n_val < 1 or n_val >= n:
        raise InputError(
            f"cannot split {n} images of '{dataset.name}' with val_fraction={val_fraction}: "
            "each side needs at least one image."
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    val_idx = perm[:n_val].sort().values
    train_idx = perm[n_val:].sort().values
    return dataset.subset(train_idx, f"{dataset.name}-train"), dataset.subset(val_idx, f"{dataset.name}-val")
