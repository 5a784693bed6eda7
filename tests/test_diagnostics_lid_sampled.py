"""lid_sampled: exact LIDs of a random sample, their geometric mean and its standard error."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dimcollapse.diagnostics import lid_mle, lid_mom, lid_sampled
from dimcollapse.errors import ConfigError, InputError


def _set(n: int = 1500, seed: int = 0) -> np.ndarray:
    """A 5-dimensional Gaussian cloud linearly embedded in 12 dimensions (LID about 5)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 5)) @ rng.standard_normal((5, 12))


def test_sampled_lids_equal_the_full_exact_lids_at_those_rows() -> None:
    z = _set()
    est = lid_sampled(z, k=10, sample=300, seed=3)
    full = lid_mle(z, k=10)
    assert est.rows.shape == (300,) and len(set(est.rows.tolist())) == 300
    np.testing.assert_allclose(est.lids, full[est.rows], rtol=1e-9)
    logs = np.log(full[est.rows])
    assert est.gmean == pytest.approx(math.exp(logs.mean()), rel=1e-12)
    se = logs.std(ddof=1) / math.sqrt(300) * math.sqrt(1 - 300 / len(z))
    assert est.rel_se == pytest.approx(se, rel=1e-9)
    lo, hi = est.ci95
    assert lo == pytest.approx(math.exp(logs.mean() - 1.96 * se), rel=1e-4) and lo < est.gmean < hi
    # the sample estimates the whole set's geometric mean within its stated error
    assert abs(math.log(est.gmean) - np.log(full).mean()) < 4 * est.rel_se


def test_whole_set_has_no_sampling_error_and_mom_works() -> None:
    z = _set(400, seed=1)
    est = lid_sampled(z, k=8, sample=10_000, method="mom")
    full = lid_mom(z, k=8)
    assert est.rows.tolist() == list(range(400)) and est.rel_se == 0.0
    assert est.gmean == pytest.approx(math.exp(np.log(full).mean()), rel=1e-9)


def test_duplicates_give_zero_lids_left_out_and_counted() -> None:
    z = np.concatenate([_set(300, seed=2), np.zeros((30, 12))])  # 30 copies of one point
    est = lid_sampled(z, k=5, sample=330)
    assert est.n_zero == 30 and np.all(est.lids[-30:] == 0)
    assert est.gmean == pytest.approx(math.exp(np.log(est.lids[:300]).mean()), rel=1e-12)


def test_bad_arguments_raise() -> None:
    z = _set(50)
    with pytest.raises(ConfigError, match="k must be at least 2"):
        lid_sampled(z, k=1)
    with pytest.raises(ConfigError, match="sample"):
        lid_sampled(z, sample=0)
    with pytest.raises(InputError, match="k=60"):
        lid_sampled(z, k=60)
