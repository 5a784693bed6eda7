"""The streamed covariance's per-host Gram kernel: numpy's OpenBLAS syrk in place, chunked conversion, the
choice of kernel by the BLAS core."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dimcollapse.diagnostics.engine import gram_kernel
from dimcollapse.diagnostics.engine.gram_kernel import ChunkSlot, inplace_syrk, prefers_chunks


@pytest.fixture
def syrk() -> gram_kernel.Syrk:
    fn = inplace_syrk()
    if fn is None:
        pytest.skip("numpy's BLAS is not its bundled OpenBLAS: the in-place syrk is not used here")
    return fn


def test_inplace_syrk_sums_the_upper_triangle_and_leaves_the_lower(syrk: gram_kernel.Syrk) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((300, 17)), rng.standard_normal((41, 17))
    c = np.full((17, 17), 7.0)
    syrk(17, 300, a.ctypes.data, c.ctypes.data, 0.0)  # beta = 0: the old upper triangle is not read
    syrk(17, 41, b.ctypes.data, c.ctypes.data, 1.0)  # beta = 1: added in place
    want = a.T @ a + b.T @ b
    iu, il = np.triu_indices(17), np.tril_indices(17, -1)
    # float64 sums of 341 products: a few ulps of the largest entry
    np.testing.assert_allclose(c[iu], want[iu], rtol=0, atol=1e-13 * np.abs(want).max())
    assert np.all(c[il] == 7.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("l2_normalize", [False, True])
def test_chunked_products_equal_numpy_of_the_converted_block(
    syrk: gram_kernel.Syrk, dtype: type, l2_normalize: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gram_kernel, "chunk_rows", lambda d: 64)  # 250 rows: chunks of 64, 64, 64, 58
    rng = np.random.default_rng(1)
    block = (rng.standard_normal((250, 9)) * np.geomspace(5, 0.01, 9) + 100.0).astype(dtype)
    shift = torch.from_numpy(block[:50].mean(0, dtype=np.float64))
    slot = ChunkSlot(9, syrk, gram_kernel.chunk_rows(9))
    gram, sums = slot.products(block, shift, l2_normalize)
    x = block.astype(np.float64)
    if l2_normalize:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    x = x - shift.numpy()
    want = x.T @ x
    iu = np.triu_indices(9)
    np.testing.assert_allclose(gram.numpy()[iu], want[iu], rtol=0, atol=1e-13 * np.abs(want).max())
    np.testing.assert_allclose(sums.numpy(), x.sum(0), rtol=0, atol=1e-13 * np.abs(x).sum(0).max())
    assert np.all(np.tril(gram.numpy(), -1) == 0.0)  # the lanes are symmetrised from the upper triangle
    again, _ = slot.products(block[:100], shift, l2_normalize)  # a new block starts from zero (beta = 0)
    x100 = x[:100]
    tol = 1e-13 * np.abs(want).max()
    np.testing.assert_allclose(again.numpy()[iu], (x100.T @ x100)[iu], rtol=0, atol=tol)


def test_nonfinite_rows_make_the_chunk_products_nonfinite(syrk: gram_kernel.Syrk) -> None:
    block = np.ones((300, 4), dtype=np.float32)
    block[290, 2] = np.nan
    gram, sums = ChunkSlot(4, syrk, 256).products(block, None, False)
    assert not np.isfinite(float(gram.diagonal().sum()))
    assert not np.isfinite(float(sums.sum()))


@pytest.mark.parametrize(
    ("cores", "has_syrk", "chunks"),
    [
        ({"SkylakeX"}, True, True),  # Intel Xeon, AVX-512 (measured: chunks 1.15-1.3x faster)
        ({"Cooperlake"}, True, True),
        ({"SapphireRapids"}, True, True),
        ({"Zen"}, True, False),  # AMD AVX2 (measured: the blocked product is the faster one)
        ({"Haswell"}, True, False),
        ({"SkylakeX"}, False, False),  # no cblas_dsyrk reachable: the blocked product is the only one
        (set(), False, False),  # numpy on another BLAS (MKL, Accelerate)
    ],
)
def test_the_kernel_is_chosen_by_the_blas_core(cores: set[str], has_syrk: bool, chunks: bool) -> None:
    assert prefers_chunks(cores, has_syrk) is chunks


def test_chunk_rows_keep_a_chunk_near_2_mb_and_at_least_256_rows() -> None:
    assert gram_kernel.chunk_rows(512) * 513 * 8 <= 2**21 < (gram_kernel.chunk_rows(512) + 1) * 513 * 8
    assert gram_kernel.chunk_rows(4096) == 256


def test_cpu_workers_run_numpy_blas_on_one_thread_and_restore_it() -> None:
    """The workers' BLAS limit (found once, reused: a fresh library scan per call cost ~1 ms)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from dimcollapse.diagnostics.engine.knn_workers import cpu_workers

    def blas_threads() -> list[int]:
        return [int(i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]

    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with threadpool_limits(2, user_api="blas"):
            for _ in range(2):  # the second call reuses the libraries found by the first
                with cpu_workers() as workers:
                    assert workers == 2 and torch.get_num_threads() == 1
                    assert blas_threads() and set(blas_threads()) == {1}
                assert set(blas_threads()) == {2} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(old)
