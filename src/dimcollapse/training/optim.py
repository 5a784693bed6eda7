"""Optimizers (SGD, LARS, AdamW), no weight decay on biases and norm parameters; warm-up + cosine schedule."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from dimcollapse.errors import ConfigError
from dimcollapse.training.config import OPTIMIZERS, OptimConfig


class LARS(Optimizer):
    """LARS (You et al. 2017): per-layer trust ratio eta*||w|| / (||g|| + wd*||w||) scales (g + wd*w),
    then heavy-ball momentum v <- m v + u, w <- w - lr v. Groups with ``lars_exclude=True`` (biases, norms)
    take a plain momentum SGD step without weight decay or adaptation."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.02,
        eps: float = 1e-8,
    ) -> None:
        if lr <= 0 or eta <= 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ConfigError(
                f"LARS needs lr > 0, eta > 0, 0 <= momentum < 1, weight_decay >= 0; got lr={lr}, eta={eta}, "
                f"momentum={momentum}, weight_decay={weight_decay}."
            )
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "eta": eta,
            "eps": eps,
            "lars_exclude": False,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One LARS update of every parameter that has a gradient (fused over tensors of one device/dtype)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            buckets: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
            for p in group["params"]:
                if p.grad is not None:
                    buckets.setdefault((p.device, p.dtype), []).append(p)
            for params in buckets.values():
                self._update(params, group)
        return loss

    def _update(self, params: list[Tensor], group: dict) -> None:
        """u = trust * (g + wd w) (or g when excluded); v <- m v + u; w <- w - lr v, as foreach ops."""
        wd, m, lr = group["weight_decay"], group["momentum"], group["lr"]
        grads: list[Tensor] = [p.grad for p in params if p.grad is not None]
        updates: list[Tensor]
        if group["lars_exclude"]:
            updates = list(grads)
        else:
            w_norm = torch.stack(torch._foreach_norm(params))
            g_norm = torch.stack(torch._foreach_norm(grads))
            denom = g_norm + wd * w_norm + group["eps"]
            trust = torch.where((w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / denom, 1.0)
            fresh = torch._foreach_add(grads, params, alpha=wd) if wd else torch._foreach_mul(grads, 1.0)
            updates = list(fresh)
            factors: list[Tensor] = list(trust.to(params[0].dtype).unbind())
            torch._foreach_mul_(updates, factors)
        if m:  # v <- m v + u for every tensor; a new buffer starts at 0, so the first step gives v = u
            for p in params:
                if "momentum_buffer" not in self.state[p]:
                    self.state[p]["momentum_buffer"] = torch.zeros_like(p)
            bufs = [self.state[p]["momentum_buffer"] for p in params]
            torch._foreach_mul_(bufs, m)
            torch._foreach_add_(bufs, updates)
            updates = bufs
        torch._foreach_add_(params, updates, alpha=-lr)


def is_no_decay(name: str, param: Tensor) -> bool:
    """Biases and normalisation parameters (every tensor of dim <= 1) take no weight decay."""
    return param.ndim <= 1 or name.endswith(".bias")


def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights with ``weight_decay``; biases / norm params with 0 (and excluded from LARS)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if is_no_decay(name, p) else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "lars_exclude": False}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lars_exclude": True})
    return groups


def build_optimizer(module: nn.Module, cfg: OptimConfig) -> Optimizer:
    """The optimizer named by ``cfg.name`` over ``module``'s trainable parameters."""
    groups = param_groups(module, cfg.weight_decay)
    if not any(g["params"] for g in groups):
        raise ConfigError("the model has no trainable parameters; choose a backbone/projector with weights.")
    if cfg.name == "sgd":
        for g in groups:
            g.pop("lars_exclude")
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.name == "lars":
        return LARS(groups, lr=cfg.lr, momentum=cfg.momentum, eta=cfg.lars_eta)
    if cfg.name == "adamw":
        for g in groups:
            g.pop("lars_exclude")
        b1, b2 = (float(b) for b in cfg.betas)
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(b1, b2))
    raise ConfigError(f"optim.name = {cfg.name!r} is not valid. Valid values: {', '.join(OPTIMIZERS)}.")


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_fraction: float = 0.0) -> float:
    """LR multiplier: (step+1)/warmup during warm-up, then f + (1-f)(1 + cos(pi t))/2 with t in [0, 1]."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, max(0.0, (step - warmup_steps) / span))
    return min_fraction + (1.0 - min_fraction) * 0.5 * (1.0 + math.cos(math.pi * t))
