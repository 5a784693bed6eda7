"""Covariance spectrum of embeddings (SPEC 1.1, DC paper eq. 1), streamed over row blocks in float64.

C = (1/N) sum_i (z_i - mean z)(z_i - mean z)^T. Rows are consumed in blocks, each converted once into
a reused float64 buffer minus a shift (the mean of the first block), so memory stays O(block * D + D^2)
whatever N. One Gram product per block (numpy's ``A.T @ A``, a BLAS syrk: half the work of a general
product, the same BLAS call as the floor ``Z.T @ Z``; a torch float64 GEMM on CUDA, where tensors stay on
their device) gives the shifted cross-product and one BLAS gemv (ones @ block) the column sums, which
also reveal NaN/Inf rows, so the input is never scanned separately. The mean correction is small (the
shift is within the data's spread of the mean) and cancels no digits; a block whose mean drifts farther
than the spread starts a new shift, and the parts are merged exactly (Chan, Golub & LeVeque 1979). The
cost is the float64 Gram product plus one conversion pass, a gemv and the D x D eigensolve.

Accuracy: forming C squares the condition number, so an eigenvalue lambda_i carries an absolute error of
a few float64 ulps of lambda_max, i.e. a relative error of about 1e-16 * lambda_max / lambda_i (1e-6 at
lambda_i = 1e-10 lambda_max). An SVD of the centred data avoids the squaring but costs far more.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch

from dimcollapse.diagnostics._blas import _dsyrk, syrk_update
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

_BLOCK_BYTES = 16 * 2**20  # float64 bytes of one block when every block pays a D x D temporary
_CACHE_BLOCK_BYTES = 2 * 2**20  # with an in-place BLAS update (``_blas``): a block still in cache
_TORCH_EIGH_DIM = 1536  # spectrum_of: numpy's eigvalsh below, torch's from here
_MIN_BLOCK_ROWS = 256  # fewer rows per BLAS call lose efficiency


def default_block_rows(d: int) -> int:
    """Rows per block: about 2 MB of float64 (still in cache when BLAS reads it) when the Gram sum is
    updated in place, else about 16 MB (fewer D x D temporaries); at least 256 rows."""
    target = _CACHE_BLOCK_BYTES if _dsyrk() is not None else _BLOCK_BYTES
    return max(_MIN_BLOCK_ROWS, target // (8 * max(d, 1)))


class _Segment:
    """Sums over consecutive blocks that share one shift s: rows n, G = sum (x-s)(x-s)^T, S = sum (x-s)."""

    def __init__(self) -> None:
        self.n = 0
        self.shift: torch.Tensor | None = None
        self.gram: torch.Tensor | None = None
        self.sums: torch.Tensor | None = None
        self.upper_only = False  # the Gram sum holds its upper triangle only (in-place BLAS update)
        self.spread = 0.0  # per-row trace of the first block's scatter about the shift


class CovarianceAccumulator:
    """Running float64 (centred or raw) cross-product of rows fed block by block.

    Each block is converted once into a reused float64 buffer minus a shift s (the mean of the segment's
    first block); its Gram product (x - s)^T (x - s) (a BLAS syrk on CPU, a float64 GEMM on CUDA) is added
    to the segment's sum and its column sums (a gemv) give the mean correction. A block whose mean lies
    farther from s than the segment's spread (a drifting stream) closes the segment and opens a new one
    centred on itself; segments merge exactly (Chan, Golub & LeVeque 1979), so no uncentred sum of large
    values is differenced.
    """

    def __init__(self, center: bool = True, l2_normalize: bool = False, name: str = "Z") -> None:
        """Start empty; ``center`` subtracts the mean, ``l2_normalize`` scales each row to unit norm first."""
        self.center = center
        self.l2_normalize = l2_normalize
        self.name = name
        self.bad_rows = 0
        self.total_rows = 0
        self._n = 0  # rows in closed segments
        self._mean: torch.Tensor | None = None
        self._m2: torch.Tensor | None = None
        self._dim: int | None = None
        self._seg = _Segment()
        self._buf: torch.Tensor | None = None
        self._ones: torch.Tensor | None = None
        self._gram_out: torch.Tensor | None = None

    @property
    def n(self) -> int:
        """Number of rows accumulated so far."""
        return self._n + self._seg.n

    @property
    def dim(self) -> int | None:
        """Number of columns seen so far (None before the first block)."""
        return self._dim

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
        self._dim = int(t.shape[1])
        self.total_rows += int(t.shape[0])
        if self.bad_rows:  # an error will be raised at the end: only count, skip the work
            self.bad_rows += count_nonfinite_rows(t)
            return
        rows = block_size or default_block_rows(t.shape[1])
        for start in range(0, t.shape[0], rows):
            if not self._update_block(t[start : start + rows]):
                self._reject(t[start:])
                return

    def _reject(self, rest: torch.Tensor) -> None:
        """Count the NaN/Inf rows of ``rest`` (a block's column sums were not finite)."""
        bad = count_nonfinite_rows(rest)
        if not bad:
            self._overflow(rest)
        self.bad_rows += bad

    def _overflow(self, rest: torch.Tensor) -> None:
        raise InputError(
            f"{self.name}: values are so large that their squares overflow float64 "
            f"(max |z| = {float(rest.abs().max()):.3g}). Rescale the data, e.g. Z / Z.abs().max()."
        )

    def _buffer(self, t: torch.Tensor) -> torch.Tensor:
        """The reused float64 buffer's first len(t) rows (allocated on first use, after a size check)."""
        m, d = t.shape
        buf = self._buf
        if buf is None or buf.shape[0] < m or buf.device != t.device:
            if buf is None:  # the D x D Gram product comes next: refuse an impossible size first
                what = f"the {d} x {d} covariance of {self.name}"
                check_allocation(8 * d * d, what, "Reduce the number of columns")
            buf = self._buf = torch.empty((m, d), dtype=torch.float64, device=t.device)
            self._ones = torch.ones(m, dtype=torch.float64, device=t.device)
        return buf[:m]

    def _sums(self, x: torch.Tensor) -> torch.Tensor:
        """Column sums of the buffer rows x as one BLAS gemv (ones @ x): faster than a column reduction."""
        assert self._ones is not None
        return self._ones[: x.shape[0]] @ x

    def _add_gram(self, seg: _Segment, x: torch.Tensor) -> None:
        """seg.gram += x^T x: in place through numpy's BLAS dsyrk (upper triangle) when reachable, else
        numpy's ``x.T @ x`` (also a syrk) into a reused D x D buffer and an addition; a GEMM on CUDA."""
        gram = seg.gram
        assert gram is not None
        if x.device.type != "cpu":
            gram.addmm_(x.T, x)
            return
        xn = x.numpy()
        if syrk_update(gram.numpy(), xn):
            seg.upper_only = True
            return
        if self._gram_out is None:
            self._gram_out = torch.empty_like(gram)
        out = self._gram_out.numpy()
        with np.errstate(invalid="ignore", over="ignore"):  # overflow is reported by the caller
            np.matmul(xn.T, xn, out=out)  # A.T @ A, shared memory: numpy calls BLAS syrk
        gram += self._gram_out

    def _load(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` (l2-normalised if asked) minus the segment's shift, in the float64 buffer.

        A new segment's shift is the mean of its first block.
        """
        x, seg = self._buffer(t), self._seg
        x.copy_(t)
        if self.l2_normalize:
            x.div_(torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-300))
        if self.center:
            if seg.shift is None:
                seg.shift = self._sums(x) / x.shape[0]
            x.sub_(seg.shift)
        return x

    def _update_block(self, t: torch.Tensor) -> bool:
        """Add one block; False (nothing added) when its column sums are not finite (NaN/Inf rows)."""
        x, m = self._load(t), int(t.shape[0])
        sums = self._sums(x)
        if not math.isfinite(float(sums.sum())):
            return False
        seg = self._seg
        # the correction n mean mean^T cancels digits once the block mean (shift + offset) lies farther
        # from the shift than the spread of the segment's first block: start a new segment on this block
        if self.center and seg.n and float(sums @ sums) > seg.spread * m * m:
            assert seg.shift is not None
            shift = seg.shift + sums / m
            self._close_segment()
            seg = self._seg
            seg.shift = shift
            x.sub_(sums / m)
            sums = self._sums(x)
        if seg.gram is None:
            seg.gram = torch.zeros((x.shape[1], x.shape[1]), dtype=torch.float64, device=x.device)
            seg.sums = torch.zeros_like(sums)
        assert seg.sums is not None
        self._add_gram(seg, x)
        seg.sums += sums
        if not seg.n:  # overflow shows in the trace (checked here and when the segment closes)
            seg.spread = self._finite_trace(seg.gram) / m - float(sums @ sums) / (m * m)
        seg.n += m
        return True

    def _finite_trace(self, gram: torch.Tensor) -> float:
        """tr(gram), or InputError when it overflowed (rows are finite: their squares were too large)."""
        trace = float(gram.diagonal().sum())
        if not math.isfinite(trace):
            raise InputError(
                f"{self.name}: values are so large that their squares overflow float64. Rescale the data, "
                "e.g. Z / Z.abs().max()."
            )
        return trace

    def _close_segment(self) -> None:
        """Fold the open segment into the merged (n, mean, centred cross-product) state."""
        seg = self._seg
        if seg.gram is None:
            return
        gram = seg.gram
        self._finite_trace(gram)
        if seg.upper_only:
            gram = torch.triu(gram) + torch.triu(gram, 1).T
        if not self.center or seg.sums is None or seg.shift is None:
            m2, mean = gram, None
        else:
            mean = seg.shift + seg.sums / seg.n
            m2 = gram - torch.outer(seg.sums, seg.sums) / seg.n
        if self._m2 is None:
            self._m2, self._mean = m2, mean
        else:
            self._m2 += m2
            if mean is not None and self._mean is not None:
                delta = mean - self._mean
                self._m2 += torch.outer(delta, delta) * (self._n * seg.n / (self._n + seg.n))
                self._mean = self._mean + delta * (seg.n / (self._n + seg.n))
        self._n += seg.n
        self._seg = _Segment()

    def finish_checks(self) -> None:
        """Raise InputError for NaN/Inf rows or fewer than 2 rows in total."""
        if self.bad_rows:
            raise InputError(
                f"{self.name} has {self.bad_rows} of {self.total_rows} rows containing NaN or Inf. "
                "Drop or repair those rows (e.g. keep Z[np.isfinite(Z).all(1)])."
            )
        if self.n < 2:
            raise InputError(f"{self.name} has {self.n} row(s); at least 2 are needed for a covariance.")

    def covariance(self) -> np.ndarray:
        """(1/N) times the accumulated cross-product, as a float64 numpy D x D matrix."""
        self.finish_checks()
        self._close_segment()
        assert self._m2 is not None
        c = self._m2.cpu().numpy() / self._n
        return (c + c.T) / 2.0


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
        if t.ndim == 2 and 2 <= t.shape[0] < t.shape[1]:
            check_matrix(t)
            return gram_spectrum(t, center, l2_normalize)
        # otherwise NaN/Inf rows are found by the accumulator (their column sums), without a pass of its own
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
