"""All scalar collapse metrics of one embedding matrix in one call (what `dimcollapse analyze` prints)."""

from __future__ import annotations

import numpy as np
import torch

from dimcollapse.diagnostics._validate import ArrayLike, check_positive_int, matrix
from dimcollapse.diagnostics.alpha_req import alpha_req
from dimcollapse.diagnostics.lid import lid_mle, lid_mom, lid_summary
from dimcollapse.diagnostics.rank import (
    collapsed_dimensions,
    effective_rank,
    explained_variance_dims,
    rankme,
)
from dimcollapse.diagnostics.spectrum import covariance_spectrum


def summarize(
    Z: ArrayLike,
    k: int = 20,
    l2_normalize: bool = False,
    rel_floor: float = 1e-6,
    lid_max_points: int | None = 20000,
    seed: int = 0,
) -> dict[str, float]:
    """Scalar metrics of Z: erank, RankMe, alpha-ReQ (+R^2), collapsed dims, dims for 90/99%, LID (SPEC 1).

    Spectral metrics use every row. LID (geometric means of MLE and MoM with ``k`` neighbours) is
    O(N^2 D): when N > ``lid_max_points`` a random subset of that many rows (fixed ``seed``) serves as
    both queries and reference; ``lid_points`` records how many were used. ``l2_normalize`` applies to
    all metrics.
    """
    z = matrix(Z, "Z").detach()
    k = check_positive_int(k, "k")
    n, d = z.shape
    if l2_normalize:
        z = z.to(torch.float64) / torch.linalg.vector_norm(
            z.to(torch.float64), dim=1, keepdim=True
        ).clamp_min(1e-300)
    eig = covariance_spectrum(z)
    fit = alpha_req(eig, rel_floor=rel_floor)
    sub = z
    if lid_max_points is not None and n > lid_max_points:
        gen = torch.Generator().manual_seed(seed)
        sub = z[torch.randperm(n, generator=gen)[:lid_max_points].to(z.device)]
    lmle = lid_summary(lid_mle(sub, k=k))
    lmom = lid_summary(lid_mom(sub, k=k))
    top = float(eig[0])
    return {
        "n": float(n),
        "d": float(d),
        "erank": effective_rank(eig),
        "rankme": rankme(z),
        "alpha": fit.alpha,
        "alpha_r2": fit.r2,
        "collapsed_dims": float(collapsed_dimensions(eig, rel_floor)),
        "dims_90": float(explained_variance_dims(eig, 0.9)),
        "dims_99": float(explained_variance_dims(eig, 0.99)),
        "eig_max": top,
        "eig_min": float(eig[-1]),
        "total_variance": float(np.clip(eig, 0, None).sum()),
        "lid_k": float(k),
        "lid_points": float(sub.shape[0]),
        "lid_mle_gmean": lmle["gmean"],
        "lid_mle_median": lmle["median"],
        "lid_mom_gmean": lmom["gmean"],
        "lid_mom_median": lmom["median"],
    }
