"""CollapseMetrics: streamed state equals summarize() on all rows; 2 gloo processes equal one process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dimcollapse import CollapseMetrics
from dimcollapse.diagnostics import summarize
from dimcollapse.diagnostics.lidar import lidar
from dimcollapse.errors import ConfigError, InputError

WORLD = 2


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    z = (torch.randn(90, 6, generator=g) @ torch.randn(6, 6, generator=g)) + 3.0  # far from centred
    views = z[:30, None, :] + 0.4 * torch.randn(30, 3, 6, generator=g)
    return z, views


def test_streamed_metrics_equal_summarize_on_all_rows() -> None:
    z, views = _data()
    m = CollapseMetrics(k=5, reservoir_size=1000, lidar=True)
    for chunk in z.split(17):
        m.update(chunk)
    m.update(views=views[:13])
    m.update(views=views[13:])
    out = m.compute()
    ref = summarize(z.double(), k=5, views=views.double())
    for key in (
        "erank",
        "rankme",
        "alpha",
        "collapsed_dims",
        "dims_90",
        "eig_min",
        "total_variance",
        "lidar",
    ):
        assert float(out[key]) == pytest.approx(ref[key], rel=1e-9), key
    for key in ("lid_mle_gmean", "lid_mom_median"):  # the reservoir keeps float32 rows
        assert float(out[key]) == pytest.approx(ref[key], rel=1e-4), key
    np.testing.assert_allclose(
        out["spectrum"].numpy(),
        np.linalg.eigvalsh(np.cov(z.double().T, bias=True))[::-1],
        rtol=1e-9,
        atol=1e-12,
    )
    m.reset()
    with pytest.raises(InputError, match="at least 2"):
        m.update(z[:1])
        m.compute()


def test_reservoir_is_bounded_and_uniform() -> None:
    m = CollapseMetrics(dim=1, k=2, reservoir_size=50, seed=3)
    stream = torch.arange(5000, dtype=torch.float32)[:, None]
    for chunk in stream.split(64):
        m.update(chunk)
    (buf,) = m.reservoir
    assert buf.shape == (50, 1)
    assert len(set(buf[:, 0].tolist())) == 50
    assert 1500 < float(buf.mean()) < 3500  # a uniform sample of 0..4999, not the first or last rows
    assert float(m.reservoir_weight[0][0]) == pytest.approx(100.0)


def test_bad_input_says_what_to_pass() -> None:
    with pytest.raises(ConfigError, match="lidar=True"):
        CollapseMetrics().update(views=torch.zeros(4, 2, 3))
    with pytest.raises(InputError, match=r"\(batch, dim\)"):
        CollapseMetrics().update(torch.zeros(4, 2, 3))
    with pytest.raises(InputError, match="NaN"):
        CollapseMetrics().update(torch.full((4, 2), float("nan")))


def _worker(rank: int, init: str, out: str, cap: int) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    z, views = _data()
    m = CollapseMetrics(k=5, reservoir_size=cap, lidar=True)
    rows = slice(0, 37) if rank == 0 else slice(37, None)  # uneven shares
    for chunk in z[rows].split(10):
        m.update(chunk)
    m.update(views=views[:11] if rank == 0 else views[11:])
    res = {k: v.clone() for k, v in m.compute().items()}
    torch.save(res, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.ddp
@pytest.mark.parametrize("cap", [1000, 40])
def test_two_gloo_processes_equal_one_process(tmp_path: Path, cap: int) -> None:
    mp.start_processes(
        _worker,
        args=(f"file://{tmp_path / 'init'}", str(tmp_path), cap),
        nprocs=WORLD,
        join=True,
        start_method="fork",
    )
    ranks: list[dict[str, Any]] = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    z, views = _data()
    one = CollapseMetrics(k=5, reservoir_size=cap, lidar=True)
    one.update(z)
    one.update(views=views)
    ref = one.compute()
    for res in ranks:
        assert float(res["n"]) == 90
        for key in ("erank", "rankme", "alpha", "dims_99", "eig_max", "lidar"):
            assert float(res[key]) == pytest.approx(float(ref[key]), rel=1e-10), key
        torch.testing.assert_close(res["spectrum"], ref["spectrum"], rtol=1e-10, atol=1e-12)
        assert float(res["lidar"]) == pytest.approx(lidar(views.double()), rel=1e-9)
        if cap >= 90:  # every row fits in the reservoirs: LID exactly as on one process
            assert float(res["lid_mle_gmean"]) == pytest.approx(float(ref["lid_mle_gmean"]), rel=1e-6)
        else:
            assert float(res["lid_points"]) == cap
    assert float(ranks[0]["lid_mle_gmean"]) == float(ranks[1]["lid_mle_gmean"])  # same sample on every rank
