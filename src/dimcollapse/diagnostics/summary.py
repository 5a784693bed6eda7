"""All scalar collapse metrics of one embedding matrix in one call (what `dimcollapse analyze` prints).

The metrics are the catalogue's (``diagnostics/catalogue.py``); this module computes the shared
``Context`` (covariance and Gram spectra, pointwise LIDs on at most ``lid_max_points`` rows) once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dimcollapse.diagnostics.catalogue import COLLAPSE_THRESHOLD, Context, evaluate
from dimcollapse.diagnostics.engine.inputs import ArrayLike, check_positive_int, matrix
from dimcollapse.diagnostics.lid import lid_mle, lid_mom
from dimcollapse.diagnostics.lidar import LidarAccumulator
from dimcollapse.diagnostics.spectrum import (
    covariance_matrix,
    covariance_spectrum,
    gram_spectrum,
    spectrum_of,
)


def lid_subset(z: Any, max_points: int | None, seed: int = 0) -> Any:
    """At most ``max_points`` rows of z drawn at random (fixed ``seed``, kept in row order)."""
    n = z.shape[0]
    if max_points is None or n <= max_points:
        return z
    gen = torch.Generator().manual_seed(seed)
    idx = np.sort(torch.randperm(n, generator=gen)[:max_points].numpy())
    return z[idx] if isinstance(z, np.ndarray) else z[torch.from_numpy(idx).to(z.device)]


def _numpy(a: Any) -> np.ndarray:
    return np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float64)


def embedding_context(
    z: Any,
    k: int | None = 20,
    lid_max_points: int | None = 20000,
    seed: int = 0,
    rel_floor: float = COLLAPSE_THRESHOLD,
    views: ArrayLike | None = None,
    keep_cov: bool = False,
    cov_dims: int | None = None,
) -> Context:
    """Context of a validated matrix z: covariance + Gram spectra, LIDs (k neighbours; None: skip), LiDAR.

    With fewer rows than columns (N < D) both spectra come from the N x N Gram matrix (never a D x D one);
    ``keep_cov`` keeps the covariance of the first ``cov_dims`` columns (all when None) for figures.
    """
    n, d = int(z.shape[0]), int(z.shape[1])
    wide = 2 <= n < d
    t = torch.as_tensor(z)
    ctx = Context(
        eig=covariance_spectrum(t),
        gram_eig=gram_spectrum(t, center=False) if wide else spectrum_of(covariance_matrix(t, center=False)),
        n=n,
        threshold=rel_floor,
        cov=covariance_matrix(t[:, :cov_dims]) if keep_cov else None,
    )
    if k is not None:
        sub = lid_subset(z, lid_max_points, seed)
        ctx.lid_mle, ctx.lid_mom = _numpy(lid_mle(sub, k=k)), _numpy(lid_mom(sub, k=k))
        ctx.extra.update({"lid_k": float(k), "lid_points": float(sub.shape[0])})
    if views is not None:
        acc = LidarAccumulator()
        acc.update(views)
        ctx.lidar_eig = acc.eigenvalues()
    return ctx


def summarize(
    Z: ArrayLike,
    k: int = 20,
    l2_normalize: bool = False,
    rel_floor: float = COLLAPSE_THRESHOLD,
    lid_max_points: int | None = 20000,
    seed: int = 0,
    views: ArrayLike | None = None,
) -> dict[str, float]:
    """Scalar metrics of Z: every catalogue metric (erank, RankMe, alpha-ReQ, collapsed dims, LID, ...).

    Spectral metrics use every row. LID (geometric means of MLE and MoM with ``k`` neighbours) is
    O(N^2 D): when N > ``lid_max_points`` a random subset of that many rows (fixed ``seed``) serves as
    both queries and reference; ``lid_points`` records how many were used. ``l2_normalize`` applies to
    all metrics. ``views`` (n, q, d) adds LiDAR.
    """
    z = matrix(Z, "Z").detach()
    k = check_positive_int(k, "k")
    n, d = z.shape
    if l2_normalize:
        z = z.to(torch.float64) / torch.linalg.vector_norm(
            z.to(torch.float64), dim=1, keepdim=True
        ).clamp_min(1e-300)
    ctx = embedding_context(z, k, lid_max_points, seed, rel_floor, views)
    return {"n": float(n), "d": float(d), **ctx.extra, **evaluate(ctx)}
