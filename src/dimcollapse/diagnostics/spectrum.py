"""Covariance spectrum of embeddings (SPEC 1.1, DC paper eq. 1), streamed over row blocks in float64.

C = (1/N) sum_i (z_i - mean z)(z_i - mean z)^T. Rows are consumed in blocks; each block's centred
cross-product is merged with the running total by the exact pairwise update of Chan, Golub & LeVeque
(1979), so the mean is never subtracted from a huge uncentred sum (no cancellation), memory stays
O(block * D + D^2) and the result equals the one-shot covariance. On CPU the block product uses
numpy's ``A.T @ A`` (a BLAS syrk: half the work of a general product); CUDA tensors stay on their device.

Accuracy: forming C squares the condition number, so an eigenvalue lambda_i carries an absolute error of
a few float64 ulps of lambda_max, i.e. a relative error of about 1e-16 * lambda_max / lambda_i (1e-6 at
lambda_i = 1e-10 lambda_max). An SVD of the centred data avoids the squaring but costs far more.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from dimcollapse.diagnostics._validate import (
    ArrayLike,
    as_tensor,
    check_matrix,
    check_positive_int,
    count_nonfinite_rows,
    is_matrix_like,
)
from dimcollapse.errors import InputError
from dimcollapse.utils.memory import check_allocation

_BLOCK_BYTES = 64 * 2**20  # float64 bytes per block when block_size is not given


def default_block_rows(d: int) -> int:
    """Rows per block so that one float64 block takes about 64 MB."""
    return max(256, _BLOCK_BYTES // (8 * max(d, 1)))


class CovarianceAccumulator:
    """Running float64 mean and (centred or raw) cross-product of rows fed block by block."""

    def __init__(self, center: bool = True, l2_normalize: bool = False, name: str = "Z") -> None:
        """Start empty; ``center`` subtracts the mean, ``l2_normalize`` scales each row to unit norm first."""
        self.center = center
        self.l2_normalize = l2_normalize
        self.name = name
        self.n = 0
        self.bad_rows = 0
        self.total_rows = 0
        self._mean: np.ndarray | torch.Tensor | None = None
        self._m2: np.ndarray | torch.Tensor | None = None

    @property
    def dim(self) -> int | None:
        """Number of columns seen so far (None before the first block)."""
        return None if self._m2 is None else int(self._m2.shape[0])

    def update(self, block: ArrayLike, block_size: int | None = None) -> None:
        """Add the rows of ``block`` (2-D array/tensor); rows with NaN/Inf are counted, not used."""
        t = as_tensor(block, self.name).detach()
        if t.ndim != 2:
            raise InputError(
                f"{self.name}: every batch must be 2-D (rows x features), got shape {tuple(t.shape)}."
            )
        if self.dim is not None and t.shape[1] != self.dim:
            raise InputError(
                f"{self.name}: batches disagree on the number of columns ({t.shape[1]} vs {self.dim})."
            )
        if t.shape[0] == 0:
            return
        self.total_rows += int(t.shape[0])
        bad = count_nonfinite_rows(t)
        if bad:
            self.bad_rows += bad
            return
        if self.bad_rows:
            return  # an error will be raised at the end; skip the work
        rows = block_size or default_block_rows(t.shape[1])
        for start in range(0, t.shape[0], rows):
            self._update_block(t[start : start + rows])

    def _update_block(self, t: torch.Tensor) -> None:
        x: np.ndarray | torch.Tensor
        if t.device.type == "cpu" and not self.l2_normalize:
            # one float64 pass for the mean, one fused convert-and-centre pass (no float64 copy first)
            raw = t.numpy()
            mb = raw.mean(0, dtype=np.float64)
            x = np.subtract(raw, mb, dtype=np.float64) if self.center else raw.astype(np.float64)
        else:
            if t.device.type == "cpu":
                x = t.numpy().astype(np.float64, copy=True)
            else:
                x = t.to(torch.float64, copy=True)
            if self.l2_normalize:
                if isinstance(x, np.ndarray):
                    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
                else:
                    x /= torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-300)
            mb = x.mean(0)
            if self.center:
                x -= mb
        nb = x.shape[0]
        if self._m2 is None:
            d = int(x.shape[1])
            what = f"the {d} x {d} covariance of {self.name}"
            check_allocation(8 * d * d, what, "Reduce the number of columns")
        m2b = x.T @ x
        if self._m2 is None:
            self.n, self._mean, self._m2 = nb, mb, m2b
            return
        assert self._mean is not None
        n_new = self.n + nb
        if self.center:
            delta = mb - self._mean
            outer = np.outer(delta, delta) if isinstance(delta, np.ndarray) else torch.outer(delta, delta)
            self._m2 += m2b + outer * (self.n * nb / n_new)
        else:
            self._m2 += m2b
        self._mean = self._mean + (mb - self._mean) * (nb / n_new)
        self.n = n_new

    def finish_checks(self) -> None:
        """Raise InputError for NaN/Inf rows or fewer than 2 rows in total."""
        if self.bad_rows:
            raise InputError(
                f"{self.name} has {self.bad_rows} of {self.total_rows} rows containing NaN or Inf. "
                "Drop or repair those rows (e.g. keep Z[np.isfinite(Z).all(1)])."
            )
        if self.n < 2 or self._m2 is None:
            raise InputError(f"{self.name} has {self.n} row(s); at least 2 are needed for a covariance.")

    def covariance(self) -> np.ndarray:
        """(1/N) times the accumulated cross-product, as a float64 numpy D x D matrix."""
        self.finish_checks()
        assert self._m2 is not None
        m2 = self._m2 if isinstance(self._m2, np.ndarray) else self._m2.cpu().numpy()
        c = m2 / self.n
        return (c + c.T) / 2.0


def _accumulate(
    Z: ArrayLike | Iterable[ArrayLike], center: bool, l2_normalize: bool, block_size: int | None
) -> CovarianceAccumulator:
    if block_size is not None:
        check_positive_int(block_size, "block_size")
    acc = CovarianceAccumulator(center=center, l2_normalize=l2_normalize)
    if is_matrix_like(Z):
        t = as_tensor(Z)
        check_matrix(t)
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
    if is_matrix_like(Z):
        t = as_tensor(Z)
        check_matrix(t)
        if t.ndim == 2 and 2 <= t.shape[0] < t.shape[1]:
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

    torch's LAPACK eigensolver is used: about 2x faster than numpy's at D = 2048 on the benchmark CPU.
    """
    t = torch.from_numpy(np.ascontiguousarray(c, dtype=np.float64))
    return torch.linalg.eigvalsh(t).numpy()[::-1].copy()
