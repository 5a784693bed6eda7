"""k-NN engines: tiled exact search vs a brute-force reference (ties, duplicates, several tiles), faiss
engines vs exact, recall reporting, LID with a measured error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from dimcollapse.diagnostics import KnnBackend, knn_distances, lid_estimate, lid_mle, lid_mom
from dimcollapse.diagnostics import knn as knn_module
from dimcollapse.diagnostics.knn import exact_neighbours, neighbour_recall, sample_exact_distances
from dimcollapse.errors import ConfigError


def _brute(q: np.ndarray, r: np.ndarray, k: int, self_query: bool) -> np.ndarray:
    full = cdist(q.astype(np.float64), r.astype(np.float64))
    if self_query:
        np.fill_diagonal(full, np.inf)
    return np.sort(full, axis=1)[:, :k]


@pytest.mark.parametrize(("tile", "group"), [(5, 16), (16, 2), (64, 16), (64, 4), (4096, 16)])
def test_tiled_exact_equals_brute_force_with_ties_and_duplicates(
    tile: int, group: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(knn_module, "TILE_COLS", tile)
    monkeypatch.setattr(knn_module, "_GROUP", group)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(230, 3)).astype(np.float64)  # a lattice: many exact ties and duplicates
    x[:20] = x[20]  # 21 identical rows: each has 20 neighbours at distance 0
    d, idx = knn_distances(x, k=9, block_size=37, return_indices=True)
    np.testing.assert_allclose(d.numpy(), _brute(x, x, 9, True), atol=1e-12)
    assert not (idx.numpy() == np.arange(230)[:, None]).any()
    # every returned index really is at the returned distance
    np.testing.assert_allclose(np.linalg.norm(x[idx.numpy()] - x[:, None], axis=2), d.numpy(), atol=1e-12)
    assert (d[:21, :].numpy() == 0).all()


@pytest.mark.parametrize(("tile", "group"), [(7, 16), (16, 2), (64, 4), (4096, 16)])
def test_tiled_exact_reference_set_and_grouped_bound(
    tile: int, group: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(knn_module, "TILE_COLS", tile)
    monkeypatch.setattr(knn_module, "_GROUP", group)  # 16 / 2, 64 / 4: the group-minimum path on small tiles
    rng = np.random.default_rng(1)
    q, r = rng.standard_normal((61, 6)), rng.standard_normal((500, 6))
    d = knn_distances(torch.from_numpy(q), torch.from_numpy(r), k=12, block_size=16)
    np.testing.assert_allclose(d.numpy(), _brute(q, r, 12, False), rtol=1e-12)


def test_tiles_never_exceed_block_by_tile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(knn_module, "TILE_COLS", 64)
    sizes: list[int] = []
    real = knn_module._scores

    def spy(out: torch.Tensor, q_aug: torch.Tensor, r_aug: torch.Tensor) -> None:
        real(out, q_aug, r_aug)
        sizes.append(out.numel())
        # the tile holds |r|^2 - 2 q.r, the squared distance minus |q|^2
        q, r = q_aug[:, :-1], -r_aug[:, :-1] / 2
        expected = torch.cdist(q.double(), r.double()) ** 2 - (q.double() ** 2).sum(1, keepdim=True)
        torch.testing.assert_close(out.double(), expected, atol=1e-4, rtol=1e-5)

    monkeypatch.setattr(knn_module, "_scores", spy)
    exact_neighbours(torch.randn(500, 4), None, 5, 50)
    assert sizes and max(sizes) <= 50 * 64


def test_recall_counts_neighbours_within_the_exact_kth_distance() -> None:
    exact = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    found = torch.tensor([[1.0, 2.0, 3.5], [1.0, 1.0, 1.0]])  # row 0 missed one; row 1 ties are all fine
    assert neighbour_recall(found, exact) == pytest.approx(5 / 6)


def test_sample_exact_distances_drop_self_even_with_duplicates() -> None:
    x = torch.randn(300, 5, dtype=torch.float64)
    x[7] = x[3]
    rows = torch.tensor([3, 7, 100])
    got = sample_exact_distances(x, rows, 6, block_size=64)
    ref = _brute(x.numpy(), x.numpy(), 6, True)[rows.numpy()]
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-12)


def test_unknown_backend_and_option_raise() -> None:
    with pytest.raises(ConfigError, match="Valid backends"):
        knn_distances(np.zeros((5, 2)), k=2, backend="annoy")


faiss = pytest.importorskip("faiss", reason="faiss-cpu is installed by `make setup`; only skipped without it")


def _manifold(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = rng.uniform(-1, 1, size=(n, 4))
    f = np.concatenate([t, np.sin(3 * t), t**2], axis=1)
    return (f @ rng.standard_normal((12, 16)) + 0.01 * rng.standard_normal((n, 16))).astype(np.float32)


def test_faiss_flat_equals_exact() -> None:
    z = _manifold(700)
    d_exact, i_exact = knn_distances(z, k=8, return_indices=True)
    d_flat, i_flat = knn_distances(z, k=8, return_indices=True, backend="faiss-flat")
    np.testing.assert_allclose(d_flat.numpy(), d_exact.numpy(), rtol=1e-5, atol=1e-6)
    assert (i_flat == i_exact).float().mean() > 0.99  # indices may differ only on float32 near-ties
    q = z[:50] + 0.01
    np.testing.assert_allclose(
        knn_distances(q, z, k=5, backend="faiss-flat").numpy(), _brute(q, z, 5, False), rtol=1e-4
    )


@pytest.mark.parametrize("name", ["faiss-ivf", "faiss-hnsw"])
def test_approximate_engines_report_recall_and_lid_error(name: str) -> None:
    z = _manifold(3000, seed=1)
    exact = lid_mle(z, k=10)
    est = lid_estimate(z, k=10, backend=KnnBackend(name, nprobe=4, nlist=64), sample=400)
    assert est.backend == name and est.sample == 400 and est.recall is not None
    # independent check of the reported figures on the same sample
    rows = np.sort(np.random.default_rng(0).choice(3000, 400, replace=False))
    found = knn_distances(z, k=10, backend=KnnBackend(name, nprobe=4, nlist=64))[rows]
    ref = torch.from_numpy(_brute(z, z, 10, True)[rows]).float()
    assert est.recall == pytest.approx(neighbour_recall(found, ref), abs=1e-6)
    g = np.exp(np.mean(np.log(est.lids[rows])) - np.mean(np.log(exact[rows])))
    assert est.gmean_rel_error == pytest.approx(abs(g - 1.0), rel=1e-3, abs=1e-6)
    assert 0.5 < est.recall <= 1.0


def test_exact_engine_reports_no_sample() -> None:
    z = _manifold(400)
    est = lid_estimate(z, k=6, method="mom")
    assert est.recall is None and est.sample == 0
    np.testing.assert_allclose(est.lids, lid_mom(z, k=6), rtol=1e-12)


def test_knn_accuracy_and_ldreg_accept_the_faiss_engine() -> None:
    from dimcollapse.regularizers.ldreg import LDReg
    from dimcollapse.training.evaluation import knn_accuracies

    g = torch.Generator().manual_seed(0)
    train_x, test_x = torch.randn(400, 12, generator=g), torch.randn(90, 12, generator=g)
    train_y, test_y = torch.randint(0, 5, (400,), generator=g), torch.randint(0, 5, (90,), generator=g)
    exact = knn_accuracies(train_x, train_y, test_x, test_y, ks=(5, 20))
    flat = knn_accuracies(train_x, train_y, test_x, test_y, ks=(5, 20), backend="faiss-flat")
    assert flat == exact
    feats = [torch.randn(64, 10, generator=g, requires_grad=True) for _ in range(2)]
    a = LDReg(weight=0.1, k=8)(feats)
    b = LDReg(weight=0.1, k=8, knn_backend="faiss-flat")(feats)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
