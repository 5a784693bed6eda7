"""The step-indexed batch sampler: micro-batch m of a run is a pure function of (seed, m, rank).

With ``seeded=True`` each index comes with the seed of that sample's random crops (``sample_seed``), for
loaders that cut crops from the full image (``data/loader_crops.py``): the crops, too, are then a pure
function of (seed, m, rank, slot), whatever the number of workers, and a resumed run cuts the same ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of epoch ``epoch``'s permutation: a fixed mix of the run seed and the epoch."""
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 17) % (2**62)


class StepBatchSampler:
    """Yields the index lists of the remaining micro-batches of the current epoch, from ``start_step()``.

    ``accumulate`` micro-batches make one optimizer step; micro-batch m of the run is a pure function of
    (seed, m, rank), and optimizer step s starts at micro-batch s x accumulate."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        start_step: Callable[[], int],
        rank: int = 0,
        world: int = 1,
        accumulate: int = 1,
        seeded: bool = False,
    ) -> None:
        self.n, self.batch_size, self.seed, self.seeded = n, batch_size, seed, seeded
        self.rank, self.world, self.accumulate = rank, world, max(1, int(accumulate))
        self.start_step = start_step
        self.steps_per_epoch = n // (batch_size * world * self.accumulate)  # optimizer steps
        self.micro_per_epoch = self.steps_per_epoch * self.accumulate

    def __len__(self) -> int:
        return self.micro_per_epoch

    def indices(self, micro: int) -> list[int]:
        """Row indices (into the training pool) of micro-batch ``micro`` (the step when accumulate = 1)."""
        epoch, pos = divmod(int(micro), self.micro_per_epoch)
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(epoch_seed(self.seed, epoch)))
        start = (pos * self.world + self.rank) * self.batch_size
        return perm[start : start + self.batch_size].tolist()

    def __iter__(self) -> Iterator[list[Any]]:
        m0 = int(self.start_step()) * self.accumulate
        epoch, pos = divmod(m0, self.micro_per_epoch)
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(epoch_seed(self.seed, epoch)))
        for p in range(pos, self.micro_per_epoch):
            start = (p * self.world + self.rank) * self.batch_size
            rows = perm[start : start + self.batch_size].tolist()
            if not self.seeded:
                yield rows
                continue
            micro = epoch * self.micro_per_epoch + p
            yield [(r, sample_seed(self.seed, micro, self.rank, j)) for j, r in enumerate(rows)]


def sample_seed(seed: int, micro: int, rank: int, slot: int) -> int:
    """Seed of one sample's crops: a fixed mix of the run seed, the micro-batch, the rank and the slot."""
    return (int(seed) * 1_000_003 + int(micro) * 65_537 + int(rank) * 8_191 + int(slot) * 131 + 7) % (2**62)


class EpochBatches:
    """Batches of ``(position, seed)`` over positions 0..n-1 in order; every pass over it is a new epoch
    with new seeds (the SGD probe's fresh crops of the same rows each epoch)."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0) -> None:
        self.n, self.batch_size, self.seed, self.rank, self.epoch = n, max(1, int(batch_size)), seed, rank, 0

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        micro = -(epoch + 1)  # negative: never the seed of a training micro-batch
        for start in range(0, self.n, self.batch_size):
            stop = min(self.n, start + self.batch_size)
            yield [(p, sample_seed(self.seed, micro, self.rank, p)) for p in range(start, stop)]
