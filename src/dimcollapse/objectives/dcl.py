"""DCL, decoupled contrastive learning (Yeh et al. 2022): NT-Xent without the positive in the denominator."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from dimcollapse.objectives.base import Objective, check_positive, normalize_rows
from dimcollapse.registry import register
from dimcollapse.utils.distributed import all_gather_with_grad, local_share


@register("objective", "dcl")
class DCL(Objective):
    """L = (1/2N) sum_i [-s_i,p(i)/tau + log sum_{k != i, p(i)} exp(s_ik/tau)], s cosine over the 2N rows."""

    name: ClassVar[str] = "dcl"

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        check_positive("dcl", temperature=temperature)
        self.temperature = float(temperature)

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        """Negatives: the other 2N - 2 embeddings of every process; the positive only in the numerator."""
        self.check_pair(z1, z2)
        n = z1.shape[0]
        a1, a2 = normalize_rows(z1), normalize_rows(z2)
        gathered, offset = all_gather_with_grad(torch.stack([a1, a2], dim=1))
        n_total = gathered.shape[0]
        keys = torch.cat([gathered[:, 0], gathered[:, 1]], dim=0)
        anchors = torch.cat([a1, a2], dim=0)
        logits = (anchors / self.temperature) @ keys.T
        local = torch.arange(n, device=z1.device) + offset
        self_idx = torch.cat([local, local + n_total]).unsqueeze(1)
        pos_idx = torch.cat([local + n_total, local]).unsqueeze(1)
        positive = logits.gather(1, pos_idx).squeeze(1)
        negatives = logits.scatter(1, self_idx, float("-inf")).scatter(1, pos_idx, float("-inf"))
        loss = local_share((torch.logsumexp(negatives, dim=1) - positive).sum(), 2 * n_total)
        self.last_stats = {"loss": loss.detach()}
        return loss
