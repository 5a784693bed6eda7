"""SimSiam (Chen & He 2021): predict the other view's embedding under a stop-gradient, no momentum target."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from dimcollapse.objectives.base import Objective, normalize_rows
from dimcollapse.objectives.predictor import Predictor
from dimcollapse.registry import register
from dimcollapse.utils.distributed import global_batch_size, local_share


@register("objective", "simsiam")
class SimSiam(Objective):
    """L = -(1/2)[cos(q(z1), sg z2) + cos(q(z2), sg z1)], mean over the batch; owns the predictor q."""

    needs_dim: ClassVar[bool] = True
    name: ClassVar[str] = "simsiam"

    def __init__(self, dim: int | None = None, hidden_dim: int = 512, sync_bn: bool = True) -> None:
        super().__init__()
        self.predictor = Predictor(dim, hidden_dim, sync_bn=sync_bn)

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        """L = -(1/2N) sum_i [cos(q(z1_i), sg z2_i) + cos(q(z2_i), sg z1_i)], in [-1, 1] (SimSiam eq. 1-2)."""
        self.check_pair(z1, z2, min_rows=2 if self.training else 1)  # the predictor's BN needs 2 rows
        p1, p2 = self.predictor(z1), self.predictor(z2)
        cos12 = (normalize_rows(p1) * normalize_rows(z2.detach())).sum(dim=1)
        cos21 = (normalize_rows(p2) * normalize_rows(z1.detach())).sum(dim=1)
        n_total = global_batch_size(z1.shape[0], z1.device)
        loss = local_share(-(cos12.sum() + cos21.sum()), 2 * n_total)
        with_std = normalize_rows(z1.detach()).std(dim=0).mean() if z1.shape[0] > 1 else z1.new_zeros(())
        self.last_stats = {
            "loss": loss.detach(),
            "pred_cos": (0.5 * (cos12.detach().mean() + cos21.detach().mean())).detach(),
            "z_std": with_std.detach(),
        }
        return loss
