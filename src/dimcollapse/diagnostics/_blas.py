"""C += X^T X in place through numpy's own BLAS (cblas dsyrk with beta = 1), when numpy exposes it.

numpy has no call for a symmetric rank-k update into an existing matrix: ``X.T @ X`` writes a new D x D
result (and mirrors its triangle), so a blocked Gram sum pays a D x D temporary and an addition per block.
numpy's Linux/macOS wheels bundle OpenBLAS (scipy-openblas64) and export ``scipy_cblas_dsyrk64_``; this
module calls it through ctypes: the same BLAS, and the same thread settings, as ``X.T @ X``. Where that
library is absent (other numpy builds) ``syrk_update`` returns False and the caller uses ``X.T @ X``.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
from typing import Any

import numpy as np

_ROW_MAJOR, _UPPER, _TRANS = 101, 121, 112  # CBLAS enum values


@functools.cache
def _dsyrk() -> Any:
    """numpy's bundled cblas_dsyrk (64-bit integer interface), or None."""
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "libscipy_openblas64_*"))):
        try:
            fn = ctypes.CDLL(path).scipy_cblas_dsyrk64_
        except (OSError, AttributeError):
            continue
        i32, i64, f64, ptr = ctypes.c_int, ctypes.c_int64, ctypes.c_double, ctypes.c_void_p
        fn.argtypes = [i32, i32, i32, i64, i64, f64, ptr, i64, f64, ptr, i64]
        fn.restype = None
        return fn
    return None


def syrk_update(c: np.ndarray, x: np.ndarray) -> bool:
    """Upper triangle of c += x^T x (c: C-contiguous float64 D x D; x: float64 rows, unit column stride);
    False (c untouched) when numpy's BLAS is not reachable or the layouts do not fit."""
    fn = _dsyrk()
    m, d = x.shape
    fits = c.dtype == np.float64 and x.dtype == np.float64 and c.flags.c_contiguous and c.shape == (d, d)
    if fn is None or not fits or x.strides[1] != 8 or x.strides[0] % 8 or m == 0:
        return False
    lda = max(d, x.strides[0] // 8)
    fn(_ROW_MAJOR, _UPPER, _TRANS, d, m, 1.0, x.ctypes.data, lda, 1.0, c.ctypes.data, d)
    return True
