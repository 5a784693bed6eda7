"""The papers' linear probe: a linear classifier trained by SGD on features of the frozen encoder.

DirectCLR's protocol (facebookresearch/directclr linear_probe.py): 100 epochs, lr 0.1 with a per-epoch
cosine schedule, batch 256, SGD momentum 0.9, weight decay 1e-6 on every parameter, W ~ N(0, 0.01^2),
b = 0; the training features are those of augmented crops (random-resized crop + flip) when ``features``
draws them anew per call. Under torch.distributed every process draws the same permutation of the n
rows, takes the rows of each global batch that it handles (``RowShard``: its own rows when each process
holds a share, rows j = rank (mod W) when every process holds them all), and the gradients are summed over
processes and divided by the global batch: the same updates as one process on the whole batch (to float
summation order).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dimcollapse.errors import ConfigError
from dimcollapse.utils.distributed import gather_detached, rank, sum_detached, world_size

FeatureFn = Callable[[Tensor], Tensor]  # this process's row indices (int64, CPU) -> features [len, D]


@dataclass(frozen=True)
class RowShard:
    """Which of the n rows (global order) this process handles: ``local[j]`` is row j's index in this
    process's features, -1 where another process handles it."""

    local: Tensor

    @classmethod
    def replicated(cls, n: int) -> RowShard:
        """Every process holds all n rows and handles rows j = rank (mod W)."""
        j = torch.arange(n)
        return cls(torch.where(j % world_size() == rank(), j, -1))

    @classmethod
    def of_positions(cls, mine: Tensor, device: torch.device | str = "cpu") -> tuple[RowShard, Tensor]:
        """(the shard, the global order) of rows at positions ``mine`` (ascending, distinct over
        processes; e.g. r, r + W, ... minus unlabelled rows): the n rows in order of position are every
        process's positions gathered and sorted (int64 only: no features move; ``device``: where the
        process group communicates)."""
        mine = mine.long().cpu()
        every = gather_detached(mine.to(device)).cpu().sort().values
        local = torch.full((every.numel(),), -1, dtype=torch.long)
        at = torch.searchsorted(every, mine)
        local[at] = torch.arange(mine.numel())
        return cls(local), every


@dataclass(frozen=True)
class SGDProbeSettings:
    """The SGD probe's hyper-parameters (defaults: DirectCLR's linear_probe.py)."""

    epochs: int = 100
    lr: float = 0.1
    batch_size: int = 256
    momentum: float = 0.9
    weight_decay: float = 1e-6
    init_std: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or not 0 <= self.momentum < 1:
            raise ConfigError(
                f"SGD probe needs epochs >= 1, batch_size >= 1, lr > 0, 0 <= momentum < 1; got {self}."
            )


def cosine_lr(base: float, epoch: int, epochs: int) -> float:
    """lr_e = base (1 + cos(pi e / E)) / 2 (torch's CosineAnnealingLR stepped once per epoch)."""
    return 0.5 * base * (1.0 + math.cos(math.pi * epoch / epochs))


def shard_batches(
    n: int, batch_size: int, epoch: int, seed: int, shard: RowShard | None = None
) -> Iterator[tuple[Tensor, Tensor, int]]:
    """(global rows this process handles, their local indices, global batch size) for each batch of an
    epoch: one permutation of the n rows seeded by (seed, epoch) on every process, cut into batches of
    batch_size (the last may be smaller); ``shard`` (default: replicated) says which rows are this
    process's."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    order = torch.randperm(n, generator=g)
    local = (shard or RowShard.replicated(n)).local
    for start in range(0, n, batch_size):
        batch = order[start : start + batch_size]
        at = local[batch]
        keep = at >= 0
        yield batch[keep], at[keep], int(batch.numel())


def fit_sgd_probe(
    features: FeatureFn,
    labels: Tensor,
    dim: int,
    num_classes: int,
    settings: SGDProbeSettings,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    refresh: Callable[[int], FeatureFn] | None = None,
    shard: RowShard | None = None,
) -> nn.Linear:
    """Train W r + b by SGD on CE over the n rows of ``labels`` (global order, on every process), lr
    cosine per epoch; ``features`` maps this process's local indices (``shard``; default: every process
    holds all rows) to features; ``refresh(epoch)``, when given, supplies each epoch's features (augmented
    crops drawn anew). Returns the trained layer (identical on every process)."""
    s = settings
    g = torch.Generator().manual_seed(int(s.seed))
    layer = nn.Linear(dim, num_classes).to(dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(num_classes, dim, generator=g, dtype=dtype) * s.init_std)
        layer.bias.zero_()
    layer = layer.to(device)
    opt = torch.optim.SGD(layer.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    y_all = labels.long()
    with torch.enable_grad():
        for epoch in range(s.epochs):
            if refresh is not None:
                features = refresh(epoch)
            for group in opt.param_groups:
                group["lr"] = cosine_lr(s.lr, epoch, s.epochs)
            for rows, idx, n_global in shard_batches(y_all.numel(), s.batch_size, epoch, s.seed, shard):
                opt.zero_grad(set_to_none=False)
                if idx.numel():
                    x = features(idx).to(device=device, dtype=dtype)
                    loss = F.cross_entropy(layer(x), y_all[rows].to(device), reduction="sum") / n_global
                    loss.backward()
                for p in layer.parameters():
                    assert p.grad is not None
                    p.grad.copy_(sum_detached(p.grad))
                opt.step()
    return layer


@torch.no_grad()
def probe_topk(
    layer: nn.Linear,
    features: FeatureFn,
    labels: Tensor,
    batch_size: int = 1024,
    tops: tuple[int, ...] = (1, 5),
) -> dict[int, float]:
    """Fraction of rows whose label is among the top-t logits, for each t, over every process's rows
    (``labels`` / ``features``: this process's rows; the counts are summed over processes)."""
    device = layer.weight.device
    hits = torch.zeros(len(tops) + 1, dtype=torch.float64, device=device)
    hits[-1] = labels.numel()
    for start in range(0, labels.numel(), batch_size):
        idx = torch.arange(start, min(start + batch_size, labels.numel()))
        logits = layer(features(idx).to(device=device, dtype=layer.weight.dtype))
        y = labels[idx].long().to(device).view(-1, 1)
        for j, t in enumerate(tops):
            top = logits.topk(min(t, logits.shape[1]), dim=1).indices
            hits[j] += (top == y).any(dim=1).sum()
    hits = sum_detached(hits)
    return {t: float(hits[j]) / float(hits[-1]) for j, t in enumerate(tops)}


def rows_of(x: Tensor) -> FeatureFn:
    """The FeatureFn of precomputed features ``x`` (rows picked on x's device)."""

    def pick(idx: Tensor) -> Tensor:
        return x[idx.to(x.device)]

    return pick
