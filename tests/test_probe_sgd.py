"""The papers' SGD linear probe: it reaches scikit-learn's logistic regression on the same features, it is
the same on 2 gloo processes as on 1, and its schedule and batches are the protocol's."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from dimcollapse.errors import ConfigError
from dimcollapse.training.knn_eval import knn_neighbours, prepare_bank
from dimcollapse.training.probe_sgd import (
    SGDProbeSettings,
    cosine_lr,
    fit_sgd_probe,
    probe_topk,
    rows_of,
    shard_batches,
)

WORLD = 2


def _digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's digits (real 8x8 images, 10 classes) scaled to [0, 1], a fixed 2:1 split."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = torch.tensor(x[order] / 16.0, dtype=torch.float32), torch.tensor(y[order])
    cut = 2 * len(y) // 3
    return x[:cut], y[:cut], x[cut:], y[cut:]


def test_sgd_probe_reaches_logistic_regression() -> None:
    """On the same features the protocol's SGD probe (100 epochs, lr 0.1, cosine, momentum 0.9) is within
    1 point of scikit-learn's LogisticRegression (L-BFGS to convergence) on the held-out rows. Batch 64:
    on 1,198 rows the protocol's 256 would give 5 steps an epoch where ImageNet gives 5,000."""
    xtr, ytr, xte, yte = _digits()
    reference = (
        LogisticRegression(max_iter=5000).fit(xtr.numpy(), ytr.numpy()).score(xte.numpy(), yte.numpy())
    )
    layer = fit_sgd_probe(rows_of(xtr), ytr, xtr.shape[1], 10, SGDProbeSettings(batch_size=64))
    ours = probe_topk(layer, rows_of(xte), yte)[1]
    assert ours >= reference - 0.01, (ours, reference)
    assert probe_topk(layer, rows_of(xte), yte)[5] >= ours


def test_schedule_and_batches_are_the_protocols() -> None:
    """Cosine per epoch from lr to 0; every row exactly once per epoch, in batches of 256 (last smaller),
    in another order each epoch; bad settings are refused."""
    assert cosine_lr(0.1, 0, 100) == 0.1 and math.isclose(cosine_lr(0.1, 50, 100), 0.05)
    batches = list(shard_batches(1000, 256, epoch=0, seed=0))
    assert [n for _, _, n in batches] == [256, 256, 256, 232]
    rows = torch.cat([i for i, _, _ in batches])
    assert torch.equal(rows, torch.cat([j for _, j, _ in batches]))  # one process: local = global
    assert torch.equal(rows.sort().values, torch.arange(1000))
    assert not torch.equal(rows, torch.cat([i for i, _, _ in shard_batches(1000, 256, epoch=1, seed=0)]))
    with pytest.raises(ConfigError, match="SGD probe needs"):
        SGDProbeSettings(lr=0.0)


def _fit(dtype: torch.dtype) -> dict[str, Any]:
    xtr, ytr, xte, yte = _digits()
    s = SGDProbeSettings(epochs=3, batch_size=50)
    layer = fit_sgd_probe(rows_of(xtr.to(dtype)), ytr, xtr.shape[1], 10, s, dtype=dtype)
    return {
        "w": layer.weight.detach().clone(),
        "b": layer.bias.detach().clone(),
        "acc": probe_topk(layer, rows_of(xte.to(dtype)), yte),
    }


def _knn() -> tuple[torch.Tensor, torch.Tensor]:
    """Neighbours of the digits' test rows in the training bank; under 2 processes each holds half (a
    seeded jitter of 1e-3 breaks the ties of the digits' 17 grey levels, so the neighbours are unique)."""
    xtr, _, xte, _ = _digits()
    g = torch.Generator().manual_seed(5)
    xtr = xtr.double() + 1e-3 * torch.randn(xtr.shape, generator=g, dtype=torch.float64)
    bank, rows = prepare_bank(xtr)
    return knn_neighbours(xte.double(), bank, rows, 25, block=100, tile=128)


def _worker(rank: int, init: str, out: str) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    result = {"float64": _fit(torch.float64), "float32": _fit(torch.float32), "knn": _knn()}
    dist.destroy_process_group()
    torch.save(result, os.path.join(out, f"rank{rank}.pt"))


@pytest.mark.ddp
def test_two_processes_give_the_weights_of_one(tmp_path: Path) -> None:
    """Each process its rows of every global batch, gradients summed: the weights and the accuracy of
    2 gloo processes equal one process's (float64 to 1e-10; float32 to its summation error); the kNN over
    a bank split between the processes finds one process's neighbours."""
    mp.start_processes(
        _worker,
        args=(f"file://{tmp_path / 'init'}", str(tmp_path)),
        nprocs=WORLD,
        join=True,
        start_method="fork",
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    for dtype_name, dtype, tol in (("float64", torch.float64, 1e-10), ("float32", torch.float32, 1e-4)):
        single = _fit(dtype)
        for r in ranks:
            torch.testing.assert_close(r[dtype_name]["w"], single["w"], rtol=tol, atol=tol)
            torch.testing.assert_close(r[dtype_name]["b"], single["b"], rtol=tol, atol=tol)
    assert ranks[0]["float64"]["acc"] == ranks[1]["float64"]["acc"] == _fit(torch.float64)["acc"]
    sims, idx = _knn()  # kNN: each process searched its half of the bank, the candidates merged
    for r in ranks:
        assert r["knn"][0].shape == (len(_digits()[3]), 25) and len(prepare_bank(_digits()[0])[1]) > 25
        torch.testing.assert_close(r["knn"][0], sims, rtol=1e-12, atol=1e-12)
        assert torch.equal(r["knn"][1], idx)
