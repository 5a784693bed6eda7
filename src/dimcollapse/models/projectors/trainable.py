"""Trainable projectors of SPEC section 3: none, linear, mlp (SimCLR), diagonal."""

from __future__ import annotations

import torch
from torch import nn

from dimcollapse.errors import ConfigError
from dimcollapse.models.projectors.checks import check_dim, check_input
from dimcollapse.registry import register


@register("projector", "none")
class IdentityProjector(nn.Module):
    """z = r (no projector; DC table 1 'no projector')."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.in_dim = check_dim("none", in_dim, "in_dim")
        self.out_dim = self.in_dim

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """z = r."""
        check_input("none", r, self.in_dim)
        return r


@register("projector", "linear")
class LinearProjector(nn.Module):
    """z = W r (+ b if bias), W in R^{out_dim x D} trainable (DC table 1 'linear projector')."""

    def __init__(self, in_dim: int, out_dim: int | None = None, bias: bool = False) -> None:
        super().__init__()
        self.in_dim = check_dim("linear", in_dim, "in_dim")
        self.out_dim = check_dim("linear", in_dim if out_dim is None else out_dim, "out_dim")
        self.linear = nn.Linear(self.in_dim, self.out_dim, bias=bias)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """z = W r."""
        check_input("linear", r, self.in_dim)
        return self.linear(r)


@register("projector", "mlp")
class MLPProjector(nn.Module):
    """SimCLR projector: (Linear-BN-ReLU) x (depth-1), then Linear(-BN) (Chen et al. 2020)."""

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 2048,
        out_dim: int = 128,
        depth: int = 2,
        last_bn: bool = True,
    ) -> None:
        super().__init__()
        self.in_dim = check_dim("mlp", in_dim, "in_dim")
        hidden = check_dim("mlp", hidden_dim, "hidden_dim")
        self.out_dim = check_dim("mlp", out_dim, "out_dim")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ConfigError(f"projector mlp: depth (number of Linear layers) must be >= 1, got {depth!r}.")
        layers: list[nn.Module] = []
        d = self.in_dim
        for _ in range(depth - 1):
            layers += [nn.Linear(d, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
            d = hidden
        layers.append(nn.Linear(d, self.out_dim, bias=not last_bn))
        if last_bn:
            layers.append(nn.BatchNorm1d(self.out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """z = MLP(r)."""
        check_input("mlp", r, self.in_dim)
        return self.net(r)


@register("projector", "diagonal")
class DiagonalProjector(nn.Module):
    """z = diag(s) r with s in R^D trainable, initialised to ``init`` (DC table 2 'diagonal')."""

    def __init__(self, in_dim: int, init: float = 1.0) -> None:
        super().__init__()
        self.in_dim = check_dim("diagonal", in_dim, "in_dim")
        self.out_dim = self.in_dim
        self.scale = nn.Parameter(torch.full((self.in_dim,), float(init)))

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """z_i = s_i r_i."""
        check_input("diagonal", r, self.in_dim)
        return r * self.scale
