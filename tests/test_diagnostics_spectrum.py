"""Covariance spectrum: known eigenvalues, rotation invariance, streaming == one-shot, input errors."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pytest
import torch

from dimcollapse.diagnostics import covariance_matrix, covariance_spectrum
from dimcollapse.errors import InputError


def _planted(n: int, eig: np.ndarray, seed: int = 0) -> np.ndarray:
    """Rows whose sample covariance (1/N, centred) is exactly Q diag(eig) Q^T."""
    rng = np.random.default_rng(seed)
    d = eig.size
    x = rng.standard_normal((n, d))
    x -= x.mean(0)
    # whiten exactly so the sample covariance is the identity, then impose the spectrum
    c = x.T @ x / n
    w = np.linalg.cholesky(np.linalg.inv(c))
    x = x @ w
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (x * np.sqrt(eig)) @ q.T + rng.standard_normal(d) * 5.0


def test_known_covariance_gives_its_eigenvalues() -> None:
    eig = np.array([9.0, 4.0, 2.5, 1.0, 0.5, 0.1, 1e-3, 0.0])
    z = _planted(500, eig)
    got = covariance_spectrum(z)
    np.testing.assert_allclose(got, eig, rtol=1e-9, atol=1e-11)
    assert np.all(np.diff(got) <= 0) and got.dtype == np.float64


def test_matches_numpy_svd_of_centred_matrix_and_np_cov() -> None:
    rng = np.random.default_rng(1)
    z = rng.standard_normal((300, 20)) @ rng.standard_normal((20, 20))
    s = np.linalg.svd(z - z.mean(0), compute_uv=False)
    np.testing.assert_allclose(covariance_spectrum(z), s**2 / len(z), rtol=1e-10)
    np.testing.assert_allclose(covariance_matrix(z), np.cov(z.T, bias=True), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(covariance_matrix(z, center=False), z.T @ z / len(z), rtol=1e-10)


def test_spectrum_invariant_to_rotation_and_translation() -> None:
    rng = np.random.default_rng(2)
    z = rng.standard_normal((400, 12)) * np.linspace(3, 0.1, 12)
    q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    a = covariance_spectrum(z)
    b = covariance_spectrum(z @ q + 100.0)
    np.testing.assert_allclose(a, b, rtol=1e-9)


def test_l2_normalize_matches_manual_normalisation() -> None:
    rng = np.random.default_rng(3)
    z = rng.standard_normal((200, 6)) * [5, 1, 1, 0.2, 3, 1]
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    np.testing.assert_allclose(covariance_spectrum(z, l2_normalize=True), covariance_spectrum(zn), rtol=1e-10)
    assert not np.allclose(covariance_spectrum(z), covariance_spectrum(zn))


@pytest.mark.parametrize("block_size", [1, 7, 64])
def test_streaming_blocks_equal_one_shot(block_size: int) -> None:
    rng = np.random.default_rng(4)
    z = rng.standard_normal((203, 9)) * np.arange(1, 10) + 1e4  # large mean: tests the exact merge
    ref = np.linalg.eigvalsh(np.cov(z.T, bias=True))[::-1]
    np.testing.assert_allclose(covariance_spectrum(z, block_size=block_size), ref, rtol=1e-8)


def test_iterable_of_batches_equals_one_shot() -> None:
    rng = np.random.default_rng(5)
    z = (rng.standard_normal((250, 8)) * np.arange(1, 9)).astype(np.float32)
    one = covariance_spectrum(z)
    gen = (torch.from_numpy(z[i : i + 33]) for i in range(0, 250, 33))
    np.testing.assert_allclose(covariance_spectrum(gen), one, rtol=1e-10)
    pairs = [(z[i : i + 50], np.zeros(50)) for i in range(0, 250, 50)]  # (features, labels)
    np.testing.assert_allclose(covariance_spectrum(pairs), one, rtol=1e-10)


def test_torch_and_numpy_inputs_agree_float32_accumulates_in_float64() -> None:
    rng = np.random.default_rng(6)
    z = (rng.standard_normal((1000, 5)) + 1000.0).astype(np.float32)
    exact = np.linalg.eigvalsh(np.cov(z.astype(np.float64).T, bias=True))[::-1]
    np.testing.assert_allclose(covariance_spectrum(torch.from_numpy(z)), exact, rtol=1e-9)
    np.testing.assert_allclose(covariance_spectrum(z), exact, rtol=1e-9)


@pytest.mark.filterwarnings("error")  # the one-line error, no numpy RuntimeWarning before it
def test_nan_rows_raise_with_count() -> None:
    z = np.ones((10, 3))
    z[[1, 4, 7], 0] = np.nan
    z[4, 2] = np.inf
    with pytest.raises(InputError, match="3 of 10 rows"):
        covariance_spectrum(z)
    with pytest.raises(InputError, match=r"3 of 10 rows"):
        covariance_spectrum([z[:5], z[5:]])


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((2, 2, 2)), np.zeros((1, 4)), np.zeros((0, 4))])
def test_bad_shapes_raise(bad: np.ndarray) -> None:
    with pytest.raises(InputError):
        covariance_spectrum(bad)


def test_batches_with_different_widths_raise() -> None:
    with pytest.raises(InputError, match="columns"):
        covariance_spectrum([np.zeros((4, 3)), np.zeros((4, 5))])


def _np_cov_spectrum(z: np.ndarray) -> np.ndarray:
    """The two lines an expert writes: float64 np.cov (1/N) and LAPACK eigvalsh, descending."""
    return np.linalg.eigvalsh(np.cov(np.asarray(z, dtype=np.float64).T, bias=True))[::-1]


@pytest.mark.parametrize("mean", [0.0, 1e3, 1e6])
def test_equals_np_cov_eigvalsh_with_large_means_down_to_1e_10(mean: float) -> None:
    eig = np.geomspace(1.0, 1e-10, 24)
    z = _planted(3000, eig, seed=7) + mean
    got = covariance_spectrum(z, block_size=700)  # several blocks, one shift
    ref = _np_cov_spectrum(z)
    # both carry an absolute error of a few ulps of lambda_max; relative to lambda_i that is ~1e-16 / lambda_i
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-15 * (1.0 + mean / 1e3) ** 2)
    big = eig > 1e-6
    np.testing.assert_allclose(got[big], eig[big], rtol=1e-9)


def test_drifting_stream_restarts_the_shift_and_stays_exact() -> None:
    rng = np.random.default_rng(8)
    scales = np.linspace(2.0, 0.01, 16)
    # block means jump by 1e4 (far beyond the spread): each jump opens a new shift, merged exactly
    blocks = [rng.standard_normal((400, 16)) * scales + 1e4 * i for i in (0, 3, -2, 7)]
    z = np.concatenate(blocks)
    ref = np.cov(z.T, bias=True)
    tol = 1e-13 * np.abs(ref).max()  # the drift itself is variance: errors scale with the largest entry
    np.testing.assert_allclose(covariance_matrix(iter(blocks)), ref, rtol=0, atol=tol)
    np.testing.assert_allclose(covariance_matrix(z, block_size=128), ref, rtol=0, atol=tol)
    within = [covariance_matrix(b) for b in blocks]  # each block alone: only its own spread
    np.testing.assert_allclose(within[1], np.cov(blocks[1].T, bias=True), rtol=1e-12, atol=1e-14)


def test_streamed_float32_batches_equal_np_cov_of_the_whole() -> None:
    rng = np.random.default_rng(9)
    z = (rng.standard_normal((5000, 40)) * np.geomspace(3, 1e-3, 40) + 50.0).astype(np.float32)
    ref = _np_cov_spectrum(z)
    gen = (torch.from_numpy(z[i : i + 999]) for i in range(0, len(z), 999))
    np.testing.assert_allclose(covariance_spectrum(gen), ref, rtol=1e-10)
    np.testing.assert_allclose(covariance_spectrum(z), ref, rtol=1e-10)


def test_uncentred_gram_and_overflow_message() -> None:
    rng = np.random.default_rng(10)
    z = rng.standard_normal((900, 7)) + 3.0
    np.testing.assert_allclose(covariance_matrix(z, center=False, block_size=256), z.T @ z / 900, rtol=1e-12)
    with pytest.raises(InputError, match="overflow"):
        covariance_spectrum(np.full((4, 3), 1e200) * np.arange(1, 5)[:, None])


def _force_kernel(kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the CPU workers on one Gram kernel whatever this host's choice; chunks of 48 rows (so that a
    block spans several in-place syrk calls)."""
    from dimcollapse.diagnostics.engine import gram_kernel

    if kernel == "chunks" and gram_kernel.inplace_syrk() is None:
        pytest.skip("numpy's BLAS is not its bundled OpenBLAS: only the blocked kernel exists here")
    monkeypatch.setattr(gram_kernel, "use_chunks", lambda: kernel == "chunks")
    monkeypatch.setattr(gram_kernel, "chunk_rows", lambda d: 48)


@pytest.mark.parametrize("kernel", ["blocks", "chunks"])
@pytest.mark.parametrize("path", ["torch per block (GPUs)", "one worker", "two workers"])
def test_both_accumulation_paths_agree_with_np_cov(
    path: str, kernel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dimcollapse.diagnostics.spectrum import CovarianceAccumulator

    if path.startswith("torch"):
        if kernel == "chunks":
            pytest.skip("the torch path has one kernel (a float64 GEMM on the tensors' device)")
        monkeypatch.setattr(CovarianceAccumulator, "_threaded", lambda self, t: False)
    _force_kernel(kernel, monkeypatch)
    old = torch.get_num_threads()
    torch.set_num_threads(2 if path == "two workers" else 1)
    try:
        rng = np.random.default_rng(11)
        scales = np.linspace(2.0, 0.01, 16)
        blocks = [rng.standard_normal((400, 16)) * scales + 1e4 * i for i in (0, 3, -2, 7)]
        z = np.concatenate(blocks)
        ref = np.cov(z.T, bias=True)
        drift = covariance_matrix(z, block_size=128)  # shifts restart, segments merge
        np.testing.assert_allclose(drift, ref, rtol=0, atol=1e-13 * np.abs(ref).max())
        small = rng.standard_normal((1600, 16)) * scales + 1e3  # one shift: a large common mean
        got = covariance_spectrum(small.astype(np.float32), block_size=300)
        np.testing.assert_allclose(got, _np_cov_spectrum(small.astype(np.float32)), rtol=1e-10, atol=1e-12)
        unit = z / np.linalg.norm(z, axis=1, keepdims=True)
        np.testing.assert_allclose(
            covariance_matrix(z, l2_normalize=True, block_size=256), np.cov(unit.T, bias=True), atol=1e-14
        )
        bad = z.copy()
        bad[[5, 900]] = np.nan
        with pytest.raises(InputError, match="2 of 1600 rows"):
            covariance_spectrum(bad, block_size=128)
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("kernel", ["blocks", "chunks"])
def test_worker_count_does_not_change_the_result(kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _force_kernel(kernel, monkeypatch)
    z = np.random.default_rng(12).standard_normal((9000, 24)).astype(np.float32) * np.geomspace(4, 1e-4, 24)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = covariance_matrix(z, block_size=500)
        torch.set_num_threads(2)
        two = covariance_matrix(z, block_size=500)
    finally:
        torch.set_num_threads(old)
    np.testing.assert_array_equal(one, two)  # each lane is folded in order, lanes merged in order


def test_lanes_fold_their_blocks_in_order_on_several_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Block i of a call goes to lane i mod L whatever the threads; two workers take the blocks."""
    from dimcollapse.diagnostics.engine import covariance
    from dimcollapse.diagnostics.engine.covariance_sums import Lane, lane_count

    seen: list[tuple[int, int]] = []  # (lane, block index), in folding order
    pools: list[int] = []
    fold, run_all = covariance.CovarianceAccumulator._fold_cpu, covariance.run_all

    def spy(self: covariance.CovarianceAccumulator, worker: int, lane: Lane, block: np.ndarray) -> bool:
        seen.append((self._lanes.index(lane), round(float(block[0, 0]))))
        return fold(self, worker, lane, block)

    def spy_pool(fn: Callable[[int], None], tasks: Iterable[int], workers: int) -> None:
        pools.append(workers)
        run_all(fn, tasks, workers)

    monkeypatch.setattr(covariance.CovarianceAccumulator, "_fold_cpu", spy)
    monkeypatch.setattr(covariance, "run_all", spy_pool)
    z = np.random.default_rng(13).standard_normal((2000, 6)) * 0.01
    z[:, 0] += np.arange(2000) // 100  # column 0 carries the block index (blocks of 100 rows)
    lanes = lane_count(6)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        acc = covariance.CovarianceAccumulator()
        for batch in (z[:700], z[700:]):  # blocks 0-6 in lanes 0-6, then 7-19 in lanes 0-7, 0-4
            acc.update(batch, block_size=100)
    finally:
        torch.set_num_threads(old)
    assert lanes == 8 and pools == [2, 2] and sorted(b for _, b in seen) == list(range(20))
    for lane in range(lanes):
        first = [lane] if lane < 7 else []
        assert [b for lane_, b in seen if lane_ == lane] == first + list(range(7 + lane, 20, lanes))
    np.testing.assert_allclose(acc.covariance(), np.cov(z.T, bias=True), rtol=1e-12, atol=1e-18)


@pytest.mark.timeout(60)
def test_a_worker_error_reaches_the_caller_without_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    from dimcollapse.diagnostics.engine import covariance
    from dimcollapse.diagnostics.engine.covariance_sums import Lane

    fold = covariance.CovarianceAccumulator._fold_cpu

    def failing(self: covariance.CovarianceAccumulator, worker: int, lane: Lane, block: np.ndarray) -> bool:
        if round(float(block[0, 0])) == 3:
            raise MemoryError("block 3")
        return fold(self, worker, lane, block)

    monkeypatch.setattr(covariance.CovarianceAccumulator, "_fold_cpu", failing)
    z = np.random.default_rng(14).standard_normal((2000, 6)) * 0.01
    z[:, 0] += np.arange(2000) // 100
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with pytest.raises(MemoryError, match="block 3"):
            covariance_spectrum(z, block_size=100)
    finally:
        torch.set_num_threads(old)
    assert torch.get_num_threads() == old
