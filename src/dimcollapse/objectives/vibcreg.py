"""VIbCReg (Lee & Aune 2021): VICReg with the covariance term on the *normalised* covariance (correlation)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from dimcollapse.errors import InputError
from dimcollapse.objectives.base import Objective, check_nonnegative, check_positive, full_precision
from dimcollapse.registry import register
from dimcollapse.utils.distributed import all_reduce_sum, global_batch_size, global_mean


def _variance_correlation(z: Tensor, n_total: int, eps: float) -> tuple[Tensor, Tensor]:
    """(mean_j relu(1 - sqrt(Var_j + eps)), (1/d^2) sum_{i!=j} Corr_ij^2) over the global batch."""
    centred = z - global_mean(z, n_total)
    gram = all_reduce_sum(centred.T @ centred)  # sum_b c_bi c_bj
    var = torch.diagonal(gram) / (n_total - 1)
    std_term = F.relu(1 - torch.sqrt(var + eps)).mean()
    norms = torch.sqrt(torch.diagonal(gram)).clamp_min(1e-12)  # column norms of the centred batch
    corr = gram / (norms[:, None] * norms[None, :])
    d = z.shape[1]
    corr_term = (corr.pow(2).sum() - torch.diagonal(corr).pow(2).sum()) / (d * d)
    return std_term, corr_term


@register("objective", "vibcreg")
class VIbCReg(Objective):
    """L = sim * MSE(z1, z2) + var * (v(z1) + v(z2)) + cov * (c(z1) + c(z2)), v the VICReg std hinge,
    c(z) = (1/d^2) sum_{i != j} Corr(z)_ij^2 (VIbCReg eq. 2-4; coefficients 25, 25, 200)."""

    name: ClassVar[str] = "vibcreg"

    def __init__(
        self, sim_coeff: float = 25.0, std_coeff: float = 25.0, cov_coeff: float = 200.0, eps: float = 1e-4
    ) -> None:
        super().__init__()
        check_nonnegative("vibcreg", sim_coeff=sim_coeff, std_coeff=std_coeff, cov_coeff=cov_coeff)
        check_positive("vibcreg", eps=eps)
        self.coeffs = (float(sim_coeff), float(std_coeff), float(cov_coeff))
        self.eps = float(eps)

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        """inv = mean (z1 - z2)^2 (global batch); v, c per view, summed over the two views."""
        self.check_pair(z1, z2)
        z1, z2 = full_precision(z1), full_precision(z2)
        n_total = global_batch_size(z1.shape[0], z1.device)
        if n_total < 2:
            raise InputError("vibcreg: needs a batch of at least 2 rows for the variance term; increase it.")
        invariance = all_reduce_sum((z1 - z2).pow(2).sum()) / (n_total * z1.shape[1])
        v1, c1 = _variance_correlation(z1, n_total, self.eps)
        v2, c2 = _variance_correlation(z2, n_total, self.eps)
        sim, std, cov = self.coeffs
        loss = sim * invariance + std * (v1 + v2) + cov * (c1 + c2)
        self.last_stats = {
            "loss": loss.detach(),
            "invariance": invariance.detach(),
            "variance": (v1 + v2).detach(),
            "correlation": (c1 + c2).detach(),
        }
        return loss
