"""Feature whitening (OR paper table 2): VICReg's variance and covariance terms on representations r."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.registry import register
from dimcollapse.regularizers.base import Regularizer


def variance_term(r: torch.Tensor, target_std: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg variance hinge: mean_j max(0, target_std - sqrt(Var(r_j) + eps)) (Bardes et al. 2022)."""
    std = torch.sqrt(r.var(dim=0) + eps)
    return torch.relu(target_std - std).mean()


def covariance_term(r: torch.Tensor) -> torch.Tensor:
    """VICReg covariance: (1/D) sum_{i != j} C_ij^2, C the (N-1)-normalised covariance of r."""
    n, d = r.shape
    centred = r - r.mean(dim=0)
    cov = centred.t() @ centred / (n - 1)
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
        if any(r.shape[0] < 2 for r in features):
            raise InputError("whitening needs a batch of at least 2 samples to estimate variances.")
        var = torch.stack([variance_term(r.flatten(1), self.target_std) for r in features]).mean()
        cov = torch.stack([covariance_term(r.flatten(1)) for r in features]).mean()
        raw = self.variance_weight * var + self.covariance_weight * cov
        return self.record(raw, variance=var, covariance=cov)
