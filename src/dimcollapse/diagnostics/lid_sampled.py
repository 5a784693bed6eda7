"""Geometric-mean LID of a large set from a random sample of rows with exact neighbours (SPEC 1.7).

Every row's LID needs all N x N distances (O(N^2 D): out of reach at N = 1,000,000). Their geometric mean
exp(mean_i ln LID_i) is estimated from s rows drawn without replacement: each sampled row's k exact
nearest neighbours among all N rows (the tiled exact search, O(s N D)) give its exact LID, so the
estimate has no neighbour error (recall 1), only sampling error. The standard error of mean ln LID is
se = sd(ln LID) / sqrt(s) * sqrt(1 - s / N) (finite-population correction); to first order it is also the
relative standard error of the geometric mean, and the 95% interval is exp(mean ln LID +- 1.96 se).
As in ``lid_summary``, rows with LID 0 (all k neighbours are duplicates of the row) are left out of the
geometric mean and counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dimcollapse.diagnostics.engine.inputs import ArrayLike, check_positive_int, matrix
from dimcollapse.diagnostics.engine.knn import sample_exact_distances
from dimcollapse.diagnostics.lid import Method, _check_k, lid_from_distances
from dimcollapse.errors import InputError

Z95 = 1.959963984540054  # two-sided 95% normal quantile


@dataclass(frozen=True)
class SampledLid:
    """Geometric-mean LID of a set estimated from the exact LIDs of a random sample of its rows."""

    gmean: float  # exp(mean ln LID) over the sampled rows with LID > 0
    rel_se: float  # standard error of ln gmean (= relative standard error of gmean to first order)
    ci95: tuple[float, float]  # exp(mean ln LID -+ 1.96 se)
    lids: np.ndarray  # exact pointwise LIDs of the sampled rows (float64)
    rows: np.ndarray  # their indices into Z (sorted)
    n: int  # rows of Z
    n_zero: int  # sampled rows with LID 0 (left out of the geometric mean)


def lid_sampled(
    Z: ArrayLike,
    k: int = 20,
    sample: int = 5000,
    method: Method = "mle",
    seed: int = 0,
    block_size: int = 2048,
) -> SampledLid:
    """gmean LID = exp(mean ln LID_i) over ``sample`` random rows i, each LID_i from its exact k nearest
    rows of Z (itself excluded); se = sd(ln LID_i) / sqrt(s) * sqrt(1 - s/N). ``sample >= N``: every row."""
    _check_k(k)
    sample = check_positive_int(sample, "sample")
    z = matrix(Z, "Z").detach()
    n = int(z.shape[0])
    if k >= n:
        raise InputError(f"k={k} neighbours requested but Z has only {n} rows. Use k < N.")
    s = min(sample, n)
    rows = np.sort(np.random.default_rng(seed).choice(n, s, replace=False))
    dist = sample_exact_distances(z, torch.from_numpy(rows).to(z.device), k, block_size)
    lids = lid_from_distances(dist, method).cpu().numpy().astype(np.float64)
    logs = np.log(lids[lids > 0])
    if logs.size == 0:
        return SampledLid(0.0, math.inf, (0.0, 0.0), lids, rows, n, int(lids.size))
    mean = float(logs.mean())
    sd = float(logs.std(ddof=1)) if logs.size > 1 else math.inf
    fpc = max(0.0, 1.0 - s / n)  # finite-population correction: 0 when every row is in the sample
    se = 0.0 if fpc == 0.0 else sd / math.sqrt(logs.size) * math.sqrt(fpc)
    ci = (math.exp(mean - Z95 * se), math.exp(mean + Z95 * se))
    return SampledLid(math.exp(mean), se, ci, lids, rows, n, int(lids.size - logs.size))
