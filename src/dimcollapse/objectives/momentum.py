"""The one momentum machinery of every EMA-teacher method (BYOL, NNBYOL, MoCo v2+/v3, DINO, ReSSL).

- ``cosine_momentum(p, base, final)``: the schedule tau(p), p = fraction of the run done.
- ``ema_update(target, online, m)``: theta_t <- m theta_t + (1 - m) theta_o (parameters), buffers copied.
- ``MomentumSchedule``: the validated (base, final) pair an objective owns; ``objective.momentum(p)``.
- ``frozen_copy`` / ``EMACopy``: a frozen copy of a module that follows it by ``ema_update`` (the training
  model's target backbone + projector, DINO's teacher prototypes).

The training model (``training/model.py:SSLModel``) holds the target network as ``frozen_copy``s of backbone
and projector and, after each optimizer step, calls ``update_target(m)`` with ``m = objective.momentum(p)``;
that also calls ``objective.update_target(m)`` so an objective's own teacher parts move with the same m.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from dimcollapse.errors import ConfigError
from dimcollapse.utils.ema import ema_update


def cosine_momentum(progress: float, base: float = 0.99, final: float = 1.0) -> float:
    """tau(p) = final - (final - base) (cos(pi p) + 1) / 2, p in [0, 1] clipped (BYOL section 3.2)."""
    if not math.isfinite(progress):
        raise ConfigError(f"momentum: progress must be a finite number in [0, 1], got {progress!r}.")
    p = min(max(float(progress), 0.0), 1.0)
    return final - (final - base) * (math.cos(math.pi * p) + 1.0) / 2.0


class MomentumSchedule:
    """m(p) = cosine_momentum(p, base, final), checked 0 <= base <= final <= 1 (``owner``: the method)."""

    def __init__(self, owner: str, base: float = 0.99, final: float = 1.0) -> None:
        if not (0.0 <= base <= final <= 1.0):
            raise ConfigError(
                f"{owner}: momentum must satisfy 0 <= base_momentum <= final_momentum <= 1, got "
                f"base_momentum={base!r}, final_momentum={final!r}."
            )
        self.base = float(base)
        self.final = float(final)

    def __call__(self, progress: float) -> float:
        """The EMA coefficient at progress p in [0, 1] (cosine from base to final)."""
        return cosine_momentum(progress, self.base, self.final)


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
