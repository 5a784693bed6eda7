"""NNCLR (Dwibedi et al. 2021): the positive of a view is the nearest neighbour of its embedding in a
support queue of earlier embeddings; predictions of the other view are the keys (in-batch negatives)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from dimcollapse.errors import InputError
from dimcollapse.objectives.base import Objective, check_positive, normalize_rows
from dimcollapse.objectives.mocov3 import batch_infonce
from dimcollapse.objectives.predictor import Predictor
from dimcollapse.objectives.queue import FeatureQueue
from dimcollapse.registry import register
from dimcollapse.utils.distributed import all_gather_with_grad, local_share


def nearest_neighbour(z: Tensor, support: Tensor) -> Tensor:
    """NN(z_i) = support[argmax_j z_i . support_j] (rows unit vectors), detached."""
    idx = (z.detach() @ support.T).argmax(dim=1)
    return support[idx].detach()


@register("objective", "nnclr")
class NNCLR(Objective):
    """L = (1/2N) sum_i [CE(NN(z1_i) p2^T / tau, i) + CE(NN(z2_i) p1^T / tau, i)], p = normalize(pred(z)),
    z normalised; the support queue gets z1 after each training step."""

    needs_dim: ClassVar[bool] = True
    name: ClassVar[str] = "nnclr"

    def __init__(
        self,
        dim: int | None = None,
        hidden_dim: int = 4096,
        temperature: float = 0.1,
        queue_size: int = 65536,
        sync_bn: bool = True,
    ) -> None:
        super().__init__()
        check_positive("nnclr", temperature=temperature)
        if dim is None:
            raise InputError("nnclr: dim (the projector's out_dim) is required for the support queue.")
        self.predictor = Predictor(dim, hidden_dim, sync_bn=sync_bn)
        self.temperature = float(temperature)
        self.support = FeatureQueue(queue_size, dim)

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        """Anchors NN(z) from the queue (no gradient), keys the other view's predictions of every process."""
        self.check_pair(z1, z2, min_rows=2 if self.training else 1)  # the predictor's BN needs 2 rows
        a1, a2 = normalize_rows(z1), normalize_rows(z2)
        support = self.support.values().to(a1.dtype)
        nn1, nn2 = nearest_neighbour(a1, support), nearest_neighbour(a2, support)
        p1, p2 = normalize_rows(self.predictor(z1)), normalize_rows(self.predictor(z2))
        keys, offset = all_gather_with_grad(torch.stack([p1, p2], dim=1))
        tau = self.temperature
        total = batch_infonce(nn1, keys[:, 1], offset, tau) + batch_infonce(nn2, keys[:, 0], offset, tau)
        loss = local_share(total, 2 * keys.shape[0])
        if self.training:
            self.support.push(a1.detach())
        with torch.no_grad():
            nn_sim = 0.5 * ((a1 * nn1).sum(1).mean() + (a2 * nn2).sum(1).mean())
        self.last_stats = {"loss": loss.detach(), "nn_sim": nn_sim.detach()}
        return loss
