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

from dimcollapse.diagnostics._validate import ArrayLike
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
    a = a.reshape(a.shape[0], -1)
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
