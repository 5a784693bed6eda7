"""Batch normalisation with the statistics of the global batch under DDP (synced BN on any device).

torch's ``nn.SyncBatchNorm`` refuses CPU tensors; these classes work with gloo on CPU as well as on
GPUs, and reduce to plain ``nn.BatchNorm1d`` / ``nn.BatchNorm2d`` when not distributed.
"""

from __future__ import annotations

from typing import TypeVar, cast

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from dimcollapse.utils.distributed import all_reduce_sum, global_batch_size, is_distributed

M = TypeVar("M", bound=nn.Module)


def global_batch_norm(bn: _BatchNorm, x: Tensor) -> Tensor:
    """y = (x - mu) / sqrt(var + eps) * gamma + beta with mu, biased var over all processes' (N, H, W)."""
    dims = [0, *range(2, x.dim())]
    shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
    n_total = global_batch_size(x.numel() // x.shape[1], x.device)
    mean = all_reduce_sum(x.sum(dim=dims)) / n_total
    centred = x - mean.view(shape)
    var = all_reduce_sum(centred.pow(2).sum(dim=dims)) / n_total
    if bn.training and bn.track_running_stats and bn.running_mean is not None and bn.running_var is not None:
        with torch.no_grad():
            assert bn.num_batches_tracked is not None
            bn.num_batches_tracked.add_(1)
            m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
            bn.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            bn.running_var.mul_(1 - m).add_(var.detach() * (n_total / max(n_total - 1, 1)), alpha=m)
    out = centred / torch.sqrt(var + bn.eps).view(shape)
    if bn.affine:
        out = out * bn.weight.view(shape) + bn.bias.view(shape)
    return out


def _uses_batch_statistics(bn: _BatchNorm) -> bool:
    return bn.training or bn.running_mean is None or bn.running_var is None


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """nn.BatchNorm1d whose batch statistics are those of the global batch under DDP."""

    def forward(self, x: Tensor) -> Tensor:
        if is_distributed() and _uses_batch_statistics(self):
            self._check_input_dim(x)
            return global_batch_norm(self, x)
        return super().forward(x)


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d whose batch statistics are those of the global batch under DDP."""

    def forward(self, x: Tensor) -> Tensor:
        if is_distributed() and _uses_batch_statistics(self):
            self._check_input_dim(x)
            return global_batch_norm(self, x)
        return super().forward(x)


def convert_to_global_batchnorm(module: M) -> M:
    """Replace every nn.BatchNorm1d / 2d in ``module`` by its global-batch twin (same parameters/buffers)."""
    if type(module) in (nn.BatchNorm1d, nn.BatchNorm2d):
        assert isinstance(module, _BatchNorm)
        cls = GlobalBatchNorm1d if isinstance(module, nn.BatchNorm1d) else GlobalBatchNorm2d
        like = next(iter([*module.parameters(), *module.buffers()]), None)
        new = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if like is not None:
            new = new.to(device=like.device, dtype=like.dtype if like.is_floating_point() else None)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return cast(M, new)  # a subclass of the BatchNorm it replaces
    for name, child in module.named_children():
        replaced = convert_to_global_batchnorm(child)
        if replaced is not child:
            setattr(module, name, replaced)
    return module
