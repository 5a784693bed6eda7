"""Local intrinsic dimensionality from k-NN distances (SPEC 1.7; LDReg, Huang et al. 2024).

For a query with neighbour distances r_1 <= ... <= r_k (itself excluded):
- MLE (Levina & Bickel 2004): LID = -( (1/k) sum_{j=1..k} ln(r_j / r_k) )^{-1}
  (the j = k term is 0; scikit-dimension's ``MLE`` uses k - 1 in the numerator instead of k,
  i.e. its pointwise value is ours times (k - 1) / k).
- Method of moments (Amsaleg et al. 2015): m = (1/k) sum_j r_j, LID = m / (r_k - m).

Zero distances (duplicate points) never give NaN or Inf:
- every distance is clamped below at eps = rel_eps * s, where s is the mean k-th neighbour distance
  of the batch (detached; 1 if all distances are 0). A query with some duplicate neighbours therefore
  gets a small finite LID (duplicates pull the estimate towards 0, the dimension of a point mass);
- a query whose k-th neighbour is itself within eps (all k neighbours coincide with it) gets LID = 0;
- when all k neighbours are equidistant the estimators diverge; their denominators are clamped at
  rel_eps (MLE) and rel_eps * r_k (MoM), which caps LID at about 1 / rel_eps.
The torch functions keep gradients, so regularizers (LDReg, MinLID) can reuse them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import torch

from dimcollapse.diagnostics.engine.inputs import ArrayLike, matrix
from dimcollapse.diagnostics.engine.knn import knn_distances, neighbour_recall, sample_exact_distances
from dimcollapse.diagnostics.engine.knn_backends import BackendLike, resolve_backend
from dimcollapse.errors import ConfigError, InputError

Method = Literal["mle", "mom"]


def lid_from_distances(dists: torch.Tensor, method: Method = "mle", rel_eps: float = 1e-6) -> torch.Tensor:
    """Pointwise LID from sorted k-NN distances (n, k): MLE -1/mean_j ln(r_j/r_k) or MoM m/(r_k - m)."""
    if method not in ("mle", "mom"):
        raise ConfigError(f"unknown LID method '{method}'. Valid methods: mle, mom.")
    if dists.ndim != 2 or dists.shape[1] < 2:
        raise InputError(f"distances must have shape (n, k) with k >= 2, got {tuple(dists.shape)}.")
    if not torch.isfinite(dists.detach()).all() or bool((dists.detach() < 0).any()):
        raise InputError("distances must be finite and non-negative.")
    rk_raw = dists[:, -1]
    scale = rk_raw.detach().mean()
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    eps = rel_eps * scale
    r = dists.clamp_min(eps)
    rk = r[:, -1:]
    if method == "mle":
        s = torch.log(rk / r).mean(dim=1)
        lid = 1.0 / s.clamp_min(rel_eps)
    else:
        m = r.mean(dim=1, keepdim=True)
        lid = (m / (rk - m).clamp_min(rel_eps * rk)).squeeze(1)
    return torch.where(rk_raw <= eps, torch.zeros_like(lid), lid)


def _check_k(k: int) -> None:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 2:
        raise ConfigError(f"k must be at least 2 for an LID estimate, got {k}.")


def _lid(
    Z: ArrayLike,
    k: int,
    reference: ArrayLike | None,
    method: Method,
    block_size: int,
    backend: BackendLike = "exact",
) -> torch.Tensor:
    _check_k(k)
    d = knn_distances(Z, reference, k=k, block_size=block_size, backend=backend)
    return lid_from_distances(d, method)


# a tensor in gives a tensor out (differentiable), an array in gives a float64 numpy array out
LidArray = TypeVar("LidArray", torch.Tensor, np.ndarray)


def _out(z: LidArray, lid: torch.Tensor) -> LidArray:
    return lid if isinstance(z, torch.Tensor) else lid.detach().cpu().numpy().astype(np.float64)


def lid_mle(
    Z: LidArray,
    k: int = 20,
    reference: ArrayLike | None = None,
    block_size: int = 2048,
    backend: BackendLike = "exact",
) -> LidArray:
    """Levina-Bickel MLE LID per row: -((1/k) sum_j ln(r_j / r_k))^-1 over k nearest neighbours (SPEC 1.7).

    Neighbours come from ``reference`` (default: Z itself, the point excluded). A tensor input returns a
    tensor (differentiable); an array input returns a float64 numpy array. ``backend`` picks the k-NN
    engine (``knn_backends``); ``lid_estimate`` also reports an approximate engine's recall and LID error.
    """
    return _out(Z, _lid(Z, k, reference, "mle", block_size, backend))


def lid_mom(
    Z: LidArray,
    k: int = 20,
    reference: ArrayLike | None = None,
    block_size: int = 2048,
    backend: BackendLike = "exact",
) -> LidArray:
    """Method-of-moments LID per row: m / (r_k - m), m = (1/k) sum_j r_j (Amsaleg et al. 2015; SPEC 1.7)."""
    return _out(Z, _lid(Z, k, reference, "mom", block_size, backend))


def lid_summary(
    lids: ArrayLike, quantiles: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
) -> dict[str, float]:
    """Geometric mean exp(mean ln LID) over positive LIDs, mean, median, quantiles and count of zero LIDs."""
    if isinstance(lids, torch.Tensor):
        lids = lids.detach().cpu().numpy()
    a = np.asarray(lids, dtype=np.float64).ravel()
    if a.size == 0:
        raise InputError("lid_summary needs at least one LID value.")
    if not np.isfinite(a).all():
        raise InputError(f"{int((~np.isfinite(a)).sum())} LID values are NaN/Inf.")
    pos = a[a > 0]
    out = {
        "gmean": float(np.exp(np.mean(np.log(pos)))) if pos.size else 0.0,
        "mean": float(a.mean()),
        "median": float(np.median(a)),
        "min": float(a.min()),
        "max": float(a.max()),
        "n": float(a.size),
        "n_zero": float(a.size - pos.size),
    }
    for q in quantiles:
        out[f"q{round(q * 100):02d}"] = float(np.quantile(a, q))
    return out


@dataclass(frozen=True)
class LidEstimate:
    """Pointwise LIDs with the k-NN engine's measured quality on an exact sample (approximate engines)."""

    lids: np.ndarray
    backend: str
    recall: float | None  # recall@k of the engine's neighbours on the sample (None: exact engine)
    gmean_rel_error: float | None  # |gmean LID (engine) / gmean LID (exact) - 1| on the sample
    median_rel_error: float | None  # median over the sample of |LID (engine) / LID (exact) - 1|
    sample: int


def lid_estimate(
    Z: ArrayLike,
    k: int = 20,
    method: Method = "mle",
    backend: BackendLike = "exact",
    sample: int = 1000,
    seed: int = 0,
    block_size: int = 2048,
) -> LidEstimate:
    """LID of every row of Z (MLE or MoM, SPEC 1.7) and, for approximate engines, their recall and LID error
    against exact neighbours of ``sample`` random rows (exact search of those rows against all of Z)."""
    _check_k(k)
    spec = resolve_backend(backend)
    z = matrix(Z, "Z").detach()
    dist = knn_distances(z, None, k=k, block_size=block_size, backend=spec)
    lids = lid_from_distances(dist, method)
    out = lids.cpu().numpy().astype(np.float64)
    if not spec.approximate:
        return LidEstimate(out, spec.name, None, None, None, 0)
    m = min(sample, z.shape[0])
    rows = torch.from_numpy(np.sort(np.random.default_rng(seed).choice(z.shape[0], m, replace=False)))
    rows = rows.to(z.device)
    exact = sample_exact_distances(z, rows, k, block_size)
    lid_exact = lid_from_distances(exact, method).cpu().numpy().astype(np.float64)
    lid_found = out[rows.cpu().numpy()]
    pos = (lid_exact > 0) & (lid_found > 0)
    gmean_err = float(np.exp(np.mean(np.log(lid_found[pos])) - np.mean(np.log(lid_exact[pos]))) - 1.0)
    med = float(np.median(np.abs(lid_found[pos] / lid_exact[pos] - 1.0)))
    recall = neighbour_recall(dist[rows].detach(), exact)
    return LidEstimate(out, spec.name, recall, abs(gmean_err), med, m)
