"""SwAV (Caron et al. 2020): swapped prediction of Sinkhorn-Knopp codes over K prototypes, multi-crop;
optionally with a queue of earlier global-crop embeddings that joins the Sinkhorn-Knopp batch."""

from __future__ import annotations

from typing import ClassVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.objectives.base import Objective, check_positive, full_precision, normalize_rows
from dimcollapse.objectives.dino import Prototypes
from dimcollapse.objectives.queue import FeatureQueue
from dimcollapse.registry import register
from dimcollapse.utils.distributed import all_reduce_sum, global_batch_size, local_share, rank


@torch.no_grad()
def sinkhorn(
    scores: Tensor, iterations: int = 3, epsilon: float = 0.05, extra: Tensor | None = None
) -> Tensor:
    """Codes Q [N, K] for cosine scores S: Q = diag(u) exp(S / eps) diag(v), the K prototype rows of the
    transposed plan summing to 1/K, its N (+ queue) columns to 1/B; returned scaled so every row of Q sums
    to 1 (SwAV eq. 3 and its Sinkhorn-Knopp algorithm).

    Under DDP the prototype sums run over the global batch; ``extra`` (queue scores, identical on every
    process) counts once in them and joins B, its codes are not returned.
    """
    with torch.autocast(scores.device.type, enabled=False):  # in >= float32 under mixed precision
        return _sinkhorn(full_precision(scores), iterations, epsilon, extra)


def _sinkhorn(scores: Tensor, iterations: int, epsilon: float, extra: Tensor | None) -> Tensor:
    """sinkhorn() without the precision guard."""
    cols = scores if extra is None else torch.cat([scores, extra.to(scores.dtype)])
    # scores are cosines (<= 1): the fixed shift keeps exp <= 1 on every process and cancels below
    q = torch.exp((cols - 1.0) / epsilon).T  # [K, B_local (+ queue)]
    n_local = scores.shape[0]
    owned = torch.ones(q.shape[1], dtype=q.dtype, device=q.device)
    if extra is not None and rank() != 0:
        owned[n_local:] = 0.0  # queue columns are summed on rank 0 only
    b_total = global_batch_size(n_local, scores.device) + (0 if extra is None else extra.shape[0])
    q = q / all_reduce_sum((q * owned).sum())
    k = q.shape[0]
    for _ in range(iterations):
        q = q / (all_reduce_sum((q * owned).sum(dim=1, keepdim=True)) * k)
        q = q / (q.sum(dim=0, keepdim=True) * b_total)
    return (q * b_total).T[:n_local]


@register("objective", "swav")
class SwAV(Objective):
    """L = (1/V_g) sum_{global a} (1/(V - 1)) sum_{b != a} (1/N) sum_i -q_a,i . log softmax(s_b,i / tau),
    s = normalize(z) C^T with unit prototypes C, q_a = Sinkhorn(s_a) (no gradient)."""

    needs_dim: ClassVar[bool] = True
    multi_view: ClassVar[bool] = True
    name: ClassVar[str] = "swav"

    def __init__(
        self,
        dim: int | None = None,
        n_prototypes: int = 3000,
        temperature: float = 0.1,
        sinkhorn_iterations: int = 3,
        epsilon: float = 0.05,
        queue_size: int = 0,
        n_global: int = 2,
    ) -> None:
        super().__init__()
        check_positive("swav", temperature=temperature, epsilon=epsilon)
        if dim is None or int(n_prototypes) < 1 or int(sinkhorn_iterations) < 1 or int(n_global) < 1:
            raise ConfigError("swav: dim, n_prototypes, sinkhorn_iterations and n_global must be >= 1.")
        self.prototypes = Prototypes(dim, int(n_prototypes))
        self.temperature, self.epsilon = float(temperature), float(epsilon)
        self.iterations = int(sinkhorn_iterations)
        self.n_global = int(n_global)
        self.queues = nn.ModuleList(
            [FeatureQueue(int(queue_size), dim, init="empty") for _ in range(self.n_global)]
            if queue_size
            else []
        )

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        """Two views: forward_views([z1, z2])."""
        return self.forward_views([z1, z2])

    def _queue(self, a: int) -> FeatureQueue:
        """The queue of global crop a."""
        return cast(FeatureQueue, self.queues[a])

    def _codes(self, a: int, scores: Tensor) -> Tensor:
        """Sinkhorn codes of global crop a, with its queue's scores once the queue is full."""
        extra = None
        if self.queues and self._queue(a).is_full():
            extra = self.prototypes(self._queue(a).values().to(scores.dtype), frozen=True)
        return sinkhorn(scores.detach(), self.iterations, self.epsilon, extra)

    def forward_views(
        self,
        zs: list[Tensor],
        ts: list[Tensor] | None = None,
        use_queue: bool = True,
        freeze_prototypes: bool = False,
    ) -> Tensor:
        """zs: embeddings of all crops, the n_global global crops first; ``use_queue``: push this batch into
        the queues (the run's schedule: from queue_start_epoch on); ``freeze_prototypes``: no gradient."""
        n_g = min(self.n_global, len(zs))
        if len(zs) < 2:
            raise InputError("swav: needs at least 2 crops (two views or multi-crop).")
        if self.training:
            with torch.no_grad():  # unit prototypes before every step (SwAV normalises them after each)
                self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        scores = [self.prototypes(z, freeze_prototypes) for z in zs]
        log_p = [F.log_softmax(s / self.temperature, dim=1) for s in scores]
        total = zs[0].new_zeros(())
        for a in range(n_g):
            q = self._codes(a, scores[a])
            total = total + sum(-(q * log_p[b]).sum() for b in range(len(zs)) if b != a) / (len(zs) - 1)
        n_total = global_batch_size(zs[0].shape[0], zs[0].device)
        loss = local_share(total, n_g * n_total)
        if self.training and self.queues and use_queue:
            for a in range(n_g):
                self._queue(a).push(normalize_rows(zs[a]).detach())
        self.last_stats = {"loss": loss.detach()}
        return loss
