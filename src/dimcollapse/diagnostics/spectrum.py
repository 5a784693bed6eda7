"""Covariance spectrum of embeddings (SPEC 1.1, DC paper eq. 1): eigenvalues of the streamed float64
covariance (``diagnostics/engine/covariance.py``), of one direct float64 block for a small CPU matrix
(``diagnostics/engine/covariance_small.py``), or of the N x N Gram matrix when N < D.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from dimcollapse.diagnostics.engine.covariance import CovarianceAccumulator
from dimcollapse.diagnostics.engine.covariance_small import one_block_array, one_block_covariance
from dimcollapse.diagnostics.engine.inputs import (
    ArrayLike,
    as_tensor,
    check_matrix,
    check_positive_int,
    count_nonfinite_rows,
    is_matrix_like,
)
from dimcollapse.errors import InputError
from dimcollapse.utils.memory import check_allocation

__all__ = [
    "CovarianceAccumulator",
    "covariance_matrix",
    "covariance_spectrum",
    "gram_spectrum",
    "spectrum_of",
]

_TORCH_EIGH_DIM = 1536  # spectrum_of: numpy's eigvalsh below, torch's from here


def _accumulate(
    Z: ArrayLike | Iterable[ArrayLike], center: bool, l2_normalize: bool, block_size: int | None
) -> CovarianceAccumulator:
    if block_size is not None:
        check_positive_int(block_size, "block_size")
    acc = CovarianceAccumulator(center=center, l2_normalize=l2_normalize)
    if is_matrix_like(Z):
        t = as_tensor(Z)
        if t.ndim != 2 or t.shape[0] < 2 or t.shape[1] < 1:
            check_matrix(t)  # raises the shared message; NaN/Inf rows are found by the accumulator
        acc.update(t, block_size)
    else:
        for batch in Z:
            if (
                isinstance(batch, (tuple, list))
                and batch
                and isinstance(batch[0], (torch.Tensor, np.ndarray))
            ):
                batch = batch[0]  # (features, labels) pairs from a DataLoader
            acc.update(batch, block_size)
    acc.finish_checks()
    return acc


def covariance_matrix(
    Z: ArrayLike | Iterable[ArrayLike],
    center: bool = True,
    l2_normalize: bool = False,
    block_size: int | None = None,
) -> np.ndarray:
    """C = (1/N) sum_i (z_i - mean)(z_i - mean)^T in float64 (SPEC 1.1); Z: matrix or iterable of batches."""
    if block_size is not None:
        check_positive_int(block_size, "block_size")
    small = one_block_array(Z, block_size)
    if small is not None:  # a small CPU matrix: one direct block, no streaming machinery
        return one_block_covariance(small, center, l2_normalize)
    return _accumulate(Z, center, l2_normalize, block_size).covariance()


def covariance_spectrum(
    Z: ArrayLike | Iterable[ArrayLike],
    center: bool = True,
    l2_normalize: bool = False,
    block_size: int | None = None,
) -> np.ndarray:
    """Eigenvalues of C = (1/N) sum (z_i - mean)(z_i - mean)^T, float64, descending (DC paper eq. 1).

    A matrix with fewer rows than columns (N < D) uses the N x N Gram matrix (1/N) Xc Xc^T, which has
    the same non-zero eigenvalues; the other D - N eigenvalues are exactly 0.
    """
    if block_size is not None:
        check_positive_int(block_size, "block_size")
    small = one_block_array(Z, block_size)
    if small is not None:  # a small CPU matrix (N >= D): one direct block, no streaming machinery
        return spectrum_of(one_block_covariance(small, center, l2_normalize))
    if is_matrix_like(Z):
        t = as_tensor(Z)
        if t.ndim != 2 or t.shape[0] < 2 or t.shape[1] < 1:
            check_matrix(t)  # the shape message; NaN/Inf rows are found by the accumulator (no extra pass)
        if 2 <= t.shape[0] < t.shape[1]:
            return gram_spectrum(t, center, l2_normalize)
    return spectrum_of(covariance_matrix(Z, center, l2_normalize, block_size))


def gram_spectrum(
    t: torch.Tensor, center: bool = True, l2_normalize: bool = False, name: str = "Z"
) -> np.ndarray:
    """Eigenvalues of (1/N) X^T X via the N x N Gram (1/N) X X^T (X centred / normalised), padded with
    D - N zeros; descending, float64. For N < D this costs O(N^2 D) instead of O(N D^2 + D^3)."""
    bad = count_nonfinite_rows(t)
    if bad:
        raise InputError(
            f"{name} has {bad} of {t.shape[0]} rows containing NaN or Inf. "
            "Drop or repair those rows (e.g. keep Z[np.isfinite(Z).all(1)])."
        )
    n, d = int(t.shape[0]), int(t.shape[1])
    check_allocation(8 * n * (n + d), f"the {n} x {n} Gram matrix of {name} (and its float64 copy)")
    x = t.detach().to(torch.float64)
    if l2_normalize:
        x = x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-300)
    if center:
        x = x - x.mean(0)
    gram = (x @ x.T).cpu().numpy() / n
    eig = spectrum_of((gram + gram.T) / 2.0)
    out = np.zeros(d, dtype=np.float64)
    out[:n] = eig
    return np.sort(out)[::-1].copy()


def spectrum_of(c: np.ndarray) -> np.ndarray:
    """Eigenvalues of a symmetric matrix, descending (float64; round-off negatives kept as they are).

    LAPACK's eigensolver through numpy below D = 1,536 (1.4-1.9x faster than torch's at D = 512-1,024 on
    the benchmark CPU), through torch above (about 1.2x faster at D = 2,048).
    """
    a = np.ascontiguousarray(c, dtype=np.float64)
    if a.shape[0] < _TORCH_EIGH_DIM:
        return np.linalg.eigvalsh(a)[::-1].copy()
    return torch.linalg.eigvalsh(torch.from_numpy(a)).numpy()[::-1].copy()
