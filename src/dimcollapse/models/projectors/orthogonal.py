"""Orthogonal projector: z = W r with W W^T = I kept by torch's orthogonal parametrisation."""

from __future__ import annotations

from typing import Literal, cast

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrizations

from dimcollapse.errors import ConfigError
from dimcollapse.models.projectors.checks import check_dim, check_input
from dimcollapse.registry import register

OrthogonalMap = Literal["matrix_exp", "cayley"]


@register("projector", "orthogonal")
class OrthogonalProjector(nn.Module):
    """z = W r, W in R^{out_dim x D} with orthonormal rows: W = exp(A) or Cayley (I - A/2)^-1 (I + A/2).

    The parameter (skew A, via torch's orthogonal parametrisation) is held in ``compute_dtype``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int | None = None,
        orthogonal_map: OrthogonalMap = "matrix_exp",
        compute_dtype: Literal["float32", "float64"] = "float64",
    ) -> None:
        super().__init__()
        self.in_dim = check_dim("orthogonal", in_dim, "in_dim")
        self.out_dim = check_dim("orthogonal", in_dim if out_dim is None else out_dim, "out_dim")
        if self.out_dim > self.in_dim:
            raise ConfigError(
                f"projector orthogonal: out_dim = {self.out_dim} > in_dim = {self.in_dim}; "
                "rows of W can only be orthonormal when out_dim <= in_dim."
            )
        if orthogonal_map not in ("matrix_exp", "cayley"):
            raise ConfigError(
                f"projector orthogonal: unknown orthogonal_map '{orthogonal_map}'. Valid: cayley, matrix_exp."
            )
        if compute_dtype not in ("float32", "float64"):
            raise ConfigError(
                f"projector orthogonal: compute_dtype must be float32 or float64, got '{compute_dtype}'."
            )
        self.orthogonal_map = orthogonal_map
        # float64 by default: in float32 exp(A) drifts from orthogonal by ~1e-5 after a few large steps;
        # float64 keeps W W^T = I to ~1e-13 at ~2x the cost of the D x D matrix exponential.
        dtype = torch.float64 if compute_dtype == "float64" else torch.float32
        linear = nn.Linear(self.in_dim, self.out_dim, bias=False, dtype=dtype)
        self.linear = parametrizations.orthogonal(linear, orthogonal_map=orthogonal_map)

    @property
    def weight(self) -> torch.Tensor:
        """The current (orthogonal) matrix W."""
        return cast(torch.Tensor, self.linear.weight)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """z = W r."""
        check_input("orthogonal", r, self.in_dim)
        return F.linear(r, self.weight.to(r.dtype))
