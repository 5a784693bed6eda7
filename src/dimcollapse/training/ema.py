"""The training-side EMA hook: after each optimizer step, every declared (online, target) pair moves by
theta_t <- m theta_t + (1 - m) theta_o with the run's momentum m(step) (``training/schedules.py``).

The pairs are declared by the model (``SSLModel.momentum_pairs``: target backbone and projector, plus the
objective's own, e.g. DINO's teacher prototypes); neither the objective nor the pairs hold a schedule.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dimcollapse.objectives.momentum import ema_update


class EMAHook:
    """Moves ``pairs`` (online, target) by ``ema_update`` with a given momentum; no state of its own."""

    def __init__(self, pairs: Sequence[tuple[nn.Module, nn.Module]]) -> None:
        self.pairs = list(pairs)

    @torch.no_grad()
    def step(self, momentum: float) -> None:
        """theta_t <- m theta_t + (1 - m) theta_o for every pair (parameters; buffers copied)."""
        for online, target in self.pairs:
            ema_update(target, online, momentum)
