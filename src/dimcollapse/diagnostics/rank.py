"""Rank-like summaries of a spectrum: effective rank, RankMe, collapsed and explained-variance dims."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from dimcollapse.diagnostics.engine.inputs import (
    ArrayLike,
    as_tensor,
    check_fraction,
    check_matrix,
    is_matrix_like,
    spectrum_array,
)
from dimcollapse.diagnostics.spectrum import _accumulate, gram_spectrum, spectrum_of
from dimcollapse.diagnostics.threshold import COLLAPSE_THRESHOLD
from dimcollapse.errors import ConfigError


def _entropy_exp(p: np.ndarray) -> float:
    nz = p[p > 0]
    return float(np.exp(-np.sum(nz * np.log(nz))))


def effective_rank(eig: ArrayLike, eps: float = 0.0) -> float:
    """erank = exp(-sum_k p_k ln p_k), p_k = lambda_k / sum_j lambda_j + eps (Roy & Vetterli 2007); 0 if 0.

    ``eig`` is the covariance spectrum (centred). ``eps=1e-7`` gives reptrix's "RankMe" exactly (its
    ``get_rankme`` is this formula on PCA eigenvalues), which is not Garrido et al.'s RankMe (``rankme``).
    """
    lam = np.clip(spectrum_array(eig), 0.0, None)
    total = lam.sum()
    if total <= 0:
        return 0.0
    return _entropy_exp(lam / total + eps)


def rankme(Z: ArrayLike | Iterable[ArrayLike], eps: float = 1e-7, block_size: int | None = None) -> float:
    """RankMe = exp(-sum p_k ln p_k), p_k = s_k / ||s||_1 + eps, s = svals of raw Z (Garrido 2023).

    Uncentred; the first min(N, d) singular values. ``eps=1e-5`` gives stable-pretraining's RankMe callback.
    """
    if is_matrix_like(Z):
        t = as_tensor(Z)
        check_matrix(t)
        if t.ndim == 2 and 2 <= t.shape[0] < t.shape[1]:  # N < D: the N x N Gram has the same sigma^2 / N
            lam_g = np.clip(gram_spectrum(t, center=False), 0.0, None)[: int(t.shape[0])]
            return rankme_from_singular_values(np.sqrt(lam_g), eps)
    acc = _accumulate(Z, center=False, l2_normalize=False, block_size=block_size)
    gram = acc.covariance()  # Z^T Z / N: its eigenvalues are sigma^2 / N
    lam = np.clip(spectrum_of(gram), 0.0, None)[: min(acc.n, gram.shape[0])]
    return rankme_from_singular_values(np.sqrt(lam), eps)


def rankme_from_singular_values(sigma: ArrayLike, eps: float = 1e-7) -> float:
    """RankMe from singular values: exp(-sum p_k ln p_k), p_k = sigma_k / ||sigma||_1 + eps (Garrido 2023)."""
    s = np.clip(spectrum_array(sigma, "sigma"), 0.0, None)
    total = s.sum()
    if total <= 0:
        return 0.0
    return _entropy_exp(s / total + eps)


def collapsed_dimensions(eig: ArrayLike, rel_floor: float = COLLAPSE_THRESHOLD) -> int:
    """Number of eigenvalues lambda_k < rel_floor * lambda_max (SPEC 1.1 collapsed dimensions)."""
    if not rel_floor >= 0:
        raise ConfigError(f"rel_floor must be >= 0, got {rel_floor!r}.")
    lam = spectrum_array(eig)
    top = lam[0]
    if top <= 0:
        return int(lam.size)
    return int(np.sum(lam < rel_floor * top))


def explained_variance_dims(eig: ArrayLike, fraction: float = 0.9) -> int:
    """Smallest m with sum_{k<=m} lambda_k >= fraction * sum_k lambda_k (eigenvalues clipped at 0)."""
    fraction = check_fraction(fraction, "fraction")
    lam = np.clip(spectrum_array(eig), 0.0, None)
    total = lam.sum()
    if total <= 0:
        return 0
    cum = np.cumsum(lam) / total
    return int(min(np.searchsorted(cum, fraction * (1 - 1e-12)) + 1, lam.size))


__all__ = [
    "collapsed_dimensions",
    "effective_rank",
    "explained_variance_dims",
    "rankme",
    "rankme_from_singular_values",
]
