"""One-block covariance: the direct float64 path for a CPU matrix whose float64 copy is small.

C = (1/N) (Z - mean Z)^T (Z - mean Z), computed as ``np.cov`` does (one float64 copy, its mean subtracted
in place, one BLAS syrk of the centred copy), without np.cov's generic argument handling and with the
finiteness check on the diagonal only.
Below ``ONE_BLOCK_BYTES`` the streamed accumulator's fixed costs (lanes, worker threads, the BLAS thread
limit, the merge) dominate: 1.1 ms against np.cov's 0.6 ms at 2,000 x 64 on the benchmark host; with two
threads, inputs of a few streamed blocks also leave a worker idle (0.59x np.cov at 40,000 x 256, 78 MB,
idle Intel AVX-512 host) while this path's threaded syrk is np.cov's own (1.02x). This path holds one
float64 copy of the input (at most ``ONE_BLOCK_BYTES``: bounded, whatever N) and
uses no torch op and no worker thread, so its result does not depend on the torch thread count; numpy's
BLAS splits a syrk over output columns, each entry summed in the same order whatever its threads.
"""

from __future__ import annotations

import numpy as np
import torch

from dimcollapse.diagnostics.engine.inputs import count_nonfinite_rows
from dimcollapse.errors import InputError

ONE_BLOCK_BYTES = 128 * 2**20  # float64 bytes of the copy; above it the streamed path wins at 1 and 2 threads


def one_block_array(z: object, block_size: int | None) -> np.ndarray | None:
    """The numpy view of ``z`` when the one-block path applies, else None: a CPU float32/float64 matrix
    (numpy array or tensor) with N >= D >= 1, N >= 2, a float64 copy of at most ``ONE_BLOCK_BYTES`` and
    no ``block_size`` asking for smaller blocks."""
    if isinstance(z, torch.Tensor):
        if z.device.type != "cpu" or z.is_conj() or z.is_neg():
            return None
        z = z.detach().numpy()
    if not isinstance(z, np.ndarray) or z.dtype not in (np.float32, np.float64) or z.ndim != 2:
        return None
    n, d = z.shape
    if n < 2 or d < 1 or n < d or 8 * n * d > ONE_BLOCK_BYTES:
        return None
    return z if block_size is None or block_size >= n else None


def one_block_covariance(
    z: np.ndarray, center: bool = True, l2_normalize: bool = False, name: str = "Z"
) -> np.ndarray:
    """C = (1/N) sum_i (z_i - mean)(z_i - mean)^T (raw second moment if not ``center``), float64, in one
    block; rows l2-normalised first if asked. NaN/Inf rows raise InputError with their count."""
    n = z.shape[0]
    x = z.astype(np.float64)  # the one copy; everything after it is in place
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # bad rows are reported below
        if l2_normalize:
            x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
        if center:
            mean = np.add.reduce(x, axis=0)
            mean /= n
            x -= mean
        c = x.T @ x
        c /= n
    if not np.isfinite(np.diagonal(c)).all():  # |c_ij| <= sqrt(c_ii c_jj): the diagonal sees every bad value
        _refuse(torch.from_numpy(z), name)
    return c


def _refuse(t: torch.Tensor, name: str) -> None:
    """Raise the accumulator's messages: the count of NaN/Inf rows, or an overflow of finite values."""
    bad = count_nonfinite_rows(t)
    if bad:
        raise InputError(
            f"{name} has {bad} of {t.shape[0]} rows containing NaN or Inf. "
            "Drop or repair those rows (e.g. keep Z[np.isfinite(Z).all(1)])."
        )
    raise InputError(
        f"{name}: values are so large that their squares overflow float64 "
        f"(max |z| = {float(t.abs().max()):.3g}). Rescale the data, e.g. Z / Z.abs().max()."
    )
