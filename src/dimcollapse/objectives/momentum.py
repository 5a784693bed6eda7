"""The EMA copies of every EMA-teacher method (BYOL, NNBYOL, MoCo v2+/v3, DINO, ReSSL).

- ``ema_update(target, online, m)``: theta_t <- m theta_t + (1 - m) theta_o (parameters), buffers copied.
- ``frozen_copy`` / ``EMACopy``: a frozen copy of a module that follows it by ``ema_update`` (the training
  model's target backbone + projector, DINO's teacher prototypes).

The objectives hold no momentum schedule: the run's ``ema`` block gives tau(p)
(``training/schedules.py``), and the training-side EMA hook (``training/ema.py``) moves every declared
(online, target) pair after each optimizer step (``SSLModel.momentum_pairs``, ``Objective.momentum_pairs``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from dimcollapse.utils.ema import ema_update


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose parameters do not require gradients (an EMA target)."""
    out = copy.deepcopy(module)
    for p in out.parameters():
        p.requires_grad_(False)
    return out


class EMACopy(nn.Module):
    """A frozen deep copy of ``module`` (no gradients); ``update(online, m)`` is ``ema_update``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = frozen_copy(module)

    def update(self, online: nn.Module, momentum: float) -> None:
        """theta_copy <- m theta_copy + (1 - m) theta_online; buffers copied from ``online``."""
        ema_update(self.module, online, momentum)

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        """The copy's forward, without gradient."""
        with torch.no_grad():
            out: torch.Tensor = self.module(*args)
        return out
