"""alpha-ReQ: power-law decay exponent of the eigenspectrum (Agrawal et al. 2022, SPEC 1.4)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dimcollapse.diagnostics.engine.inputs import ArrayLike, spectrum_array
from dimcollapse.diagnostics.threshold import COLLAPSE_THRESHOLD
from dimcollapse.errors import ConfigError


@dataclass(frozen=True)
class AlphaReQ:
    """Fitted exponent ``alpha`` of lambda_k ~ k^-alpha, the fit's ``r2`` and how many eigenvalues it used."""

    alpha: float
    r2: float
    n_points: int


def alpha_req(
    eig: ArrayLike,
    ranks: tuple[int, int] | None = None,
    rel_floor: float = COLLAPSE_THRESHOLD,
    weighted: bool = False,
) -> AlphaReQ:
    """Least-squares fit log lambda_k = c - alpha log k over ranks k (1-based, inclusive); R^2 of the fit.

    Eigenvalues below ``rel_floor`` times the largest (numerically zero / collapsed) are excluded.
    ``weighted=True`` weighs rank k by 1/k (the fit of reptrix's ``get_alpha``, which uses ranks 6-100;
    ``alpha_req(eig, ranks=(6, 100), weighted=True)`` equals its alpha). R^2 is of the unweighted residuals.
    Fewer than 3 usable eigenvalues give alpha = r2 = NaN.
    """
    lam = spectrum_array(eig)
    k = np.arange(1, lam.size + 1, dtype=np.float64)
    keep = lam > rel_floor * max(lam[0], 0.0)
    if lam[0] <= 0:
        keep[:] = False
    if ranks is not None:
        first, last = ranks
        if not (1 <= first < last):
            raise ConfigError(f"ranks must be (first, last) with 1 <= first < last, got {ranks!r}.")
        keep &= (k >= first) & (k <= last)
    n = int(keep.sum())
    if n < 3:
        return AlphaReQ(float("nan"), float("nan"), n)
    x = np.log(k[keep])
    y = np.log(lam[keep])
    w = 1.0 / k[keep] if weighted else np.ones(n)
    design = np.stack([x, np.ones(n)], axis=1)
    slope, intercept = np.linalg.solve(design.T @ (design * w[:, None]), design.T @ (w * y))
    resid = y - (slope * x + intercept)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else 1.0
    return AlphaReQ(float(-slope), r2, n)
