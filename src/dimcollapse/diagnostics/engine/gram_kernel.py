"""The streamed covariance's Gram kernel on CPU, chosen per host: chunks converted in cache and summed in
place by numpy's own OpenBLAS ``cblas_dsyrk`` (C = A^T A + beta C, upper triangle) on AVX-512 cores, the
blocked numpy product ``A.T @ A`` (``covariance_sums.BlockSlot``) elsewhere.

Why per host (benchmarks/README.md, "Fifth pass"): on an Intel Xeon whose OpenBLAS runs its SkylakeX
kernels, converting a 16 MB block and then multiplying it cost 1.19x the one-shot float64 syrk of the
converted data; converting 2 MB chunks that are still in cache when the syrk reads them, summed in place
(no D x D product written, mirrored and added per block), cost 1.08x. On the AMD AVX2 host the blocked
product was measured fastest (it runs at the floor there) and is kept.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_info

_AVX512_CORES = {"skylakex", "cooperlake", "sapphirerapids"}  # OpenBLAS core names (threadpoolctl)
_CHUNK_BYTES = 2**21  # float64 bytes of one converted chunk: stays in a 2 MB L2 for the syrk to read
_MIN_CHUNK_ROWS = 256  # fewer rows per syrk call and the D x D update per call starts to show
_ROW_MAJOR, _UPPER, _TRANS = 101, 121, 112  # CBLAS enums

Syrk = Callable[[int, int, int, int, float], None]  # (n, k, a pointer, c pointer, beta)


def _numpy_openblas() -> list[dict[str, str]]:
    """threadpoolctl's records of the OpenBLAS libraries numpy's wheels bundle (``numpy.libs``)."""
    return [
        info
        for info in threadpool_info()
        if info.get("internal_api") == "openblas" and Path(info["filepath"]).parent.name == "numpy.libs"
    ]


@functools.cache
def inplace_syrk() -> Syrk | None:
    """C += A^T A (upper triangle, beta times C first) through numpy's bundled OpenBLAS, via its 64-bit
    integer CBLAS entry; None when numpy was built against another BLAS (then the numpy product is used).
    A is k x n and C is n x n, both row-major float64 and contiguous; ctypes releases the GIL."""
    for info in _numpy_openblas():
        lib = ctypes.CDLL(info["filepath"])  # already loaded by numpy: the same library and thread setting
        for name in ("scipy_cblas_dsyrk64_", "cblas_dsyrk64_"):
            fn = getattr(lib, name, None)
            if fn is None:
                continue
            fn.restype = None
            i64, dbl, ptr = ctypes.c_int64, ctypes.c_double, ctypes.c_void_p
            fn.argtypes = [ctypes.c_int] * 3 + [i64, i64, dbl, ptr, i64, dbl, ptr, i64]

            def call(n: int, k: int, a: int, c: int, beta: float, fn: Callable[..., None] = fn) -> None:
                fn(_ROW_MAJOR, _UPPER, _TRANS, n, k, 1.0, a, n, beta, c, n)

            return call
    return None


def prefers_chunks(cores: set[str], has_syrk: bool) -> bool:
    """The per-host rule: chunks where numpy's OpenBLAS runs an AVX-512 core (SkylakeX, Cooperlake,
    SapphireRapids) and exposes cblas_dsyrk; other hosts (AVX2: Haswell, Zen) keep the blocked product."""
    return has_syrk and any(core.lower() in _AVX512_CORES for core in cores)


@functools.cache
def use_chunks() -> bool:
    """True where the chunked in-place syrk is this host's kernel (``prefers_chunks`` of the BLAS core
    threadpoolctl reports for numpy's OpenBLAS)."""
    cores = {str(info.get("architecture", "")) for info in _numpy_openblas()}
    return prefers_chunks(cores, inplace_syrk() is not None)


def chunk_rows(d: int) -> int:
    """Rows per converted chunk: about 2 MB of float64, at least 256 rows."""
    return max(_MIN_CHUNK_ROWS, _CHUNK_BYTES // (8 * (d + 1)))


class ChunkSlot:
    """One worker's chunk buffer (rows x (d + 1), last column ones; rows: ``chunk_rows(d)``, fewer for a
    smaller block) and its block's Gram sum.

    ``products`` converts a block chunk by chunk (float32 -> float64 minus the shift, l2-normalised first
    if asked) and sums each chunk's Gram product in place into the upper triangle of ``gram``; the lower
    triangle stays zero (the lanes' sums are symmetrised from their upper triangles at the end).
    """

    def __init__(self, d: int, syrk: Syrk, rows: int) -> None:
        self.buf = np.empty((rows, d + 1))
        self.buf[:, d] = 1.0
        self.gram = np.zeros((d + 1, d + 1))
        self.syrk = syrk

    def products(
        self, block: np.ndarray, shift: torch.Tensor | None, l2_normalize: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(upper triangle of x^T x, column sums of x) of x = block - shift, from one in-place syrk per
        chunk of [x, 1]; NaN/Inf rows make them non-finite (the caller's check)."""
        d, rows = block.shape[1], self.buf.shape[0]
        src, buf = torch.from_numpy(block), torch.from_numpy(self.buf)
        beta = 0.0
        for start in range(0, block.shape[0], rows):
            k = min(rows, block.shape[0] - start)
            x = buf[:k, :d]
            if src.dtype == torch.float64 and shift is not None and not l2_normalize:
                torch.sub(src[start : start + k], shift, out=x)  # one pass: no conversion needed
            else:
                x.copy_(src[start : start + k])
                if l2_normalize:
                    x.div_(torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-300))
                if shift is not None:
                    x.sub_(shift)
            self.syrk(d + 1, k, self.buf.ctypes.data, self.gram.ctypes.data, beta)
            beta = 1.0
        g = torch.from_numpy(self.gram)
        return g[:d, :d], g[:d, d]
