"""Alignment of adjacent layers (DC paper theorem 2, fig. 5; SPEC 1.6).

W1 = U1 S1 V1^T, W2 = U2 S2 V2^T (singular values descending) with W2 consuming W1's output
(W2.shape[1] == W1.shape[0]). A = V2^T U1; alignment means |A| -> I. Singular vectors are defined only
up to a rotation inside a group of equal singular values (and up to sign, hence |A|), so the score is
also reported restricted to directions whose singular value is distinct in both layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dimcollapse.diagnostics.engine.inputs import ArrayLike
from dimcollapse.diagnostics.engine.matrices import as_matrix
from dimcollapse.errors import InputError


@dataclass(frozen=True)
class Alignment:
    """|A| = |V2^T U1| (r2 x r1), mean |diag A|, the mean over distinct directions and their count."""

    matrix: np.ndarray
    mean_diag: float
    mean_diag_distinct: float
    n_distinct: int


def _as_matrix(w: ArrayLike, name: str) -> np.ndarray:
    if isinstance(w, torch.Tensor):
        w = w.detach().cpu().to(torch.float64).numpy()
    a = np.asarray(w, dtype=np.float64)
    if a.ndim < 2:
        raise InputError(f"{name} must be a weight matrix (2-D or a conv kernel), got shape {a.shape}.")
    a = as_matrix(torch.from_numpy(a)).numpy()
    if not np.isfinite(a).all():
        raise InputError(f"{name} contains NaN or Inf.")
    return a


def distinct_mask(s: np.ndarray, rel_gap: float) -> np.ndarray:
    """True where s_i differs from both neighbours by more than rel_gap * s_max (and s_i > that gap)."""
    gap = rel_gap * max(float(s[0]), 0.0) if s.size else 0.0
    d = np.abs(np.diff(s))
    left = np.concatenate([[np.inf], d])
    right = np.concatenate([d, [np.inf]])
    return (left > gap) & (right > gap) & (s > gap)


def alignment_matrix(W1: ArrayLike, W2: ArrayLike, rel_gap: float = 1e-6) -> Alignment:
    """A = V2^T U1 from W1 = U1 S1 V1^T and W2 = U2 S2 V2^T; scores mean |diag A| (DC paper theorem 2)."""
    w1 = _as_matrix(W1, "W1")
    w2 = _as_matrix(W2, "W2")
    if w2.shape[1] != w1.shape[0]:
        raise InputError(
            f"W2 must consume W1's output: W1 is {w1.shape[0]} x {w1.shape[1]}, W2 is "
            f"{w2.shape[0]} x {w2.shape[1]}; need W2.shape[1] == W1.shape[0]."
        )
    u1, s1, _ = np.linalg.svd(w1, full_matrices=False)
    _, s2, v2t = np.linalg.svd(w2, full_matrices=False)
    a = np.abs(v2t @ u1)
    m = min(a.shape)
    diag = np.diag(a)[:m]
    distinct = distinct_mask(s1, rel_gap)[:m] & distinct_mask(s2, rel_gap)[:m]
    n_distinct = int(distinct.sum())
    return Alignment(
        matrix=a,
        mean_diag=float(diag.mean()),
        mean_diag_distinct=float(diag[distinct].mean()) if n_distinct else float("nan"),
        n_distinct=n_distinct,
    )


@dataclass(frozen=True)
class RandomAlignment:
    """Mean |diag A| of random orthonormal bases: mean and the ``low``-``high`` (5-95%) band over draws."""

    mean: float
    low: float
    high: float
    draws: int


def random_alignment(n: int, r1: int, r2: int, draws: int = 64, seed: int = 0) -> RandomAlignment:
    """Reference for ``alignment_matrix``: mean |diag V2^T U1| with U1 (n x r1), V2 (n x r2) drawn as
    Haar-random orthonormal bases (QR of Gaussian matrices); E|diag| ~ sqrt(2 / (pi n)) for large n."""
    if min(n, r1, r2, draws) < 1 or max(r1, r2) > n:
        raise InputError(
            f"random_alignment needs 1 <= r1, r2 <= n and draws >= 1, got n={n}, r1={r1}, r2={r2}, "
            f"draws={draws}; r1 and r2 are the ranks of the two layers, n the width they share."
        )
    rng = np.random.default_rng(seed)
    m = min(r1, r2)
    scores = np.empty(draws)
    for i in range(draws):
        u1 = _haar_basis(rng, n, r1)
        v2 = _haar_basis(rng, n, r2)
        scores[i] = np.abs(np.einsum("ij,ij->j", v2[:, :m], u1[:, :m])).mean()
    low, high = np.percentile(scores, [5, 95])
    return RandomAlignment(float(scores.mean()), float(low), float(high), int(draws))


def _haar_basis(rng: np.random.Generator, n: int, r: int) -> np.ndarray:
    """n x r matrix with orthonormal columns, uniformly (Haar) distributed: QR with sign-fixed R."""
    q, rr = np.linalg.qr(rng.standard_normal((n, r)))
    return q * np.where(np.diag(rr) < 0, -1.0, 1.0)
