"""Minimal torch.distributed helpers for the feature regularizers (no-ops in a single process)."""

from __future__ import annotations

import torch
import torch.distributed as dist

from dimcollapse.objectives.distributed import all_gather_with_grad


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_detached(x: torch.Tensor) -> torch.Tensor:
    """Concatenation over ranks (rank order) of the detached ``x``; row counts may differ between ranks."""
    return all_gather_with_grad(x.detach())[0]  # no gradient flows: the input is detached


def sum_detached(x: torch.Tensor) -> torch.Tensor:
    """Sum over ranks of the detached ``x`` (all_reduce)."""
    x = x.detach().clone()
    if world()[1] > 1:
        dist.all_reduce(x)
    return x
