"""VIbCReg's projector (Lee & Aune 2021): the MLP without a last BatchNorm, then IterNorm whitening."""

from __future__ import annotations

import torch
from torch import nn

from dimcollapse.models.iternorm import IterNorm
from dimcollapse.models.projectors.checks import check_input
from dimcollapse.models.projectors.trainable import MLPProjector
from dimcollapse.registry import register


@register("projector", "vibcreg")
class VIbCRegProjector(nn.Module):
    """z = IterNorm(MLP(r)): (Linear-BN-ReLU) x (depth-1), Linear, then group-wise IterNorm whitening.

    Defaults are VIbCReg's (3 Linear layers, IterNorm with 64 groups, T = 5 iterations, affine). IterNorm
    whitens the batch it receives: the training module sends the views of one size through the network
    in one batch, so (as for the BatchNorm layers) the statistics are those of the views together.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 2048,
        out_dim: int = 2048,
        depth: int = 3,
        groups: int = 64,
        iterations: int = 5,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
    ) -> None:
        super().__init__()
        self.mlp = MLPProjector(in_dim, hidden_dim=hidden_dim, out_dim=out_dim, depth=depth, last_bn=False)
        self.in_dim, self.out_dim = self.mlp.in_dim, self.mlp.out_dim
        self.iternorm = IterNorm(out_dim, groups, iterations, eps=eps, momentum=momentum, affine=affine)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """z = IterNorm(MLP(r))."""
        check_input("vibcreg", r, self.in_dim)
        out: torch.Tensor = self.iternorm(self.mlp(r))
        return out
