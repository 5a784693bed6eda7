"""ReSSL (Zheng et al. 2021): the student's relation (softmax of similarities to a queue of teacher
embeddings) of a strongly augmented view matches the sharper teacher relation of a weakly augmented view.
View 1 is the strong view (student), view 2 the weak one (teacher): give them those augmentations."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from dimcollapse.errors import InputError
from dimcollapse.objectives.base import Objective, check_positive, normalize_rows
from dimcollapse.objectives.mocov2 import require_targets
from dimcollapse.objectives.queue import FeatureQueue
from dimcollapse.registry import register
from dimcollapse.utils.distributed import global_batch_size, local_share


@register("objective", "ressl")
class ReSSL(Objective):
    """L = (1/N) sum_i -softmax(k_i Q^T / tau_t) . log softmax(q_i Q^T / tau_s), q = normalize(z1),
    k = normalize(t2) (momentum teacher, weak view), Q the queue of earlier k; the queue gets k."""

    uses_momentum_target: ClassVar[bool] = True
    needs_dim: ClassVar[bool] = True
    name: ClassVar[str] = "ressl"

    def __init__(
        self,
        dim: int | None = None,
        temperature_q: float = 0.1,
        temperature_k: float = 0.04,
        queue_size: int = 65536,
    ) -> None:
        super().__init__()
        check_positive("ressl", temperature_q=temperature_q, temperature_k=temperature_k)
        if dim is None:
            raise InputError("ressl: dim (the projector's out_dim) is required for the queue.")
        self.temperature_q, self.temperature_k = float(temperature_q), float(temperature_k)
        self.queue = FeatureQueue(queue_size, dim)

    def forward(self, z1: Tensor, z2: Tensor, t1: Tensor | None = None, t2: Tensor | None = None) -> Tensor:
        """Relational cross-entropy of the strong student view 1 against the weak teacher view 2."""
        self.check_pair(z1, z2)
        _, t2 = require_targets(self.name, t1, t2, z1)
        q, k = normalize_rows(z1), normalize_rows(t2)
        bank = self.queue.values().to(q.dtype)
        p_t = F.softmax((k @ bank.T) / self.temperature_k, dim=1)
        log_s = F.log_softmax((q @ bank.T) / self.temperature_q, dim=1)
        loss = local_share(-(p_t * log_s).sum(), global_batch_size(z1.shape[0], z1.device))
        if self.training:
            self.queue.push(k)
        with torch.no_grad():
            pos = (q * k).sum(1).mean()
        self.last_stats = {"loss": loss.detach(), "pos_sim": pos.detach()}
        return loss
