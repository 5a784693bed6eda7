"""k-NN engines: tiled exact search vs a brute-force reference (ties, duplicates, several tiles), faiss
engines vs exact, recall reporting, LID with a measured error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from dimcollapse.diagnostics import (
    KnnBackend,
    knn_distances,
    lid_estimate,
    lid_mle,
    lid_mom,
)
from dimcollapse.diagnostics.engine import knn as knn_module
from dimcollapse.diagnostics.engine import knn_select, knn_self
from dimcollapse.diagnostics.engine.knn import exact_neighbours, neighbour_recall, sample_exact_distances
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
    monkeypatch.setattr(knn_select, "GROUP", group)
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
    monkeypatch.setattr(knn_select, "GROUP", group)  # 16 / 2, 64 / 4: the group-minimum path on small tiles
    rng = np.random.default_rng(1)
    q, r = rng.standard_normal((61, 6)), rng.standard_normal((500, 6))
    d = knn_distances(torch.from_numpy(q), torch.from_numpy(r), k=12, block_size=16)
    np.testing.assert_allclose(d.numpy(), _brute(q, r, 12, False), rtol=1e-12)


def test_tiles_never_exceed_block_by_tile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(knn_module, "TILE_COLS", 64)
    sizes: list[int] = []
    real = knn_module._scores

    def spy(out: np.ndarray, q_aug: np.ndarray, r_aug: np.ndarray) -> None:
        real(out, q_aug, r_aug)
        sizes.append(out.size)
        # the tile holds |r|^2 - 2 q.r, the squared distance minus |q|^2
        q, r = q_aug[:, :-1].astype(np.float64), -r_aug[:, :-1].astype(np.float64) / 2
        expected = cdist(q, r) ** 2 - (q**2).sum(1, keepdims=True)
        np.testing.assert_allclose(out, expected, atol=1e-4, rtol=1e-5)

    monkeypatch.setattr(knn_module, "_scores", spy)
    exact_neighbours(torch.randn(500, 4), torch.randn(300, 4), 5, 50)  # queries against a reference set
    assert sizes and max(sizes) <= 50 * 64


@pytest.mark.parametrize(
    ("n", "tile", "k", "group"), [(300, 64, 7, 16), (1000, 128, 20, 16), (257, 40, 3, 4)]
)
def test_self_search_computes_each_pair_once_and_equals_brute_force(
    n: int, tile: int, k: int, group: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(knn_select, "GROUP", group)
    monkeypatch.setattr(knn_module, "SELF_TILE", tile)
    products: list[tuple[int, int]] = []
    real = knn_self._scores

    def spy(out: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
        real(out, a, b)
        products.append(out.size)
        # the tile holds full squared distances (padding columns: the largest float)
        x_a, x_b = a[:, :-2].astype(np.float64), -b[:, :-2].astype(np.float64) / 2
        pad = b[:, -1] == np.finfo(b.dtype).max
        np.testing.assert_allclose(out[:, ~pad], cdist(x_a, x_b[~pad]) ** 2, atol=1e-3, rtol=1e-4)
        assert (out[:, pad] == np.finfo(b.dtype).max).all()

    monkeypatch.setattr(knn_self, "_scores", spy)
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 5)).astype(np.float32)
    x[10:14] = x[3]  # duplicates: neighbours at distance 0
    d, idx = knn_distances(x, k=k, block_size=4096, return_indices=True)
    np.testing.assert_allclose(d.numpy(), _brute(x, x, k, True), rtol=1e-5, atol=1e-5)
    assert not (idx.numpy() == np.arange(n)[:, None]).any()
    blocks = knn_self.blocks_for(n, tile, k)
    assert blocks is not None and len(blocks) >= 2
    pairs = len(blocks) * (len(blocks) + 1) // 2
    assert len(products) == pairs  # tiles I <= J only
    assert sum(products) < 0.5 * n * n + n * (tile + group)


def test_column_selection_reads_the_tile_as_its_transpose(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(3)
    for group, (m, w) in ((16, (128, 96)), (4, (64, 37)), (16, (20, 50))):  # grouped and fallback paths
        monkeypatch.setattr(knn_select, "GROUP", group)
        buf = torch.randn(m, w + 5, generator=g).numpy()
        tile = buf[:, :w]  # a view with a row stride wider than the tile, as in the search
        tau = np.quantile(tile, 0.05, axis=0).astype(np.float32)
        cols, rows, vals = knn_select.below_bound_cols(tile, tau)
        want = np.argwhere(tau[:, None] > tile.T)  # (column, row), sorted
        assert (cols[1:] >= cols[:-1]).all()  # grouped by column, as ``Best.add`` needs
        order = np.argsort(cols * m + rows)
        np.testing.assert_array_equal(np.stack([cols, rows], 1)[order], want)  # the same entries
        np.testing.assert_array_equal(vals, tile[rows, cols])


@pytest.mark.parametrize("self_query", [True, False])
def test_device_search_equals_brute_force(self_query: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # the torch path used on GPUs (topk merge per tile), run here on CPU tensors with small tiles
    monkeypatch.setattr(knn_module, "TILE_COLS", 40)
    rng = np.random.default_rng(4)
    q = rng.integers(0, 3, size=(150, 3)).astype(np.float64)  # ties and duplicates
    r = q if self_query else rng.standard_normal((230, 3))
    idx = knn_module._device_neighbours(
        torch.from_numpy(q), None if self_query else torch.from_numpy(r), 9, 32
    )
    got = np.sort(np.linalg.norm(r[idx.numpy()] - q[:, None], axis=2), axis=1)
    np.testing.assert_allclose(got, _brute(q, r, 9, self_query), atol=1e-12)
    if self_query:
        assert not (idx.numpy() == np.arange(150)[:, None]).any()


@pytest.mark.parametrize("threads", [1, 2])
def test_worker_threads_give_the_same_neighbours(threads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(knn_module, "SELF_TILE", 128)
    monkeypatch.setattr(knn_module, "TILE_ROWS", 64)
    x = _manifold(1500, seed=5)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        d_self = knn_distances(x, k=10)
        d_ref = knn_distances(x[:300], x[300:], k=10)
    finally:
        torch.set_num_threads(old)
    assert torch.get_num_threads() == old  # restored after the search
    np.testing.assert_allclose(d_self.numpy(), _brute(x, x, 10, True), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(d_ref.numpy(), _brute(x[:300], x[300:], 10, False), rtol=1e-4, atol=1e-5)


def test_self_search_falls_back_for_one_block_or_large_k() -> None:
    assert knn_self.blocks_for(1000, 1024, 20) is None  # one block: the plain tiled search
    assert knn_self.blocks_for(5000, 1024, 600) is None  # blocks could not hold k + 1 rows
    blocks = knn_self.blocks_for(5000, 1024, 20)
    assert blocks == [(0, 1024), (1024, 2048), (2048, 3072), (3072, 4096), (4096, 5000)]
    assert knn_self.blocks_for(4200, 1024, 20)[-1] == (3072, 4200)  # a short tail joins the last block


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
    a = LDReg(k=8)(feats)
    b = LDReg(k=8, knn_backend="faiss-flat")(feats)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
