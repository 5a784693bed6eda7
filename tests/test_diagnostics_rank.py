"""Effective rank, RankMe, alpha-ReQ, collapsed / explained-variance dimensions against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dimcollapse.diagnostics import (
    alpha_req,
    collapsed_dimensions,
    covariance_spectrum,
    effective_rank,
    explained_variance_dims,
    rankme,
    rankme_from_singular_values,
)
from dimcollapse.errors import ConfigError, InputError


def test_erank_of_isotropic_data_is_about_d() -> None:
    z = np.random.default_rng(0).standard_normal((20000, 32))
    er = effective_rank(covariance_spectrum(z))
    assert 31.5 < er <= 32.0


def test_erank_of_rank_one_data_is_one() -> None:
    rng = np.random.default_rng(1)
    z = rng.standard_normal((500, 1)) @ rng.standard_normal((1, 16)) + 3.0
    assert effective_rank(covariance_spectrum(z)) == pytest.approx(1.0, abs=1e-6)


def test_erank_closed_form_on_hand_spectrum() -> None:
    lam = np.array([4.0, 2.0, 1.0, 1.0, 0.0, -1e-17])  # negative round-off is clipped
    p = np.array([0.5, 0.25, 0.125, 0.125])
    assert effective_rank(lam) == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-12)
    assert effective_rank(np.zeros(4)) == 0.0
    assert effective_rank(np.full(7, 3.0)) == pytest.approx(7.0)


def test_rankme_matches_closed_form_from_planted_singular_values() -> None:
    rng = np.random.default_rng(2)
    n, d = 300, 10
    s = np.array([50.0, 20, 10, 5, 2, 1, 0.5, 0.1, 0.0, 0.0])
    u, _ = np.linalg.qr(rng.standard_normal((n, d)))
    v, _ = np.linalg.qr(rng.standard_normal((d, d)))
    z = (u * s) @ v.T  # singular values are exactly s (uncentred)
    p = s / s.sum() + 1e-7
    expected = math.exp(-(p * np.log(p)).sum())
    assert rankme(z) == pytest.approx(expected, rel=1e-6)
    assert rankme(torch.from_numpy(z)) == pytest.approx(expected, rel=1e-6)
    assert rankme_from_singular_values(s) == pytest.approx(expected, rel=1e-12)


def test_rankme_is_not_centred_and_ignores_missing_singular_values_when_n_lt_d() -> None:
    rng = np.random.default_rng(3)
    z = rng.standard_normal((5, 40))
    s = np.linalg.svd(z, compute_uv=False)  # 5 values
    assert rankme(z) == pytest.approx(rankme_from_singular_values(s), rel=1e-6)
    shifted = z + 10.0  # a mean dominates the uncentred singular values
    assert rankme(shifted) < rankme(z)


def test_alpha_req_recovers_planted_power_law() -> None:
    k = np.arange(1, 201, dtype=float)
    for alpha in (0.5, 1.0, 2.3):
        fit = alpha_req(3.0 * k**-alpha)
        assert fit.alpha == pytest.approx(alpha, rel=1e-9)
        assert fit.r2 == pytest.approx(1.0, abs=1e-12)


def test_alpha_req_on_sampled_data_and_rank_range() -> None:
    rng = np.random.default_rng(4)
    k = np.arange(1, 65, dtype=float)
    z = rng.standard_normal((40000, 64)) * np.sqrt(k**-1.5)
    fit = alpha_req(covariance_spectrum(z), ranks=(1, 40))
    assert fit.alpha == pytest.approx(1.5, abs=0.08)
    assert fit.r2 > 0.98 and fit.n_points == 40
    # a broken power law: the range restricts the fit
    lam = np.concatenate([k[:32] ** -1.0, (k[31] ** -1.0) * (k[32:] / k[31]) ** -4.0])
    assert alpha_req(lam, ranks=(1, 32)).alpha == pytest.approx(1.0, rel=1e-9)
    assert alpha_req(lam).alpha > 1.5


def test_alpha_req_excludes_collapsed_tail() -> None:
    lam = np.concatenate([np.arange(1, 11, dtype=float) ** -2.0, np.zeros(5)])
    fit = alpha_req(lam)
    assert fit.n_points == 10 and fit.alpha == pytest.approx(2.0)
    assert math.isnan(alpha_req(np.array([1.0, 0.0, 0.0])).alpha)
    with pytest.raises(ConfigError):
        alpha_req(lam, ranks=(5, 2))


def test_collapsed_dimensions_counts_relative_floor() -> None:
    lam = np.array([1.0, 0.5, 1e-5, 9.9e-7, 1e-9, 0.0, -1e-12])
    assert collapsed_dimensions(lam) == 4
    assert collapsed_dimensions(lam, rel_floor=1e-4) == 5
    assert collapsed_dimensions(np.zeros(3)) == 3
    rng = np.random.default_rng(5)
    z = rng.standard_normal((300, 3)) @ rng.standard_normal((3, 12))  # rank 3 in 12 dims
    assert collapsed_dimensions(covariance_spectrum(z)) == 9


def test_explained_variance_dims() -> None:
    lam = np.array([5.0, 3.0, 1.0, 0.5, 0.5])  # cumulative 0.5, 0.8, 0.9, 0.95, 1.0
    assert explained_variance_dims(lam, 0.5) == 1
    assert explained_variance_dims(lam, 0.9) == 3
    assert explained_variance_dims(lam, 0.91) == 4
    assert explained_variance_dims(lam, 1.0) == 5
    with pytest.raises(ConfigError):
        explained_variance_dims(lam, 1.5)


def test_bad_spectrum_raises() -> None:
    with pytest.raises(InputError):
        effective_rank(np.array([1.0, np.nan]))
    with pytest.raises(InputError):
        effective_rank(np.zeros((2, 2)))
