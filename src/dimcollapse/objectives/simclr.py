"""NT-Xent (SimCLR, Chen et al. 2020): InfoNCE over the 2N embeddings of two views."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from dimcollapse.objectives.base import Objective, check_positive, normalize_rows
from dimcollapse.registry import register
from dimcollapse.utils.distributed import all_gather_with_grad, local_share


@register("objective", "simclr")
class NTXent(Objective):
    """SimCLR's NT-Xent loss; under DDP the negatives are the embeddings of every process."""

    name: ClassVar[str] = "simclr"

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
        check_positive("simclr", temperature=temperature)
        self.temperature = float(temperature)

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        """L = -(1/2N) sum_i log( exp(s_i,p(i)/tau) / sum_{k != i} exp(s_ik/tau) ), s = cosine, 2N rows."""
        self.check_pair(z1, z2, min_rows=1)
        n = z1.shape[0]
        a1, a2 = normalize_rows(z1), normalize_rows(z2)
        gathered, offset = all_gather_with_grad(torch.stack([a1, a2], dim=1))  # [N, 2, d]
        n_total = gathered.shape[0]
        keys = torch.cat([gathered[:, 0], gathered[:, 1]], dim=0)  # global order: view 1 rows, view 2 rows
        anchors = torch.cat([a1, a2], dim=0)  # [2n, d]
        logits = (anchors / self.temperature) @ keys.T  # [2n, 2N]
        local = torch.arange(n, device=z1.device) + offset
        self_idx = torch.cat([local, local + n_total])
        pos_idx = torch.cat([local + n_total, local])
        # an embedding is not its own negative: -inf at its own column (scatter: O(n), no dense mask)
        logits = logits.scatter(1, self_idx.unsqueeze(1), float("-inf"))
        loss = local_share(F.cross_entropy(logits, pos_idx, reduction="sum"), 2 * n_total)
        with torch.no_grad():
            pos_sum = (a1 * a2).sum()
            # sum of all cosines = (sum of anchors) . (sum of keys); remove self and positive pairs
            neg_sum = anchors.sum(0) @ keys.sum(0) - (anchors * anchors).sum() - 2 * pos_sum
            neg_sim = neg_sum / (2 * n * (2 * n_total - 2)) if n_total > 1 else pos_sum * 0
            pos_sim = pos_sum / n
        self.last_stats = {
            "loss": loss.detach(),
            "pos_sim": pos_sim.detach(),
            "neg_sim": neg_sim.detach(),
        }
        return loss
