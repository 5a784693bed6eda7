"""Random uint8 images with class structure (prototype + noise), for tests and smoke runs; no files needed."""

from __future__ import annotations

import os

import torch

from dimcollapse.data.base import InMemoryDataset
from dimcollapse.errors import ConfigError
from dimcollapse.registry import register


@register("dataset", "synthetic")
def synthetic(
    root: str | os.PathLike[str] | None = None,
    train: bool = True,
    n: int = 512,
    num_classes: int = 10,
    channels: int = 1,
    image_size: int = 28,
    noise: float = 40.0,
    fraction: float = 1.0,
    seed: int = 0,
) -> InMemoryDataset:
    """x_i = clip(prototype[y_i] + noise * eps_i, 0, 255), y_i uniform; prototypes from `seed`, the rest also
    from `train` (train and test share prototypes, so a kNN on pixels beats chance). `root` is ignored."""
    for key, val, low in (("n", n, 1), ("num_classes", num_classes, 1), ("channels", channels, 1)):
        if int(val) < low:
            raise ConfigError(f"synthetic dataset: {key} must be >= {low}, got {val}.")
    if int(image_size) < 2:
        raise ConfigError(f"synthetic dataset: image_size must be >= 2, got {image_size}.")
    g = torch.Generator().manual_seed(int(seed))
    protos = torch.rand(num_classes, channels, image_size, image_size, generator=g) * 255.0
    g.manual_seed(int(seed) * 2 + (0 if train else 1) + 1)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    eps = torch.randn(n, channels, image_size, image_size, generator=g)
    images = (protos[labels] + float(noise) * eps).round().clamp(0, 255).to(torch.uint8)
    return InMemoryDataset(images, labels, num_classes, "synthetic", fraction=fraction, seed=seed)
