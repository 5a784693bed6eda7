"""This process's share of the evaluation rows: positions r, r + W, ... of each split (a distributed
sampler without padding: every row once over the processes), encoded and kept on the model's device, and
the one gather the evaluation makes: the test split's features to process 0 for the diagnostics of r and
z (never the training bank, which stays split for kNN and the probes)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from dimcollapse.errors import InputError
from dimcollapse.utils.distributed import gather_to_rank0, rank, sum_detached, world_size


def shard_positions(n_local: int) -> Tensor:
    """Positions in the split of this process's n_local rows: rank + W i (CPU int64)."""
    return rank() + world_size() * torch.arange(n_local)


@dataclass
class Split:
    """This process's rows of one split: features (on the device), labels, positions in the split."""

    x: Tensor
    y: Tensor
    pos: Tensor

    def columns(self, d: int) -> Split:
        """The same rows with their first d features."""
        return Split(self.x[:, :d], self.y, self.pos)

    def total(self) -> int:
        """Rows over every process."""
        return int(sum_detached(torch.tensor([self.x.shape[0]], device=self.x.device)))


@torch.no_grad()
def encode_split(
    encode: Callable[[Tensor], tuple[Tensor, Tensor]],
    batches: Iterable[tuple[Tensor, Tensor]],
    device: torch.device,
    storage: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor, Tensor]:
    """(r, z, labels) of ``encode(x_uint8)`` over ``batches``, kept on ``device`` (r in ``storage``, z
    float32, labels int64); every process must have rows."""
    rs, zs, ys = [], [], []
    for x, y in batches:
        r, z = encode(x.to(device))
        rs.append(r.to(storage))
        zs.append(z.float())
        ys.append(torch.as_tensor(y).long().to(device))
    counts = sum_detached(torch.tensor([len(rs), 0 if rs else 1], device=device))  # agreed by all
    if int(counts[0]) == 0:
        raise InputError("no images to evaluate; check eval.max_train / eval.max_test and the dataset.")
    if int(counts[1]) > 0:
        raise InputError("fewer evaluation batches than processes; evaluate on fewer processes.")
    return torch.cat(rs), torch.cat(zs), torch.cat(ys)


def gather_rows_to_zero(x: Tensor) -> Tensor | None:
    """Every process's rows of one split in position order (row p from process p mod W) on process 0,
    None on the others; ``x`` itself when not distributed."""
    parts = gather_to_rank0(x)
    if parts is None:
        return None
    w = len(parts)
    out = x.new_empty((sum(p.shape[0] for p in parts), *x.shape[1:]))
    for r, part in enumerate(parts):
        out[r::w] = part
    return out
