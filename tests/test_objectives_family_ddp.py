"""The new objectives under a 2-process gloo group equal one process on the whole batch, over two
consecutive calls (so the second call reads the queues / centre that the first one wrote): the mean of
the per-process losses is the loss, each process's input gradient is W times the single-process one, the
parameter gradients average to the single-process ones, and every buffer (queues of gathered keys, DINO's
centre) is the single process's on every process. Convention: utils/distributed.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dimcollapse.registry import build

WORLD = 2
N, D = 8, 6
CASES: dict[str, dict[str, Any]] = {
    "mocov2plus": {"dim": D, "queue_size": 12},
    "mocov3": {"dim": D, "hidden_dim": 10},
    "nnclr": {"dim": D, "hidden_dim": 10, "queue_size": 12},
    "nnbyol": {"dim": D, "hidden_dim": 10, "queue_size": 12},
    "dino": {"dim": D, "n_prototypes": 7},
    "swav": {"dim": D, "n_prototypes": 5, "queue_size": 8},  # full after the first call: joins Sinkhorn
    "ressl": {"dim": D, "queue_size": 12},
    "vibcreg": {},
    "dcl": {},
}
SPLITS: dict[str, list[int]] = {"even": [4, 4], "uneven": [3, 5]}


def _call(loss: Any, seed: int, rows: slice) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(N, D, generator=g, dtype=torch.float64)
    views = [(base + 0.5 * torch.randn(N, D, generator=g, dtype=torch.float64))[rows] for _ in range(4)]
    z1, z2, t1, t2 = (v.clone().requires_grad_() for v in views)
    loss.zero_grad()
    value = loss(z1, z2, t1, t2) if loss.uses_momentum_target else loss(z1, z2)
    value.backward()
    return {
        "loss": value.detach(),
        "z1": z1.grad,
        "z2": z2.grad,
        "params": {k: p.grad.clone() for k, p in loss.named_parameters() if p.grad is not None},
        "buffers": {k: b.detach().clone() for k, b in loss.named_buffers()},
    }


def _run(name: str, rows: slice) -> list[dict[str, Any]]:
    torch.manual_seed(0)  # identical initial queues, prototypes and predictors everywhere
    loss = build("objective", name, **CASES[name]).double()
    return [_call(loss, seed, rows) for seed in (1, 2)]


def _worker(rank: int, init: str, out: str) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    results = {}
    for split, sizes in SPLITS.items():
        rows = slice(sum(sizes[:rank]), sum(sizes[: rank + 1]))
        for name in CASES:
            results[(split, name)] = _run(name, rows)
    dist.destroy_process_group()
    torch.save(results, os.path.join(out, f"rank{rank}.pt"))


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[Any, Any]]:
    tmp: Path = tmp_path_factory.mktemp("ddp_family")
    mp.start_processes(
        _worker, args=(f"file://{tmp / 'init'}", str(tmp)), nprocs=WORLD, join=True, start_method="fork"
    )
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.mark.ddp
@pytest.mark.parametrize("split", list(SPLITS))
@pytest.mark.parametrize("name", list(CASES))
def test_two_processes_equal_one_process_over_two_calls(
    ranks: list[dict[Any, Any]], name: str, split: str
) -> None:
    single = _run(name, slice(0, N))
    tol = {"rtol": 1e-9, "atol": 1e-10}
    for call, ref in enumerate(single):
        parts = [r[(split, name)][call] for r in ranks]
        torch.testing.assert_close(sum(p["loss"] for p in parts) / WORLD, ref["loss"], **tol)
        for key in ("z1", "z2"):
            if ref[key] is None:  # ReSSL: only the strong view 1 gets a gradient
                assert all(p[key] is None for p in parts)
                continue
            torch.testing.assert_close(torch.cat([p[key] for p in parts]) / WORLD, ref[key], **tol)
        for pname, grad in ref["params"].items():
            torch.testing.assert_close(sum(p["params"][pname] for p in parts) / WORLD, grad, **tol)
        for bname, buf in ref["buffers"].items():
            for p in parts:
                torch.testing.assert_close(p["buffers"][bname], buf, **tol)


@pytest.mark.ddp
def test_the_second_call_reads_what_the_first_wrote(ranks: list[dict[Any, Any]]) -> None:
    """Guards against a vacuous pass: MoCo's queue and SwAV's (full) queue change the second loss."""
    for name, key in (("mocov2plus", "queue1.rows"), ("swav", "queues.0.rows")):
        first, second = ranks[0][("even", name)]
        assert not torch.equal(first["buffers"][key], _fresh_buffer(name, key))
        assert int(second["buffers"][key.replace("rows", "filled")]) > 0


def _fresh_buffer(name: str, key: str) -> torch.Tensor:
    torch.manual_seed(0)
    return dict(build("objective", name, **CASES[name]).double().named_buffers())[key]
