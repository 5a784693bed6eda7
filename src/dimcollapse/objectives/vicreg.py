"""VICReg (Bardes, Ponce, LeCun 2022): invariance + variance hinge + covariance decorrelation."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from dimcollapse.errors import InputError
from dimcollapse.objectives.base import Objective, check_nonnegative, check_positive, full_precision
from dimcollapse.registry import register
from dimcollapse.utils.distributed import all_reduce_sum, global_batch_size, global_mean


def _variance_covariance(z: Tensor, n_total: int, eps: float) -> tuple[Tensor, Tensor]:
    """(mean_j relu(1 - sqrt(Var_j + eps)), sum_{i!=j} Cov_ij^2 / d) (unbiased, global batch)."""
    centred = z - global_mean(z, n_total)
    cov = all_reduce_sum(centred.T @ centred) / (n_total - 1)
    var = torch.diagonal(cov)
    std_term = F.relu(1 - torch.sqrt(var + eps)).mean()
    cov_term = (cov.pow(2).sum() - var.pow(2).sum()) / z.shape[1]
    return std_term, cov_term


@register("objective", "vicreg")
class VICReg(Objective):
    """L = sim * MSE(z1, z2) + var * (v(z1) + v(z2)) / 2 + cov * (c(z1) + c(z2)) (VICReg eq. 1-6)."""

    name: ClassVar[str] = "vicreg"

    def __init__(
        self, sim_coeff: float = 25.0, std_coeff: float = 25.0, cov_coeff: float = 1.0, eps: float = 1e-4
    ) -> None:
        super().__init__()
        check_nonnegative("vicreg", sim_coeff=sim_coeff, std_coeff=std_coeff, cov_coeff=cov_coeff)
        check_positive("vicreg", eps=eps)
        self.sim_coeff = float(sim_coeff)
        self.std_coeff = float(std_coeff)
        self.cov_coeff = float(cov_coeff)
        self.eps = float(eps)

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        """inv = mean (z1 - z2)^2; v = mean_j relu(1 - sqrt(Var_j + eps)); c = sum_{i!=j} Cov_ij^2 / d."""
        self.check_pair(z1, z2, min_rows=1)
        z1, z2 = full_precision(z1), full_precision(z2)
        n_total = global_batch_size(z1.shape[0], z1.device)
        if n_total < 2:
            raise InputError("vicreg: needs a batch of at least 2 rows for the variance term; increase it.")
        invariance = all_reduce_sum((z1 - z2).pow(2).sum()) / (n_total * z1.shape[1])
        v1, c1 = _variance_covariance(z1, n_total, self.eps)
        v2, c2 = _variance_covariance(z2, n_total, self.eps)
        variance = (v1 + v2) / 2
        covariance = c1 + c2
        loss = self.sim_coeff * invariance + self.std_coeff * variance + self.cov_coeff * covariance
        self.last_stats = {
            "loss": loss.detach(),
            "invariance": invariance.detach(),
            "variance": variance.detach(),
            "covariance": covariance.detach(),
        }
        return loss
