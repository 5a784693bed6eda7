"""Data of the toy models: x ~ N(0, I), and a stream of mini-batches with two noisy views (DC sec. 4)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from dimcollapse.errors import ConfigError


def gaussian_data(n: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """n points x ~ N(0, I_dim) in float64 (DC fig. 3: n = 10,000, dim = 16)."""
    if n < 2 or dim < 1:
        raise ConfigError(f"need n >= 2 points and dim >= 1, got n={n}, dim={dim}.")
    return torch.randn(n, dim, generator=generator, dtype=torch.float64)


@dataclass
class ViewBatch:
    """One step's batch: clean points x (N, d) and unit-variance noise e1, e2 (N, d) for the two views."""

    x: torch.Tensor
    e1: torch.Tensor
    e2: torch.Tensor


def batch_stream(
    data: torch.Tensor, batch: int, steps: int, generator: torch.Generator, chunk: int = 256
) -> Iterator[ViewBatch]:
    """Yield ``steps`` batches sampled with replacement; indices and noise are drawn in bulk per chunk."""
    n, dim = data.shape
    if batch < 2:
        raise ConfigError(f"batch must be >= 2 (InfoNCE needs negatives), got {batch}.")
    done = 0
    while done < steps:
        m = min(chunk, steps - done)
        idx = torch.randint(0, n, (m, batch), generator=generator)
        xs = data[idx]
        noise = torch.randn(m, 2, batch, dim, generator=generator, dtype=data.dtype)
        for k in range(m):
            yield ViewBatch(xs[k], noise[k, 0], noise[k, 1])
        done += m
