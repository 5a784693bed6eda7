"""The monitor's scale signals, next to the shape metrics of the catalogue (erank, RankMe, ...).

- ``std_norm``: the mean over dimensions of the standard deviation (over rows, 1/N) of the
  L2-normalised embeddings, s = mean_j std_i(z_ij / ||z_i||). Its ideal is 1/sqrt(d) (directions
  spread over the sphere); it falls to 0 when every row points the same way (complete collapse), also
  when the spread collapses in every dimension at once, which leaves the erank unchanged.
- ``total_var``: the total variance tr(C) = sum of the covariance eigenvalues (the scale of the
  spread: it falls towards 0 when the embeddings shrink towards one point).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def normalized_std(z: Tensor) -> float:
    """s = mean_j std_i(z_ij / ||z_i||) over the rows of ``z`` (population std; rows of norm 0 stay 0)."""
    x = z.detach().to(torch.float64)
    x = x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-300)
    return float(x.std(dim=0, unbiased=False).mean()) if x.shape[0] else float("nan")


def ideal_normalized_std(dim: int) -> float:
    """1/sqrt(d): ``normalized_std`` of directions spread evenly over the sphere in d dimensions."""
    return 1.0 / float(np.sqrt(max(1, int(dim))))


def total_variance(eig: np.ndarray) -> float:
    """tr(C) = sum_k lambda_k of a covariance spectrum (round-off negatives count as they are)."""
    return float(np.sum(eig))


__all__ = ["ideal_normalized_std", "normalized_std", "total_variance"]
