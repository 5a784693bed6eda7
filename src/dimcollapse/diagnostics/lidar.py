"""LiDAR (Thilak et al. 2023): effective rank of the LDA matrix of surrogate classes of augmented views.

Each clean sample i with q augmented views z_ij is a surrogate class. With class means mu_i and their
mean mu over the n classes:
- between-class Sigma_b = sum_i (mu_i - mu)(mu_i - mu)^T / (n - 1);
- within-class  Sigma_w = sum_ij (z_ij - mu_i)(z_ij - mu_i)^T / sum_i (q_i - 1) + delta I;
- LDA matrix    Sigma_lidar = Sigma_w^-1/2 Sigma_b Sigma_w^-1/2, eigenvalues lambda_k (clipped at 0);
- LiDAR = exp(-sum_k p_k ln p_k), p_k = (lambda_k + eps) / sum_j (lambda_j + eps).
Defaults delta = 1e-4, eps = 1e-8 follow stable-pretraining's LiDAR callback (its normalisation with
n - 1 and n (q - 1) is the unbiased one above). Everything is float64. The statistics are sums, so
:class:`LidarAccumulator` streams groups and merges across processes.
"""

from __future__ import annotations

import numpy as np
import torch

from dimcollapse.diagnostics.engine.inputs import ArrayLike, as_tensor
from dimcollapse.diagnostics.spectrum import spectrum_of
from dimcollapse.errors import InputError

DELTA = 1e-4
EPS = 1e-8


def _views_array(views: ArrayLike) -> np.ndarray:
    t = as_tensor(views, "views").detach()
    if t.ndim != 3 or t.shape[1] < 2:
        raise InputError(
            f"views must have shape (n_samples, q_views, dim) with q >= 2 augmented views per sample, "
            f"got {tuple(t.shape)}. Stack the views: torch.stack([z_view1, z_view2, ...], dim=1)."
        )
    arr = t.cpu().to(torch.float64).numpy()
    if not np.isfinite(arr).all():
        raise InputError("views contain NaN or Inf; repair those embeddings first.")
    return arr


def lidar_matrix(
    between: np.ndarray, within: np.ndarray, delta: float = DELTA, eps: float = EPS
) -> np.ndarray:
    """Sigma_w^-1/2 Sigma_b Sigma_w^-1/2 with Sigma_w = within + delta I (its eigenvalues floored at eps)."""
    sw = within + delta * np.eye(within.shape[0])
    w, v = np.linalg.eigh((sw + sw.T) / 2)
    inv_sqrt = (v / np.sqrt(np.maximum(w, eps))) @ v.T
    m = inv_sqrt @ between @ inv_sqrt
    return (m + m.T) / 2


def lidar_from_eigenvalues(eig: ArrayLike, eps: float = EPS) -> float:
    """exp(-sum p_k ln p_k), p_k = (lambda_k + eps) / sum_j (lambda_j + eps), lambda clipped at 0."""
    lam = np.clip(np.asarray(eig, dtype=np.float64), 0.0, None) + eps
    p = lam / lam.sum()
    return float(np.exp(-np.sum(p * np.log(p))))


class LidarAccumulator:
    """Sums of the view-group statistics: class count, sum and outer sum of class means, within scatter."""

    def __init__(self) -> None:
        """Start empty."""
        self.groups = 0
        self.dof = 0
        self.mean_sum: np.ndarray | None = None
        self.mean_outer: np.ndarray | None = None
        self.within: np.ndarray | None = None

    def update(self, views: ArrayLike) -> None:
        """Add n groups of q views, shape (n, q, d)."""
        v = _views_array(views)
        mu = v.mean(axis=1)
        dev = (v - mu[:, None, :]).reshape(-1, v.shape[2])
        parts = (mu.sum(0), mu.T @ mu, dev.T @ dev)
        if self.mean_sum is None:
            self.mean_sum, self.mean_outer, self.within = parts
        else:
            assert self.mean_outer is not None and self.within is not None
            if parts[0].shape != self.mean_sum.shape:
                raise InputError(
                    f"views have dim {parts[0].shape[0]}, earlier ones {self.mean_sum.shape[0]}."
                )
            self.mean_sum, self.mean_outer, self.within = (
                self.mean_sum + parts[0],
                self.mean_outer + parts[1],
                self.within + parts[2],
            )
        self.groups += v.shape[0]
        self.dof += v.shape[0] * (v.shape[1] - 1)

    def eigenvalues(self, delta: float = DELTA, eps: float = EPS) -> np.ndarray:
        """Eigenvalues (descending) of the LDA matrix of everything added so far."""
        return lidar_eigenvalues(
            self.groups, self.dof, self.mean_sum, self.mean_outer, self.within, delta, eps
        )


def lidar_eigenvalues(
    groups: int,
    dof: int,
    mean_sum: np.ndarray | None,
    mean_outer: np.ndarray | None,
    within: np.ndarray | None,
    delta: float = DELTA,
    eps: float = EPS,
) -> np.ndarray:
    """LDA-matrix eigenvalues from summed statistics (groups n, dof sum(q_i - 1), sum mu, sum mu mu^T, W)."""
    if groups < 2 or mean_sum is None or mean_outer is None or within is None or dof < 1:
        raise InputError(f"LiDAR needs at least 2 samples with >= 2 views each, got {groups} sample(s).")
    mu = mean_sum / groups
    between = (mean_outer - groups * np.outer(mu, mu)) / (groups - 1)
    return spectrum_of(lidar_matrix((between + between.T) / 2, within / dof, delta, eps))


def lidar(views: ArrayLike, delta: float = DELTA, eps: float = EPS) -> float:
    """LiDAR of views (n samples, q views, d): exp-entropy of the LDA matrix eigenvalues (Thilak 2023)."""
    acc = LidarAccumulator()
    acc.update(views)
    return lidar_from_eigenvalues(acc.eigenvalues(delta, eps), eps)


__all__ = ["DELTA", "EPS", "LidarAccumulator", "lidar", "lidar_eigenvalues", "lidar_from_eigenvalues"]
