"""Blocked k-NN and LID (MLE, MoM): brute force, planted dimension, duplicates, gradients, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from dimcollapse.diagnostics import knn_distances, lid_from_distances, lid_mle, lid_mom, lid_summary
from dimcollapse.errors import ConfigError, InputError


def test_blocked_knn_self_query_equals_brute_force() -> None:
    x = np.random.default_rng(0).standard_normal((157, 7))
    d, idx = knn_distances(x, k=6, block_size=16, return_indices=True)
    full = cdist(x, x)
    np.fill_diagonal(full, np.inf)
    order = np.argsort(full, axis=1)[:, :6]
    np.testing.assert_allclose(d.numpy(), np.take_along_axis(full, order, 1), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(idx.numpy(), order)
    assert not (idx.numpy() == np.arange(157)[:, None]).any()


def test_blocked_knn_reference_set_equals_brute_force() -> None:
    rng = np.random.default_rng(1)
    q, r = rng.standard_normal((40, 5)), rng.standard_normal((90, 5))
    d = knn_distances(torch.from_numpy(q), torch.from_numpy(r), k=90, block_size=7)
    np.testing.assert_allclose(d.numpy(), np.sort(cdist(q, r), axis=1), rtol=1e-12, atol=1e-12)


def test_blocked_knn_float32_with_duplicates_equals_brute_force() -> None:
    x = np.random.default_rng(3).standard_normal((900, 6)).astype(np.float32)
    x[10] = x[11]  # a duplicate pair: distance exactly 0, no NaN
    d, idx = knn_distances(x, k=7, block_size=128, return_indices=True)
    full = cdist(x.astype(np.float64), x.astype(np.float64))
    np.fill_diagonal(full, np.inf)
    np.testing.assert_allclose(d.numpy(), np.sort(full, 1)[:, :7], rtol=1e-5, atol=1e-6)
    assert d[10, 0] == 0.0 and idx[10, 0] == 11


def test_knn_never_builds_full_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    from dimcollapse.diagnostics.engine import knn as knn_module
    from dimcollapse.diagnostics.engine import knn_self

    shapes: list[tuple[int, ...]] = []
    for module in (knn_module, knn_self):  # queries against a reference set; a set against itself
        real = module._scores

        def spy(out: np.ndarray, a: np.ndarray, b: np.ndarray, real=real) -> None:  # type: ignore[no-untyped-def]
            real(out, a, b)
            shapes.append(tuple(out.shape))

        monkeypatch.setattr(module, "_scores", spy)
    x = np.random.default_rng(2).standard_normal((300, 4))
    knn_distances(x, k=3, block_size=50)
    self_shapes = len(shapes)
    knn_distances(x[:40], x, k=3, block_size=50)
    assert 0 < self_shapes < len(shapes)
    # blocks of at most block_size rows (the symmetric search: the last one up to 1.5 x), never N x N
    assert max(s[0] for s in shapes) <= 75 and max(s[1] for s in shapes) <= 2048 + 16


@pytest.mark.parametrize("d", [2, 5, 10])
def test_lid_of_linearly_embedded_cube_is_within_10_percent(d: int) -> None:
    # Each repetition draws N uniform points of [0,1]^d, maps them linearly (a scaled isometry) into R^64
    # and estimates the LID of the cube's centre from its k nearest sample points. N is chosen so that
    # about 2k points fall within distance 0.5 of the centre: the k-NN ball stays inside the cube (no
    # boundary effect), and independent repetitions give independent estimates. With k = 50 the MLE's
    # own finite-k bias is small and known: E[ln LID] = ln d + ln k - digamma(k - 1) (about +3%).
    # For speed only the sample points within 0.5 of the centre are embedded and searched: the map is an
    # isometry up to scale, so the k nearest of all N points are among them (checked: >= k of them).
    from scipy.special import digamma

    k, reps = 50, 100
    rng = np.random.default_rng(d)
    gen = torch.Generator().manual_seed(d)
    basis, _ = np.linalg.qr(rng.standard_normal((64, 64)))
    embed = 3.0 * basis[:d]
    ball = math.pi ** (d / 2) / math.gamma(d / 2 + 1) * 0.5**d
    n = math.ceil(2 * k / ball)
    centre = torch.from_numpy(np.full((1, d), 0.5) @ embed)
    mle, mom = [], []
    for _ in range(reps):
        pts = torch.rand(n, d, generator=gen)
        near = pts[((pts - 0.5) ** 2).sum(1) < 0.25].double()
        assert len(near) > k
        ref = near @ torch.from_numpy(embed)
        dist = knn_distances(centre, ref, k=k)
        mle.append(float(lid_from_distances(dist, "mle")[0]))
        mom.append(float(lid_from_distances(dist, "mom")[0]))
    # the array-level estimators give the same numbers as the torch formula on the same data
    assert float(lid_mle(centre, k=k, reference=ref)[0]) == pytest.approx(mle[-1], rel=1e-12)
    assert float(lid_mom(centre, k=k, reference=ref)[0]) == pytest.approx(mom[-1], rel=1e-12)
    gm_mle, gm_mom = lid_summary(np.array(mle))["gmean"], lid_summary(np.array(mom))["gmean"]
    print(f"d={d}: gmean MLE {gm_mle:.3f}, MoM {gm_mom:.3f}")
    assert abs(gm_mle - d) / d < 0.10, gm_mle
    assert abs(gm_mom - d) / d < 0.10, gm_mom
    assert gm_mle == pytest.approx(d * math.exp(math.log(k) - digamma(k - 1)), rel=0.05)


def test_lid_formulas_on_hand_distances() -> None:
    r = torch.tensor([[1.0, 2.0, 4.0]], dtype=torch.float64)
    mle = -1.0 / ((math.log(1 / 4) + math.log(2 / 4) + 0.0) / 3)
    m = 7.0 / 3
    assert lid_from_distances(r, "mle").item() == pytest.approx(mle, rel=1e-12)
    assert lid_from_distances(r, "mom").item() == pytest.approx(m / (4 - m), rel=1e-12)
    with pytest.raises(ConfigError):
        lid_from_distances(r, "bogus")  # type: ignore[arg-type]


def test_duplicates_give_finite_lid_and_finite_gradients() -> None:
    rng = np.random.default_rng(3)
    base = rng.standard_normal((60, 8))
    z = np.concatenate([base, base[:20], base[:5], base[:5]])  # pairs and quadruples of identical rows
    for est in (lid_mle, lid_mom):
        lid = est(z, k=10)
        assert np.isfinite(lid).all() and (lid >= 0).all()
    t = torch.tensor(z, requires_grad=True)
    lid_t = lid_mle(t, k=10)
    assert isinstance(lid_t, torch.Tensor) and lid_t.requires_grad
    lid_t.log1p().mean().backward()
    assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_all_identical_points_give_zero_lid_not_nan() -> None:
    z = np.ones((30, 4))
    lid = lid_mle(z, k=5)
    assert np.array_equal(lid, np.zeros(30))
    s = lid_summary(lid)
    assert s["gmean"] == 0.0 and s["n_zero"] == 30


def test_lid_is_scale_and_rotation_invariant_and_torch_matches_numpy() -> None:
    rng = np.random.default_rng(4)
    z = rng.standard_normal((200, 6))
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    a = lid_mle(z, k=8)
    np.testing.assert_allclose(lid_mle(7.0 * z @ q, k=8), a, rtol=1e-8)
    np.testing.assert_allclose(lid_mle(torch.from_numpy(z), k=8).numpy(), a, rtol=1e-12)


def test_lid_summary_statistics() -> None:
    s = lid_summary(np.array([1.0, 2.0, 4.0, 8.0]))
    assert s["gmean"] == pytest.approx(math.sqrt(8.0))
    assert s["median"] == pytest.approx(3.0) and s["q50"] == pytest.approx(3.0)
    with pytest.raises(InputError):
        lid_summary(np.array([1.0, np.nan]))


def test_bad_inputs_raise() -> None:
    z = np.random.default_rng(5).standard_normal((10, 3))
    with pytest.raises(InputError, match="k=10"):
        lid_mle(z, k=10)  # only 9 other rows
    with pytest.raises(InputError, match="k=11"):
        knn_distances(z[:2], z, k=11)
    bad = z.copy()
    bad[[2, 3], 1] = np.nan
    with pytest.raises(InputError, match="2 of 10 rows"):
        lid_mom(bad, k=3)
    with pytest.raises(InputError):
        lid_mle(z[0], k=3)
    with pytest.raises(InputError):
        lid_mle(z[None], k=3)
    with pytest.raises(InputError):
        knn_distances(z, np.zeros((5, 4)), k=2)
