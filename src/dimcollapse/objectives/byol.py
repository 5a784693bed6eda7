"""BYOL (Grill et al. 2020): predict the momentum target's embedding of the other view."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from dimcollapse.errors import InputError
from dimcollapse.objectives.base import Objective, normalize_rows
from dimcollapse.objectives.predictor import Predictor
from dimcollapse.registry import register
from dimcollapse.utils.distributed import global_batch_size, local_share


@register("objective", "byol")
class BYOL(Objective):
    """loss(z1, z2, t1, t2) = mean over views of 2 - 2 cos(q(z_v), sg t_other); owns the predictor q."""

    uses_momentum_target: ClassVar[bool] = True
    needs_dim: ClassVar[bool] = True
    name: ClassVar[str] = "byol"

    def __init__(
        self,
        dim: int | None = None,
        hidden_dim: int = 4096,
        sync_bn: bool = True,
    ) -> None:
        super().__init__()
        self.predictor = Predictor(dim, hidden_dim, sync_bn=sync_bn)

    def forward(self, z1: Tensor, z2: Tensor, t1: Tensor | None = None, t2: Tensor | None = None) -> Tensor:
        """L = (1/2N) sum_i [(2 - 2 cos(q(z1_i), t2_i)) + (2 - 2 cos(q(z2_i), t1_i))], sg t; in [0, 4]."""
        if t1 is None or t2 is None:
            raise InputError(
                "byol: needs the momentum target's embeddings, call loss(z1, z2, t1, t2) with t1, t2 the "
                "target network's embeddings of the two views (objective.uses_momentum_target is True)."
            )
        self.check_pair(z1, z2, min_rows=2 if self.training else 1)  # the predictor's BN needs 2 rows
        self.check_pair(t1, t2)
        if t1.shape != z1.shape:
            raise InputError(
                f"byol: target embeddings have shape {tuple(t1.shape)} but online ones {tuple(z1.shape)}; "
                "the target network must be a copy of backbone + projector."
            )
        p1, p2 = self.predictor(z1), self.predictor(z2)
        cos12 = (normalize_rows(p1) * normalize_rows(t2.detach())).sum(dim=1)
        cos21 = (normalize_rows(p2) * normalize_rows(t1.detach())).sum(dim=1)
        n_total = global_batch_size(z1.shape[0], z1.device)
        loss = local_share((2 - 2 * cos12).sum() + (2 - 2 * cos21).sum(), 2 * n_total)
        self.last_stats = {
            "loss": loss.detach(),
            "pred_target_cos": (0.5 * (cos12.detach().mean() + cos21.detach().mean())).detach(),
        }
        return loss
