"""Minimal torch.distributed helpers for the feature regularizers (no-ops in a single process)."""

from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_detached(x: torch.Tensor) -> torch.Tensor:
    """Concatenation over ranks (rank order) of the detached ``x``; row counts may differ between ranks."""
    _, size = world()
    x = x.detach()
    if size == 1:
        return x
    mine = torch.tensor([x.shape[0]], dtype=torch.long, device=x.device)
    counts = [torch.zeros_like(mine) for _ in range(size)]
    dist.all_gather(counts, mine)
    rows = [int(c.item()) for c in counts]
    biggest = max(rows)
    if x.shape[0] < biggest:  # unequal local batches: pad to the largest, gather, trim
        x = torch.cat([x, x.new_zeros((biggest - x.shape[0], *x.shape[1:]))], dim=0)
    parts = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat([part[:n] for part, n in zip(parts, rows, strict=True)], dim=0)


def sum_detached(x: torch.Tensor) -> torch.Tensor:
    """Sum over ranks of the detached ``x`` (all_reduce)."""
    x = x.detach().clone()
    if world()[1] > 1:
        dist.all_reduce(x)
    return x
