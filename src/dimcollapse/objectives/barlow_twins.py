"""Barlow Twins (Zbontar et al. 2021): drive the views' cross-correlation to the identity."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from dimcollapse.errors import InputError
from dimcollapse.objectives.base import Objective, check_nonnegative, check_positive, full_precision
from dimcollapse.registry import register
from dimcollapse.utils.distributed import (
    all_reduce_sum,
    global_batch_size,
    global_cross_moment,
    global_mean,
)


@register("objective", "barlow_twins")
class BarlowTwins(Objective):
    """L = scale * [sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2], C from batch-standardised views."""

    name: ClassVar[str] = "barlow_twins"

    def __init__(self, lambd: float = 5e-3, scale: float = 1.0, eps: float = 1e-5) -> None:
        super().__init__()
        check_nonnegative("barlow_twins", lambd=lambd)
        check_positive("barlow_twins", scale=scale, eps=eps)
        self.lambd = float(lambd)
        self.scale = float(scale)
        self.eps = float(eps)

    def _standardise(self, z: Tensor, n_total: int) -> Tensor:
        """(z - mean) / sqrt(var + eps) per column over the global batch, biased variance (as BatchNorm)."""
        centred = z - global_mean(z, n_total)
        var = all_reduce_sum(centred.pow(2).sum(dim=0)) / n_total
        return centred / torch.sqrt(var + self.eps)

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        """C = (1/N) sum_b zn1_b zn2_b^T; L = scale (sum_i (1 - C_ii)^2 + lambda sum_{i!=j} C_ij^2)."""
        self.check_pair(z1, z2, min_rows=1)
        n_total = global_batch_size(z1.shape[0], z1.device)
        if n_total < 2:
            raise InputError("barlow_twins: needs a batch of at least 2 rows to standardise; increase it.")
        c = global_cross_moment(
            self._standardise(full_precision(z1), n_total),
            self._standardise(full_precision(z2), n_total),
            n_total,
        )
        diag = torch.diagonal(c)
        on_diag = (1 - diag).pow(2).sum()
        off_diag = c.pow(2).sum() - diag.pow(2).sum()
        loss = self.scale * (on_diag + self.lambd * off_diag)
        self.last_stats = {
            "loss": loss.detach(),
            "on_diag": on_diag.detach(),
            "off_diag": off_diag.detach(),
            "mean_diag_corr": (diag.detach().mean()).detach(),
        }
        return loss
