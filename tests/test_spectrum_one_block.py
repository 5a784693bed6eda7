"""The one-block path of the covariance spectrum: small CPU matrices skip the streaming machinery."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from dimcollapse.diagnostics import covariance_matrix, covariance_spectrum
from dimcollapse.diagnostics.engine.covariance import CovarianceAccumulator
from dimcollapse.diagnostics.engine.covariance_small import ONE_BLOCK_BYTES, one_block_array
from dimcollapse.errors import InputError

EPS = np.finfo(np.float64).eps


def _planted(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)) * np.geomspace(3.0, 1e-3, d) + 50.0).astype(np.float32)


def _no_streaming(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: CovarianceAccumulator, block: object, block_size: int | None = None) -> None:
        raise AssertionError("the streamed accumulator ran")

    monkeypatch.setattr(CovarianceAccumulator, "update", refuse)


def test_small_matrices_take_the_one_block_path(monkeypatch: pytest.MonkeyPatch) -> None:
    z = _planted(2000, 64)
    _no_streaming(monkeypatch)
    covariance_spectrum(z)
    covariance_spectrum(torch.from_numpy(z))
    covariance_matrix(z.astype(np.float64), l2_normalize=True)
    with pytest.raises(AssertionError, match="streamed"):  # smaller blocks asked for: streamed
        covariance_spectrum(z, block_size=500)


def test_the_rule_keeps_large_or_wide_or_other_inputs_streamed() -> None:
    rows = ONE_BLOCK_BYTES // (8 * 64)
    assert one_block_array(np.zeros((rows, 64), np.float32), None) is not None
    assert one_block_array(np.zeros((rows + 1, 64), np.float32), None) is None  # float64 copy too big
    assert one_block_array(np.zeros((10, 20)), None) is None  # N < D: the Gram path
    assert one_block_array(np.zeros((10, 4), np.int64), None) is None
    assert one_block_array([np.zeros((10, 4))], None) is None  # batches
    assert one_block_array(np.zeros((10, 4)), 5) is None
    assert one_block_array(np.zeros((10, 4)), 10) is not None


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("l2", [False, True])
def test_one_block_equals_np_cov_and_the_streamed_path(center: bool, l2: bool) -> None:
    z = _planted(3000, 48, seed=1)
    x = z.astype(np.longdouble)
    if l2:
        x /= np.sqrt((x * x).sum(1, keepdims=True))
    if center:
        x -= x.mean(0)
    exact = np.asarray((x.T @ x) / len(x), dtype=np.float64)
    got = covariance_matrix(z, center=center, l2_normalize=l2)
    streamed = covariance_matrix(z, center=center, l2_normalize=l2, block_size=700)
    # float64 Gram of n terms: error below n * eps * max|C| (the uncentred case: of the raw second moment)
    bound = len(z) * EPS * np.abs(exact).max()
    np.testing.assert_allclose(got, exact, rtol=0, atol=bound)
    np.testing.assert_allclose(streamed, exact, rtol=0, atol=bound)
    if center and not l2:
        ref = np.linalg.eigvalsh(np.cov(z.T, bias=True))[::-1]
        spec = covariance_spectrum(z)
        np.testing.assert_allclose(spec, ref, rtol=0, atol=len(z) * EPS * ref[0])


def test_nan_and_overflow_refused_as_the_streamed_path_does() -> None:
    z = _planted(40, 6, seed=2).astype(np.float64)
    z[[3, 17, 30], 1] = np.nan
    z[17, 4] = np.inf
    messages = []
    for block_size in (None, 8):
        with pytest.raises(InputError, match="3 of 40 rows") as e:
            covariance_spectrum(z, block_size=block_size)
        messages.append(str(e.value))
    assert messages[0] == messages[1]
    with pytest.raises(InputError, match="overflow"):
        covariance_matrix(np.full((6, 3), 1e200) * np.arange(1, 7)[:, None])


@pytest.mark.parametrize(("n", "d"), [(5000, 128), (4096, 256)])
def test_one_block_result_does_not_depend_on_thread_counts(n: int, d: int) -> None:
    """The covariance is the same bit for bit at 1 and 2 torch and BLAS threads (the syrk splits over
    output columns). The eigensolver's own threaded BLAS may change the eigenvalues' last bits at large D,
    as for np.linalg.eigvalsh of any matrix: the contract is on the covariance."""
    z = _planted(n, d, seed=3)
    old = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with threadpool_limits(limits=threads, user_api="blas"):
                results.append(covariance_matrix(z))
    finally:
        torch.set_num_threads(old)
    np.testing.assert_array_equal(results[0], results[1])
