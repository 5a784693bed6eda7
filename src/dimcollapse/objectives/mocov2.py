"""MoCo v2+ (He et al. 2020; Chen et al. 2020; solo-learn's symmetric "v2+"): InfoNCE against a queue of
momentum keys. One queue per view, as in solo-learn: queries of view 1 meet the keys of view 2 and the
queue of earlier view-2 keys, and symmetrically."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from dimcollapse.errors import InputError
from dimcollapse.objectives.base import Objective, check_positive, normalize_rows
from dimcollapse.objectives.queue import FeatureQueue
from dimcollapse.registry import register
from dimcollapse.utils.distributed import global_batch_size, local_share


def queue_infonce(q: Tensor, k: Tensor, negatives: Tensor, temperature: float) -> Tensor:
    """sum_i -log( exp(q_i.k_i/tau) / (exp(q_i.k_i/tau) + sum_j exp(q_i.n_j/tau)) ); rows unit vectors."""
    pos = (q * k).sum(dim=1, keepdim=True)
    logits = torch.cat([pos, q @ negatives.T], dim=1) / temperature
    target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, target, reduction="sum")


def require_targets(name: str, t1: Tensor | None, t2: Tensor | None, z1: Tensor) -> tuple[Tensor, Tensor]:
    """(t1, t2) detached, or InputError when a momentum-target objective is called without them."""
    if t1 is None or t2 is None:
        raise InputError(
            f"{name}: needs the momentum target's embeddings, call loss(z1, z2, t1, t2) with t1, t2 the "
            "target network's embeddings of the two views (objective.uses_momentum_target is True)."
        )
    if t1.shape != z1.shape or t2.shape != z1.shape:
        raise InputError(
            f"{name}: target embeddings have shape {tuple(t1.shape)} but online ones {tuple(z1.shape)}; "
            "the target network must be a copy of backbone + projector."
        )
    return t1.detach(), t2.detach()


@register("objective", "mocov2plus")
class MoCoV2Plus(Objective):
    """L = (1/2N) sum_i [l(q1_i, k2_i, Q2) + l(q2_i, k1_i, Q1)], l = InfoNCE with the queue as negatives."""

    uses_momentum_target: ClassVar[bool] = True
    needs_dim: ClassVar[bool] = True
    name: ClassVar[str] = "mocov2plus"

    def __init__(
        self,
        dim: int | None = None,
        temperature: float = 0.2,
        queue_size: int = 65536,
    ) -> None:
        super().__init__()
        check_positive("mocov2plus", temperature=temperature)
        if dim is None:
            raise InputError("mocov2plus: dim (the projector's out_dim) is required for the key queues.")
        self.temperature = float(temperature)
        self.queue1 = FeatureQueue(queue_size, dim)
        self.queue2 = FeatureQueue(queue_size, dim)

    def forward(self, z1: Tensor, z2: Tensor, t1: Tensor | None = None, t2: Tensor | None = None) -> Tensor:
        """q = normalize(z), k = normalize(t) (momentum keys); queues get k1, k2 after the loss (training)."""
        self.check_pair(z1, z2)
        t1, t2 = require_targets(self.name, t1, t2, z1)
        q1, q2, k1, k2 = (normalize_rows(x) for x in (z1, z2, t1, t2))
        neg1, neg2 = self.queue1.values().to(q1.dtype), self.queue2.values().to(q1.dtype)
        total = queue_infonce(q1, k2, neg2, self.temperature) + queue_infonce(q2, k1, neg1, self.temperature)
        loss = local_share(total, 2 * global_batch_size(z1.shape[0], z1.device))
        if self.training:
            self.queue1.push(k1)
            self.queue2.push(k2)
        with torch.no_grad():
            pos = 0.5 * ((q1 * k2).sum(1).mean() + (q2 * k1).sum(1).mean())
        self.last_stats = {"loss": loss.detach(), "pos_sim": pos.detach()}
        return loss
