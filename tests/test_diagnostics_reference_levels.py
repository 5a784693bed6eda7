"""Reference levels the report draws: alignment of random orthonormal bases, rank bounds of layer shapes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import gammaln
from scipy.stats import ortho_group

from dimcollapse.diagnostics.alignment import alignment_matrix, random_alignment
from dimcollapse.diagnostics.weights import rank_bound
from dimcollapse.errors import InputError


def _mean_abs_coordinate(n: int) -> float:
    """E|x_1| for x uniform on the unit sphere in R^n: Gamma(n/2) / (sqrt(pi) Gamma((n+1)/2))."""
    return float(np.exp(gammaln(n / 2) - gammaln((n + 1) / 2)) / np.sqrt(np.pi))


@pytest.mark.parametrize(("n", "r1", "r2"), [(64, 64, 64), (128, 32, 128), (16, 9, 16)])
def test_random_alignment_matches_the_sphere_closed_form(n: int, r1: int, r2: int) -> None:
    ref = random_alignment(n, r1, r2, draws=64, seed=1)
    assert ref.mean == pytest.approx(_mean_abs_coordinate(n), rel=0.06)
    assert ref.low <= ref.mean <= ref.high and ref.draws == 64


def test_random_alignment_band_covers_independent_draws() -> None:
    """~90% of scores of scipy's Haar-orthogonal matrices fall in the 5-95% band."""
    n, r = 32, 32
    ref = random_alignment(n, r, r, draws=200, seed=0)
    rng = np.random.default_rng(123)
    scores = []
    for _ in range(200):
        u = ortho_group.rvs(n, random_state=rng)[:, :r]
        v = ortho_group.rvs(n, random_state=rng)[:, :r]
        scores.append(np.abs(np.diag(v.T @ u)).mean())
    inside = np.mean([(ref.low <= s <= ref.high) for s in scores])
    assert 0.75 <= inside <= 0.99


def test_random_weights_score_inside_the_random_band() -> None:
    """alignment_matrix of two independent Gaussian layers (Haar singular vectors) is at the random level."""
    rng = np.random.default_rng(5)
    pairs = [(rng.standard_normal((48, 30)), rng.standard_normal((20, 48))) for _ in range(30)]
    scores = [alignment_matrix(w1, w2).mean_diag for w1, w2 in pairs]
    ref = random_alignment(48, 30, 20, draws=200)
    assert abs(np.mean(scores) - ref.mean) < 0.02


def test_random_alignment_rejects_bad_sizes() -> None:
    with pytest.raises(InputError, match="r1"):
        random_alignment(8, 9, 4)


@pytest.mark.parametrize(
    "shape", [(16, 1, 3, 3), (32, 16, 1, 1), (16, 16, 3, 3), (512, 128), (10, 64), (8, 2, 3)]
)
def test_rank_bound_is_the_rank_of_a_generic_weight(shape: tuple[int, ...]) -> None:
    w = np.random.default_rng(0).standard_normal(shape).reshape(shape[0], -1)
    bound, width = rank_bound(shape)
    assert bound == np.linalg.matrix_rank(w) and width == shape[0]


def test_rank_bound_flags_the_first_conv_of_a_grey_image() -> None:
    assert rank_bound((16, 1, 3, 3)) == (9, 16)  # rank <= 9 < 16 outputs: limited by construction
    assert rank_bound((16, 3, 3, 3)) == (16, 16)  # RGB: 27 inputs per output, not limited
    with pytest.raises(InputError):
        rank_bound((16,))
