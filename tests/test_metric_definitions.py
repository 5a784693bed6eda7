"""Each metric name says its definition: ours equals the paper's and the libraries' formulas, written here.

The libraries' formulas are re-written in numpy/torch from their published definitions (not imported):
- reptrix ``get_rankme``: exp entropy of p = lambda / sum|lambda| + 1e-7 over the centred covariance
  (PCA explained-variance) spectrum -> our ``effective_rank(eig, eps=1e-7)``, not our ``rankme``;
- reptrix ``get_alpha``: 1/k-weighted least squares of log lambda_k on -log k over ranks 6..100
  -> our ``alpha_req(eig, ranks=(6, 100), weighted=True)``;
- stable-pretraining ``RankMe``: exp entropy of p = s / sum s + 1e-5, s = singular values of the raw
  (uncentred) embeddings -> our ``rankme(Z, eps=1e-5)``;
- Garrido et al. 2023 (RankMe), eps = 1e-7 -> ``rankme(Z)``; Roy & Vetterli 2007 -> ``effective_rank``;
- Levina & Bickel 2004 MLE LID (the form LDReg and scikit-dimension's ``MLE`` use per point, with the
  k-th neighbour as reference) -> ``lid_mle``; Amsaleg et al. 2015 MoM -> ``lid_mom``.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.distance import cdist

from dimcollapse import diagnostics as dg


def _collapsed(n: int = 400, d: int = 32, rank: int = 3, seed: int = 0) -> np.ndarray:
    """Embeddings of rank ``rank`` plus a tiny isotropic noise and a large mean (a collapsed model)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, d)) * 3.0
    return z + 1e-4 * rng.standard_normal((n, d)) + 5.0


def _entropy_exp(p: np.ndarray) -> float:
    return float(np.exp(-np.sum(p * np.log(p))))


def test_effective_rank_is_roy_vetterli_and_with_eps_is_reptrix_rankme() -> None:
    z = _collapsed()
    c = z - z.mean(0)
    lam = np.linalg.svd(c, compute_uv=False) ** 2 / (len(z) - 1)  # PCA explained variance
    ratio = lam / lam.sum()
    nz = ratio[ratio > 0]
    roy = float(np.exp(-np.sum(nz * np.log(nz))))
    reptrix = _entropy_exp(ratio / np.abs(ratio).sum() + 1e-7)
    eig = dg.covariance_spectrum(z)
    assert abs(dg.effective_rank(eig) - roy) < 1e-6 * roy
    assert abs(dg.effective_rank(eig, eps=1e-7) - reptrix) < 1e-6 * reptrix
    # and it is not Garrido's RankMe: the names differ because the numbers differ
    assert abs(dg.rankme(z) - reptrix) > 0.1


def test_rankme_is_garrido_and_with_eps_1e5_is_stable_pretraining() -> None:
    z = _collapsed()
    s = torch.linalg.svdvals(torch.from_numpy(z)).numpy()  # uncentred
    garrido = _entropy_exp(s / s.sum() + 1e-7)
    spt = _entropy_exp(s / s.sum() + 1e-5)
    assert abs(dg.rankme(z) - garrido) < 1e-6 * garrido
    assert abs(dg.rankme(z, eps=1e-5) - spt) < 1e-6 * spt


def test_alpha_req_weighted_is_reptrix_alpha() -> None:
    rng = np.random.default_rng(1)
    d = 160
    basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
    z = rng.standard_normal((3000, d)) * np.arange(1, d + 1) ** -0.6 @ basis.T
    c = z - z.mean(0)
    eig = np.linalg.svd(c, compute_uv=False) ** 2 / (len(z) - 1)
    ratio = eig / eig.sum()
    k = np.arange(5, 100) + 1  # reptrix's trange 5..99 (0-based) are ranks 6..100
    y = np.log(ratio[k - 1])
    x = np.stack([-np.log(k), np.ones_like(k, dtype=float)], 1)
    w = (1.0 / k)[:, None]
    b = np.linalg.solve(x.T @ (x * w), (w * x).T @ y)
    ours = dg.alpha_req(dg.covariance_spectrum(z), ranks=(6, 100), weighted=True)
    assert abs(ours.alpha - b[0]) < 1e-8
    plain = dg.alpha_req(dg.covariance_spectrum(z), ranks=(6, 100))
    assert abs(plain.alpha - np.polyfit(-np.log(k), y, 1)[0]) < 1e-8


def test_lid_mle_and_mom_are_the_per_point_formulas() -> None:
    rng = np.random.default_rng(2)
    z = rng.standard_normal((300, 5)) @ rng.standard_normal((5, 12))
    k = 10
    dist = cdist(z, z)
    np.fill_diagonal(dist, np.inf)
    r = np.sort(dist, 1)[:, :k]
    mle = -1.0 / np.mean(np.log(r / r[:, -1:]), axis=1)
    mom = r.mean(1) / (r[:, -1] - r.mean(1))
    np.testing.assert_allclose(np.asarray(dg.lid_mle(z, k=k)), mle, rtol=1e-8)
    np.testing.assert_allclose(np.asarray(dg.lid_mom(z, k=k)), mom, rtol=1e-8)


def test_every_defined_catalogue_metric_is_in_the_docs_table_and_in_info() -> None:
    from pathlib import Path

    from dimcollapse.cli.info import metric_table
    from dimcollapse.diagnostics.catalogue import METRICS

    doc = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text()
    defined = [m for m in METRICS if m.definition]
    assert {"erank", "rankme", "alpha", "lid_mle_gmean", "lid_mom_gmean", "lidar"} <= {m.key for m in defined}
    for spec in defined:
        assert f"`{spec.key}`" in doc, f"docs/metrics.md has no row for {spec.key}"
    rows = metric_table().columns[0]._cells
    assert [m.key for m in METRICS] == rows
