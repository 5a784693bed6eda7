"""MoCo v3 (Chen, Xie, He 2021): a predictor on the online branch, in-batch InfoNCE against momentum keys."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from dimcollapse.objectives.base import Objective, check_positive, normalize_rows
from dimcollapse.objectives.mocov2 import require_targets
from dimcollapse.objectives.predictor import Predictor
from dimcollapse.registry import register
from dimcollapse.utils.distributed import all_gather_with_grad, local_share


def batch_infonce(q: Tensor, keys: Tensor, offset: int, temperature: float) -> Tensor:
    """sum_i CE(q_i keys^T / tau, i + offset): the key of the same image is the positive, rows unit."""
    target = torch.arange(q.shape[0], device=q.device) + offset
    return F.cross_entropy((q @ keys.T) / temperature, target, reduction="sum")


@register("objective", "mocov3")
class MoCoV3(Objective):
    """L = 2 tau [CE(q1 k2^T / tau) + CE(q2 k1^T / tau)], q = normalize(pred(z)), k = normalize(t) (paper
    Algorithm 1: ctr(q1, k2) + ctr(q2, k1)); keys of every process are the negatives under DDP."""

    uses_momentum_target: ClassVar[bool] = True
    needs_dim: ClassVar[bool] = True
    name: ClassVar[str] = "mocov3"

    def __init__(
        self,
        dim: int | None = None,
        hidden_dim: int = 4096,
        temperature: float = 0.2,
        sync_bn: bool = True,
    ) -> None:
        super().__init__()
        check_positive("mocov3", temperature=temperature)
        self.predictor = Predictor(dim, hidden_dim, sync_bn=sync_bn)
        self.temperature = float(temperature)

    def forward(self, z1: Tensor, z2: Tensor, t1: Tensor | None = None, t2: Tensor | None = None) -> Tensor:
        """ctr(q, k) = 2 tau mean_i CE(q_i k^T / tau, i) over the global batch of keys."""
        self.check_pair(z1, z2, min_rows=2 if self.training else 1)  # the predictor's BN needs 2 rows
        t1, t2 = require_targets(self.name, t1, t2, z1)
        q1, q2 = normalize_rows(self.predictor(z1)), normalize_rows(self.predictor(z2))
        keys, offset = all_gather_with_grad(torch.stack([normalize_rows(t1), normalize_rows(t2)], dim=1))
        n_total = keys.shape[0]
        tau = self.temperature
        total = batch_infonce(q1, keys[:, 1], offset, tau) + batch_infonce(q2, keys[:, 0], offset, tau)
        loss = 2 * tau * local_share(total, n_total)
        self.last_stats = {"loss": loss.detach()}
        return loss
