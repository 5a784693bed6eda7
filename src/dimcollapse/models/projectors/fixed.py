"""Fixed (non-trainable) projectors of SPEC section 3: fixed low-rank and fixed low-rank diagonal."""

from __future__ import annotations

import torch
from torch import nn

from dimcollapse.models.projectors.checks import check_d0, check_dim, check_input
from dimcollapse.registry import register


def random_orthogonal(n: int, generator: torch.Generator) -> torch.Tensor:
    """Haar-random orthogonal n x n matrix: Q R = G (Gaussian), Q * sign(diag R) (Mezzadri 2007)."""
    g = torch.randn(n, n, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    return (q * torch.sign(torch.diagonal(r))).to(torch.float32)


@register("projector", "fixed_lowrank")
class FixedLowRankProjector(nn.Module):
    """z = U diag(1 x d0, 0 x (D - d0)) V^T r with fixed random orthogonal U, V (DC table 2)."""

    u: torch.Tensor
    v: torch.Tensor
    matrix: torch.Tensor

    def __init__(self, in_dim: int, d0: int, seed: int = 0) -> None:
        super().__init__()
        self.in_dim = check_dim("fixed_lowrank", in_dim, "in_dim")
        self.d0 = check_d0("fixed_lowrank", d0, self.in_dim)
        self.out_dim = self.in_dim
        gen = torch.Generator().manual_seed(int(seed))
        u = random_orthogonal(self.in_dim, gen)
        v = random_orthogonal(self.in_dim, gen)
        # Buffers, not parameters: saved in the state dict, moved with .to(), never trained.
        self.register_buffer("u", u)
        self.register_buffer("v", v)
        self.register_buffer("matrix", u[:, : self.d0] @ v[:, : self.d0].T)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """z = M r with M = U_{:, :d0} V_{:, :d0}^T (rank d0)."""
        check_input("fixed_lowrank", r, self.in_dim)
        return r @ self.matrix.T.to(r.dtype)


@register("projector", "fixed_lowrank_diagonal")
class FixedLowRankDiagonalProjector(nn.Module):
    """z = r[:, :d0] (= diag(1 x d0, 0) r without the zero rows; DirectCLR, DC section 6)."""

    def __init__(self, in_dim: int, d0: int) -> None:
        super().__init__()
        self.in_dim = check_dim("fixed_lowrank_diagonal", in_dim, "in_dim")
        self.d0 = check_d0("fixed_lowrank_diagonal", d0, self.in_dim)
        self.out_dim = self.d0

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """z = r[:, :d0]."""
        check_input("fixed_lowrank_diagonal", r, self.in_dim)
        return r[:, : self.d0]
