"""The final evaluation on every rank: 2 gloo processes, each encoding its share of both splits, give the
accuracies and diagnostics of one process, and no collective moves as much as one process's share of the
training features (the bank is never gathered)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from dimcollapse.objectives.simclr import NTXent
from dimcollapse.training.probe_lbfgs import LBFGSProbeSettings, fit_lbfgs_probe, lbfgs_probe_topk
from dimcollapse.utils.distributed import rank, world_size

WORLD = 2
N_TRAIN, N_TEST, DIM, CLASSES, BATCH = 203, 61, 32, 4, 16


def _split(n: int, seed: int, unlabelled: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 8x8 images: class means plus noise; the first ``unlabelled`` rows carry label -1."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    base = torch.tensor([60, 110, 150, 200])[y].view(-1, 1, 1, 1)
    x = (base + torch.randint(-50, 51, (n, 1, 8, 8), generator=g)).clamp(0, 255).to(torch.uint8)
    y[:unlabelled] = -1
    return x, y


class _Model(nn.Module):
    """encode(x) -> (r, z): a fixed random projection of the pixels (r) and its tanh (z)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(64, DIM)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(DIM, 64, generator=torch.Generator().manual_seed(3)))
            self.proj.bias.zero_()

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.proj(x.flatten(1))
        return r, torch.tanh(r / 50)


class _Module(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.model = _Model()
        self.objective = NTXent()  # embedding_slice() is None: no d0 accuracies

    def encode_eval(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode(x.float() / 255.0)


def _batches(x: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """This process's rows (rank, rank + W, ...: what eval_loader(shard=True) gives) in batches."""
    x, y = x[rank() :: world_size()], y[rank() :: world_size()]
    return [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, len(y), BATCH)]


def _evaluate(kind: str) -> dict[str, Any]:
    from dimcollapse.training.evaluate_run import EvalData, EvalSettings, evaluate_module
    from dimcollapse.training.probe_sgd import SGDProbeSettings

    (xtr, ytr), (xte, yte) = _split(N_TRAIN, 0, unlabelled=9), _split(N_TEST, 1)
    data = EvalData(_batches(xtr, ytr), _batches(xte, yte), CLASSES)
    settings = EvalSettings(
        (5, 40), 0.1, True, 30, 1e-3, 5, "blobs", linear_probe_kind=kind, probe_dtype="float64",
        sgd_probe=SGDProbeSettings(epochs=3, batch_size=32), sgd_probe_augment=False,
    )  # fmt: skip
    torch.manual_seed(0)
    rec = evaluate_module(_Module(), data, settings)
    return {"acc": rec.accuracies, "outputs": rec.fields() if rec.outputs else None, "details": rec.details}


def _probe(dtype: str) -> dict[str, Any]:
    """The L-BFGS probe alone on this process's share of random features."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(N_TRAIN, DIM, generator=g, dtype=torch.float64) + 2.0
    y = (x[:, 0] + 0.5 * torch.randn(N_TRAIN, generator=g, dtype=torch.float64) > 2).long()
    x = x.to(torch.float32) if dtype == "float32" else x
    probe = fit_lbfgs_probe(
        x[rank() :: world_size()], y[rank() :: world_size()], 2, LBFGSProbeSettings(20, 1e-3, dtype)
    )
    acc = lbfgs_probe_topk(probe, x[rank() :: world_size()], y[rank() :: world_size()], (1,))
    return {"w": probe.weight, "b": probe.bias, "acc": acc, "iterations": probe.iterations}


def _spy_collectives(largest: list[int]) -> None:
    """Record the element count of every tensor a collective of this process sends or receives."""
    for name in ("all_gather", "all_reduce", "broadcast", "gather"):
        real = getattr(dist, name)

        def spy(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            for a in [*args, *kwargs.values()]:
                for t in a if isinstance(a, list) else [a]:
                    if isinstance(t, torch.Tensor):
                        largest[0] = max(largest[0], t.numel())
            return _real(*args, **kwargs)

        setattr(dist, name, spy)


def _worker(rank_: int, init: str, out: str) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank_, world_size=WORLD)
    largest = [0]
    _spy_collectives(largest)
    result = {
        "lbfgs": _evaluate("lbfgs"),
        "sgd": _evaluate("sgd"),
        "float64": _probe("float64"),
        "float32": _probe("float32"),
        "largest": largest[0],
    }
    dist.destroy_process_group()
    torch.save(result, os.path.join(out, f"rank{rank_}.pt"))


@pytest.mark.ddp
def test_two_ranks_evaluate_like_one_without_gathering_the_bank(tmp_path: Path) -> None:
    """kNN (k 5, 40), the L-BFGS probe (float64) and the SGD probe give one process's accuracies on 2
    processes; rank 0's diagnostics of the gathered test split are one process's; the probe's weights
    agree to float64 / float32 summation error; no collective carries a share of the bank."""
    mp.start_processes(
        _worker,
        args=(f"file://{tmp_path / 'init'}", str(tmp_path)),
        nprocs=WORLD,
        join=True,
        start_method="fork",
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    for kind in ("lbfgs", "sgd"):
        single = _evaluate(kind)
        assert ranks[0][kind]["acc"].keys() == single["acc"].keys()
        for r in ranks:
            for key, value in single["acc"].items():  # counts of 61 rows: the same rows right
                assert round(r[kind]["acc"][key] * N_TEST) == round(value * N_TEST), (kind, key)
        assert ranks[1][kind]["outputs"] is None  # diagnostics on rank 0 only
        for key, value in single["outputs"].items():
            if isinstance(value, float) and "time" not in key:
                assert ranks[0][kind]["outputs"][key] == pytest.approx(value, rel=1e-5, abs=1e-9), key
        assert ranks[0][kind]["details"]["eval_train_size"] == N_TRAIN - 9
        assert ranks[0][kind]["details"]["eval_processes"] == 2
    assert "eval_linear_probe_iterations" in ranks[0]["lbfgs"]["details"]
    for dtype, tol in (("float64", 1e-9), ("float32", 1e-4)):
        single = _probe(dtype)
        for r in ranks:
            torch.testing.assert_close(r[dtype]["w"], single["w"], rtol=tol, atol=tol)
            assert r[dtype]["acc"] == single["acc"]
    share = (N_TRAIN // WORLD) * DIM  # one process's share of the training features
    assert 0 < ranks[0]["largest"] < share and 0 < ranks[1]["largest"] < share
