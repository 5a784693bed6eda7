"""Input checks shared by the diagnostics: 2-D shape, enough rows, finite values, array/tensor/batches."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from dimcollapse.errors import ConfigError, InputError

ArrayLike = Any  # np.ndarray | torch.Tensor | nested sequence of numbers


def is_matrix_like(z: object) -> bool:
    """True for a numpy array or torch tensor (one matrix), False for an iterable of batches."""
    if isinstance(z, (np.ndarray, torch.Tensor)):
        return True
    if isinstance(z, (list, tuple)):
        if not z:
            return True
        first = z[0]
        if isinstance(first, (tuple, list)) and first:
            first = first[0]  # (features, labels) pairs
        return not isinstance(first, (np.ndarray, torch.Tensor))
    return not isinstance(z, (Iterable, Iterator))


def as_tensor(z: ArrayLike, name: str = "Z") -> torch.Tensor:
    """Return ``z`` as a floating torch tensor without copying when possible (numpy -> CPU tensor)."""
    if isinstance(z, torch.Tensor):
        t = z
    else:
        try:
            arr = np.asarray(z)
        except (TypeError, ValueError) as e:
            raise InputError(
                f"{name} must be a numeric array or tensor, got {type(z).__name__}: {e}"
            ) from None
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise InputError(f"{name} must be numeric, got dtype {arr.dtype}. Convert it to float first.")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        raise InputError(f"{name} is complex; pass real-valued features.")
    if not t.is_floating_point():
        t = t.to(torch.float64)
    return t


def check_matrix(t: torch.Tensor, name: str = "Z", min_rows: int = 2) -> None:
    """Raise InputError unless ``t`` is 2-D with at least ``min_rows`` rows, >= 1 column, all finite."""
    if t.ndim != 2:
        raise InputError(
            f"{name} must be a 2-D matrix (rows = samples, columns = features), got shape {tuple(t.shape)}. "
            "Reshape it, e.g. Z.reshape(len(Z), -1)."
        )
    if t.shape[0] < min_rows:
        raise InputError(f"{name} has {t.shape[0]} row(s); at least {min_rows} are needed.")
    if t.shape[1] < 1:
        raise InputError(f"{name} has no columns (shape {tuple(t.shape)}).")
    bad = count_nonfinite_rows(t)
    if bad:
        raise InputError(
            f"{name} has {bad} of {t.shape[0]} rows containing NaN or Inf. "
            "Drop or repair those rows (e.g. Z[np.isfinite(Z).all(1)])."
        )


def count_nonfinite_rows(t: torch.Tensor) -> int:
    """Number of rows of a 2-D tensor that contain NaN or Inf."""
    with torch.no_grad():
        # Fast path: a row sum is finite iff the row is (unless finite values overflow; re-check those).
        suspect = ~torch.isfinite(t.sum(dim=1))
        if not bool(suspect.any()):
            return 0
        return int((~torch.isfinite(t[suspect])).any(dim=1).sum().item())


def matrix(z: ArrayLike, name: str = "Z", min_rows: int = 2) -> torch.Tensor:
    """Convert and validate one embedding matrix."""
    t = as_tensor(z, name)
    check_matrix(t, name, min_rows)
    return t


def check_positive_int(value: int, name: str) -> int:
    """Raise ConfigError unless ``value`` is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def check_fraction(value: float, name: str) -> float:
    """Raise ConfigError unless 0 < value <= 1."""
    if not (0.0 < float(value) <= 1.0):
        raise ConfigError(f"{name} must lie in (0, 1], got {value!r}.")
    return float(value)


def spectrum_array(eig: ArrayLike, name: str = "eig") -> np.ndarray:
    """Eigenvalues as a 1-D float64 numpy array sorted descending (validated finite, non-empty)."""
    if isinstance(eig, torch.Tensor):
        eig = eig.detach().cpu().numpy()
    arr = np.asarray(eig, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise InputError(f"{name} must be a non-empty 1-D array of eigenvalues, got shape {arr.shape}.")
    if not np.isfinite(arr).all():
        raise InputError(f"{name} has {int((~np.isfinite(arr)).sum())} NaN/Inf values.")
    return np.sort(arr)[::-1].copy()
