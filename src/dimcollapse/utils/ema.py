"""Exponential moving average of a network's parameters (momentum targets: BYOL, and any EMA teacher)."""

from __future__ import annotations

import torch
from torch import nn

from dimcollapse.errors import ConfigError


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """theta_target <- m theta_target + (1 - m) theta_online (parameters, one fused lerp); buffers copied."""
    tp: list[torch.Tensor] = list(target.parameters())
    op = [o.detach() for o in online.parameters()]
    if len(tp) != len(op) or any(t.shape != o.shape for t, o in zip(tp, op, strict=False)):
        raise ConfigError(
            "the momentum target no longer matches the online network (parameter shapes differ); "
            "rebuild the model from one config instead of editing its layers."
        )
    if tp:  # theta_t + (1 - m)(theta_o - theta_t)
        torch._foreach_lerp_(tp, op, 1.0 - momentum)
    for tb, ob in zip(target.buffers(), online.buffers(), strict=True):
        tb.copy_(ob)
