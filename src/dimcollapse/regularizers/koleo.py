"""KoLeo (Sablayrolles et al. 2019, "Spreading vectors for similarity search"; DINOv2 eq. 2): the
Kozachenko-Leonenko differential-entropy estimator, which spreads the l2-normalised features uniformly."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.registry import register
from dimcollapse.regularizers.base import Regularizer


def koleo_term(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """-(1/N) sum_i log(min_{j != i} ||u_i - u_j|| + eps), u = x / ||x|| (rows)."""
    u = F.normalize(x.flatten(1), dim=1, eps=eps)
    with torch.no_grad():
        sim = u @ u.T
        sim.fill_diagonal_(-3.0)  # never its own neighbour
        nn_idx = sim.argmax(dim=1)  # nearest on the sphere = largest cosine
    dist = (u - u[nn_idx]).norm(dim=1)
    return -torch.log(dist + eps).mean()


@register("regularizer", "koleo")
class KoLeo(Regularizer):
    """mean over views of koleo_term(r_v) (DINOv2 uses 0.1 on the class token; per-process
    batch under DDP, as DINOv2)."""

    target: ClassVar[Literal["weights", "features"]] = "features"
    default_weight = 0.1

    def __init__(
        self,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        if not eps > 0:
            raise ConfigError(f"koleo eps must be > 0, got {eps!r}.")
        self.eps = float(eps)

    def forward(
        self, features: list[torch.Tensor], reference: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """KoLeo term of each view's representations (reference unused)."""
        if not features or any(r.shape[0] < 2 for r in features):
            raise InputError("koleo needs at least one batch of >= 2 representations (a nearest neighbour).")
        raw = torch.stack([koleo_term(r, self.eps) for r in features]).mean()
        return self.record(raw)
