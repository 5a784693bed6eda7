"""The papers' linear probe: a linear classifier trained by SGD on features of the frozen encoder.

DirectCLR's protocol (facebookresearch/directclr linear_probe.py): 100 epochs, lr 0.1 with a per-epoch
cosine schedule, batch 256, SGD momentum 0.9, weight decay 1e-6 on every parameter, W ~ N(0, 0.01^2),
b = 0; the training features are those of augmented crops (random-resized crop + flip) when ``features``
draws them anew per call. Under torch.distributed every process draws the same permutation, takes the
rows i = rank (mod W) of each global batch, and the gradients are summed over processes and divided by
the global batch: the same updates as one process on the whole batch (to float summation order).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dimcollapse.errors import ConfigError
from dimcollapse.utils.distributed import rank, sum_detached, world_size

FeatureFn = Callable[[Tensor], Tensor]  # row indices (int64, CPU) -> features [len, D] on the device


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


def shard_batches(n: int, batch_size: int, epoch: int, seed: int) -> Iterator[tuple[Tensor, int]]:
    """(this process's row indices, global batch size) for each batch of an epoch: one permutation of
    the n rows seeded by (seed, epoch) on every process, cut into batches of batch_size (the last may be
    smaller); a process keeps the rows at positions rank, rank + W, ... of each batch."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    order = torch.randperm(n, generator=g)
    r, w = rank(), world_size()
    for start in range(0, n, batch_size):
        batch = order[start : start + batch_size]
        yield batch[r::w], int(batch.numel())


def fit_sgd_probe(
    features: FeatureFn,
    labels: Tensor,
    dim: int,
    num_classes: int,
    settings: SGDProbeSettings,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    refresh: Callable[[int], FeatureFn] | None = None,
) -> nn.Linear:
    """Train W r + b by SGD on CE over every row of ``labels`` (indices into what ``features`` returns),
    lr cosine per epoch; ``refresh(epoch)``, when given, supplies each epoch's features (augmented crops
    drawn anew). Returns the trained layer (identical on every process)."""
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
            for idx, n_global in shard_batches(y_all.numel(), s.batch_size, epoch, s.seed):
                opt.zero_grad(set_to_none=False)
                if idx.numel():
                    x = features(idx).to(device=device, dtype=dtype)
                    loss = F.cross_entropy(layer(x), y_all[idx].to(device), reduction="sum") / n_global
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
    """Fraction of rows whose label is among the top-t logits, for each t; every process scores its share
    (rows rank, rank + W, ...) and the counts are summed over processes."""
    device = layer.weight.device
    n = labels.numel()
    mine = torch.arange(rank(), n, world_size())
    hits = torch.zeros(len(tops), dtype=torch.float64, device=device)
    for start in range(0, mine.numel(), batch_size):
        idx = mine[start : start + batch_size]
        logits = layer(features(idx).to(device=device, dtype=layer.weight.dtype))
        y = labels[idx].long().to(device).view(-1, 1)
        for j, t in enumerate(tops):
            top = logits.topk(min(t, logits.shape[1]), dim=1).indices
            hits[j] += (top == y).any(dim=1).sum()
    hits = sum_detached(hits)
    return {t: float(hits[j]) / n for j, t in enumerate(tops)}


def rows_of(x: Tensor) -> FeatureFn:
    """The FeatureFn of precomputed features ``x`` (rows picked on x's device)."""

    def pick(idx: Tensor) -> Tensor:
        return x[idx.to(x.device)]

    return pick
