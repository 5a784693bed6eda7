"""NNBYOL (solo-learn; Dwibedi et al. 2021 with BYOL): BYOL whose targets are replaced by their nearest
neighbours in a queue of earlier (normalised) target embeddings."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from dimcollapse.errors import InputError
from dimcollapse.objectives.base import normalize_rows
from dimcollapse.objectives.byol import BYOL
from dimcollapse.objectives.mocov2 import require_targets
from dimcollapse.objectives.nnclr import nearest_neighbour
from dimcollapse.objectives.queue import FeatureQueue
from dimcollapse.registry import register


@register("objective", "nnbyol")
class NNBYOL(BYOL):
    """L = (1/2N) sum_i [2 - 2 cos(q(z1_i), NN(t2_i)) + 2 - 2 cos(q(z2_i), NN(t1_i))]; queue gets t1."""

    uses_momentum_target: ClassVar[bool] = True
    needs_dim: ClassVar[bool] = True
    name: ClassVar[str] = "nnbyol"

    def __init__(
        self,
        dim: int | None = None,
        hidden_dim: int = 4096,
        queue_size: int = 65536,
        sync_bn: bool = True,
    ) -> None:
        super().__init__(dim, hidden_dim, sync_bn)
        if dim is None:
            raise InputError("nnbyol: dim (the projector's out_dim) is required for the support queue.")
        self.support = FeatureQueue(queue_size, dim)

    def forward(self, z1: Tensor, z2: Tensor, t1: Tensor | None = None, t2: Tensor | None = None) -> Tensor:
        """BYOL's loss with t -> NN(normalize(t)) from the queue; the queue gets normalize(t1) (training)."""
        self.check_pair(z1, z2)
        t1, t2 = require_targets(self.name, t1, t2, z1)
        k1, k2 = normalize_rows(t1), normalize_rows(t2)
        support = self.support.values().to(k1.dtype)
        loss = super().forward(z1, z2, nearest_neighbour(k1, support), nearest_neighbour(k2, support))
        if self.training:
            self.support.push(k1)
        return loss
