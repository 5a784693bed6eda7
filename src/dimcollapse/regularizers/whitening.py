"""Feature whitening (OR paper table 2): VICReg's variance and covariance terms on representations r.

Under torch.distributed the statistics are those of the global batch (the paper's batch): the returned
value is the global term on every process and the gradient on the local rows is ``world_size`` times the
global one, so DDP's gradient averaging gives the exact gradient (the convention of ``utils/distributed``).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.registry import register
from dimcollapse.regularizers.base import Regularizer
from dimcollapse.utils.distributed import all_reduce_sum, global_batch_size, global_mean, world_size


def _global_centred(r: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(r minus the column mean of the global batch, N = sum of the processes' rows), differentiable."""
    n_total = global_batch_size(r.shape[0], r.device)
    return r - global_mean(r, n_total), n_total


def variance_term(r: torch.Tensor, target_std: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg variance hinge: mean_j max(0, target_std - sqrt(Var(r_j) + eps)) (Bardes et al. 2022);
    Var over the global batch under torch.distributed (unbiased)."""
    if world_size() == 1:
        var = r.var(dim=0)
    else:
        centred, n_total = _global_centred(r)
        var = all_reduce_sum(centred.pow(2).sum(dim=0)) / (n_total - 1)
    std = torch.sqrt(var + eps)
    return torch.relu(target_std - std).mean()


def covariance_term(r: torch.Tensor) -> torch.Tensor:
    """VICReg covariance: (1/D) sum_{i != j} C_ij^2, C the (N-1)-normalised covariance of r (of the
    global batch under torch.distributed)."""
    n, d = r.shape
    if world_size() == 1:
        centred = r - r.mean(dim=0)
        cov = centred.t() @ centred / (n - 1)
    else:
        centred, n_total = _global_centred(r)
        cov = all_reduce_sum(centred.t() @ centred) / (n_total - 1)
    diagonal = torch.eye(d, dtype=torch.bool, device=r.device)
    off = cov.pow(2).masked_fill(diagonal, 0.0).sum()  # not sum - diag: that cancels to < 0 near I
    return off / d


@register("regularizer", "whitening")
class FeatureWhitening(Regularizer):
    """mean over views of (variance_weight * var(r) + covariance_weight * cov(r))."""

    target: ClassVar[Literal["weights", "features"]] = "features"
    default_weight = 1.0

    def __init__(
        self,
        variance_weight: float = 25.0,
        covariance_weight: float = 1.0,
        target_std: float = 1.0,
    ) -> None:
        super().__init__()
        for name, value in (("variance_weight", variance_weight), ("covariance_weight", covariance_weight)):
            if value < 0:
                raise ConfigError(f"whitening {name} must be >= 0, got {value}.")
        if target_std <= 0:
            raise ConfigError(f"whitening target_std must be > 0, got {target_std}.")
        self.variance_weight = float(variance_weight)
        self.covariance_weight = float(covariance_weight)
        self.target_std = float(target_std)

    def forward(
        self, features: list[torch.Tensor], reference: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """VICReg variance + covariance terms of each view's representations (reference unused)."""
        if not features:
            raise InputError("whitening needs at least one batch of representations.")
        if world_size() == 1 and any(r.shape[0] < 2 for r in features):
            raise InputError("whitening needs a batch of at least 2 samples to estimate variances.")
        var = torch.stack([variance_term(r.flatten(1), self.target_std) for r in features]).mean()
        cov = torch.stack([covariance_term(r.flatten(1)) for r in features]).mean()
        raw = self.variance_weight * var + self.covariance_weight * cov
        return self.record(raw, variance=var, covariance=cov)
