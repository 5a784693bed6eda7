"""W-MSE (Ermolov et al. 2021): whiten the embeddings of each view in random sub-batches, then pull the
whitened views together (2 - 2 cos). Under DDP each process whitens sub-batches of its own rows (as W-MSE's
implementation), so the loss is the mean over processes of the local losses."""

from __future__ import annotations

import itertools
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.objectives.base import Objective, full_precision
from dimcollapse.registry import register


def whiten(x: Tensor, eps: float = 0.0) -> Tensor:
    """(x - mean) L^{-T}, L L^T = (1 - eps) Cov + eps I the Cholesky factor, Cov = xc^T xc / (m - 1)."""
    with torch.autocast(x.device.type, enabled=False):  # covariance and Cholesky in >= float32
        x = full_precision(x)
        xc = x - x.mean(dim=0)
        cov = xc.T @ xc / (x.shape[0] - 1)
        eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
        chol = torch.linalg.cholesky((1 - eps) * cov + eps * eye)
        inv = torch.linalg.solve_triangular(chol, eye, upper=False)  # L^{-1}
        return xc @ inv.T


@register("objective", "wmse")
class WMSE(Objective):
    """L = (1/(w_iter P)) sum_iter sum_pairs (2 - 2 mean_i cos(w_a,i, w_b,i)), w = whiten(z) in random
    sub-batches of w_size rows (each view whitened separately), P = number of view pairs."""

    multi_view: ClassVar[bool] = True
    name: ClassVar[str] = "wmse"

    def __init__(self, w_size: int = 128, w_iter: int = 1, eps: float = 0.0) -> None:
        super().__init__()
        if int(w_size) < 2 or int(w_iter) < 1 or not 0.0 <= eps < 1.0:
            raise ConfigError(
                f"wmse: w_size >= 2, w_iter >= 1, eps in [0, 1) required, got {w_size}, {w_iter}, {eps}."
            )
        self.w_size, self.w_iter, self.eps = int(w_size), int(w_iter), float(eps)

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        """Two views: forward_views([z1, z2])."""
        return self.forward_views([z1, z2])

    def _check(self, zs: list[Tensor]) -> None:
        n, d = zs[0].shape
        if n % self.w_size:
            raise InputError(
                f"wmse: the batch ({n} rows) must be a multiple of w_size = {self.w_size}; set "
                "objective.kwargs.w_size to a divisor of data.batch_size (per process)."
            )
        if self.w_size <= d:
            raise ConfigError(
                f"wmse: w_size = {self.w_size} must exceed the embedding size {d} (the sub-batch covariance "
                "must be invertible); W-MSE uses w_size >= 2 d."
            )

    def forward_views(self, zs: list[Tensor], ts: list[Tensor] | None = None) -> Tensor:
        """All views of the same size (global crops); random sub-batches from the global torch RNG."""
        if len(zs) < 2 or any(z.shape != zs[0].shape for z in zs):
            raise InputError("wmse: needs >= 2 views of equal shape [N, d].")
        self._check(zs)
        zs = [full_precision(z) for z in zs]
        n = zs[0].shape[0]
        total = zs[0].new_zeros(())
        pairs = list(itertools.combinations(range(len(zs)), 2))
        for _ in range(self.w_iter):
            perm = torch.randperm(n).view(-1, self.w_size)
            inverse = torch.argsort(perm.flatten()).to(zs[0].device)
            white = [torch.cat([whiten(z[idx.to(z.device)], self.eps) for idx in perm])[inverse] for z in zs]
            for a, b in pairs:
                total = (
                    total
                    + 2
                    - 2 * (F.normalize(white[a], dim=1) * F.normalize(white[b], dim=1)).sum(1).mean()
                )
        loss = total / (self.w_iter * len(pairs))
        self.last_stats = {"loss": loss.detach()}
        return loss
