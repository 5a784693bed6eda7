"""SIGReg (LeJEPA, Balestriero & LeCun 2025): sketched isotropic Gaussian regularization. The features are
projected on M random unit directions; each 1-D projection is compared with N(0, 1) by the Epps-Pulley
statistic, a weighted L2 distance between its empirical characteristic function and exp(-t^2 / 2)."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.registry import register
from dimcollapse.regularizers.base import Regularizer
from dimcollapse.utils.distributed import all_reduce_sum, broadcast_from_rank0, global_batch_size


def trapezoid_knots(knots: int, t_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(t_k, w_k): knots 0..t_max and weights of int_{-t_max}^{t_max} f(t) e^{-t^2/2} dt for even f
    (twice the trapezoid rule on [0, t_max], times the Gaussian window)."""
    t = torch.linspace(0.0, t_max, knots, dtype=torch.float64)
    dt = t_max / (knots - 1)
    w = torch.full((knots,), 2 * dt, dtype=torch.float64)
    w[0] = w[-1] = dt
    return t, w * torch.exp(-t.square() / 2)


def epps_pulley(
    x: torch.Tensor, directions: torch.Tensor, knots: int = 17, t_max: float = 3.0
) -> torch.Tensor:
    """mean_m N int w(t) |phi_m(t) - e^{-t^2/2}|^2 dt, phi_m(t) = (1/N) sum_i exp(i t x_i . a_m)."""
    t, w = (v.to(dtype=x.dtype, device=x.device) for v in trapezoid_knots(knots, t_max))
    n_total = global_batch_size(x.shape[0], x.device)
    xt = (x @ directions).unsqueeze(-1) * t  # [N, M, T]
    cos_mean = all_reduce_sum(xt.cos().sum(0)) / n_total
    sin_mean = all_reduce_sum(xt.sin().sum(0)) / n_total
    err = (cos_mean - torch.exp(-t.square() / 2)).square() + sin_mean.square()  # [M, T]
    return (n_total * (err @ w)).mean()


def random_directions(dim: int, m: int, like: torch.Tensor) -> torch.Tensor:
    """M unit columns [dim, M] from the global torch RNG (rank 0's under DDP, so all processes agree)."""
    a = broadcast_from_rank0(torch.randn(dim, m, dtype=like.dtype).to(like.device))
    return a / a.norm(dim=0, keepdim=True)


@register("regularizer", "sigreg")
class SIGReg(Regularizer):
    """mean over views of epps_pulley(r_v, A), A new random unit directions at every call
    (LeJEPA: 1024 slices, 17 knots on [0, 3]); the batch statistics are global under DDP."""

    target: ClassVar[Literal["weights", "features"]] = "features"
    default_weight = 0.05

    def __init__(
        self,
        num_directions: int = 1024,
        knots: int = 17,
        t_max: float = 3.0,
    ) -> None:
        super().__init__()
        if int(num_directions) < 1 or int(knots) < 2 or not t_max > 0:
            raise ConfigError(
                f"sigreg needs num_directions >= 1, knots >= 2, t_max > 0, got {num_directions}, {knots}, "
                f"{t_max}."
            )
        self.num_directions, self.knots, self.t_max = int(num_directions), int(knots), float(t_max)

    def forward(
        self, features: list[torch.Tensor], reference: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """SIGReg statistic of each view's representations (reference unused)."""
        if not features or any(r.shape[0] < 2 for r in features):
            raise InputError("sigreg needs at least one batch of >= 2 representations.")
        terms = []
        for r in features:
            x = r.flatten(1).float() if r.dtype in (torch.float16, torch.bfloat16) else r.flatten(1)
            a = random_directions(x.shape[1], self.num_directions, x)
            terms.append(epps_pulley(x, a, self.knots, self.t_max))
        raw = torch.stack(terms).mean()
        return self.record(raw)
