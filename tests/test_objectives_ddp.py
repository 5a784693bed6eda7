"""Every objective under a 2-process gloo group equals one process on the whole batch (loss and gradients).

Convention checked (utils/distributed.py): with W processes, process k holding rows of the global
batch, L the single-process loss on the whole batch and L_k what process k returns,
    mean_k L_k = L                      (so the average of the logged losses is the loss),
    grad of z_k on process k = W * dL/dz_k   (so DDP's averaging of parameter gradients gives dL/dtheta),
    mean_k (gradient of the objective's own parameters, e.g. the predictor) = dL/dtheta,
and the predictor's BatchNorm running statistics are those of the global batch. The same is checked for
a BatchNorm2d converted with ``convert_to_global_batchnorm`` (synced BN on CPU) against nn.BatchNorm2d.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from dimcollapse.objectives import convert_to_global_batchnorm
from dimcollapse.registry import build
from dimcollapse.utils.distributed import global_batch_size, local_only, local_share

WORLD = 2
N, D = 8, 6
CASES: list[tuple[str, dict[str, Any]]] = [
    ("simclr", {"temperature": 0.3}),
    ("directclr", {"d0": 4}),
    ("barlow_twins", {"lambd": 0.05}),
    ("vicreg", {}),
    ("byol", {"dim": D, "hidden_dim": 10}),
    ("simsiam", {"dim": D, "hidden_dim": 5}),
    ("msn", {"dim": D, "n_prototypes": 5}),  # the mean-entropy term is of the global mean prediction
]
# rows per process: an even split, and an uneven one (objectives must not assume equal local batches)
SPLITS: dict[str, list[int]] = {"even": [4, 4], "uneven": [3, 5]}
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _batch(dtype: torch.dtype) -> list[torch.Tensor]:
    """The fixed global batch z1, z2 (online) and t1, t2 (targets), identical on every process."""
    g = torch.Generator().manual_seed(123)
    base = torch.randn(N, D, generator=g)
    views = [base + 0.5 * torch.randn(N, D, generator=g) for _ in range(4)]
    views[1] = 0.4 * views[1]  # keep some stds below 1 so VICReg's hinge is active
    return [v.to(dtype) for v in views]


def _run(name: str, kw: dict[str, Any], rows: slice, dtype: torch.dtype) -> dict[str, Any]:
    """Loss, input gradients, parameter gradients and buffers of one objective on the given rows."""
    torch.manual_seed(0)  # identical predictor initialisation everywhere
    loss = build("objective", name, **kw).to(dtype)
    z1, z2, t1, t2 = (v[rows].clone().requires_grad_() for v in _batch(dtype))
    value = loss(z1, z2, t1, t2) if loss.uses_momentum_target else loss(z1, z2)
    value.backward()
    return {
        "loss": value.detach(),
        "z1": z1.grad,
        "z2": z2.grad,
        "params": {k: p.grad for k, p in loss.named_parameters()},
        "buffers": {k: b.detach().clone() for k, b in loss.named_buffers()},
    }


def _run_batchnorm2d(rows: slice, dtype: torch.dtype) -> dict[str, Any]:
    """L = (1/N) sum_i (c . BN(x)_i)^2 through BatchNorm2d, its global twin under DDP (local share)."""
    torch.manual_seed(0)
    bn = convert_to_global_batchnorm(torch.nn.BatchNorm2d(3)).to(dtype)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    g = torch.Generator().manual_seed(7)
    x_all, c = torch.randn(N, 3, 4, 4, generator=g), torch.randn(3, 4, 4, generator=g)
    x = x_all[rows].to(dtype).requires_grad_()
    per_sample = (bn(x) * c.to(dtype)).sum(dim=(1, 2, 3)).pow(2)
    value = local_share(per_sample.sum(), global_batch_size(x.shape[0]))
    value.backward()
    return {
        "loss": value.detach(),
        "z1": x.grad,
        "z2": torch.zeros(x.shape[0]),
        "params": {k: p.grad for k, p in bn.named_parameters()},
        "buffers": {k: b.detach().clone() for k, b in bn.named_buffers()},
    }


class _Encoded(torch.nn.Module):
    """A linear encoder + objective; BYOL's target is a frozen copy of the encoder (no DDP parameter)."""

    def __init__(self, name: str, kw: dict[str, Any], dtype: torch.dtype) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = torch.nn.Linear(5, D).to(dtype)
        self.objective = build("objective", name, **kw).to(dtype)
        self.target = copy.deepcopy(self.encoder).requires_grad_(False)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        z1, z2 = self.encoder(x1), self.encoder(x2)
        if self.objective.uses_momentum_target:
            return self.objective(z1, z2, self.target(x1), self.target(x2))
        return self.objective(z1, z2)


def _run_model(name: str, kw: dict[str, Any], rows: slice, wrap: bool) -> dict[str, torch.Tensor]:
    """Parameter gradients of encoder + objective after one backward, through torch's DDP when ``wrap``."""
    net = _Encoded(name, kw, torch.float64)
    model: torch.nn.Module = DistributedDataParallel(net) if wrap else net
    g = torch.Generator().manual_seed(11)
    x = torch.randn(N, 5, generator=g, dtype=torch.float64)
    x1, x2 = x + 0.3 * torch.randn_like(x), x + 0.3 * torch.randn_like(x)
    model(x1[rows], x2[rows]).backward()
    return {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}


def _worker(rank: int, init: str, out: str) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    results: dict[Any, Any] = {}
    for split, sizes in SPLITS.items():
        rows = slice(sum(sizes[:rank]), sum(sizes[: rank + 1]))
        for dtype_name, dtype in DTYPES.items():
            for name, kw in CASES:
                results[(split, dtype_name, name)] = _run(name, kw, rows, dtype)
            results[(split, dtype_name, "batchnorm2d")] = _run_batchnorm2d(rows, dtype)
        for name, kw in CASES:
            results[(split, "ddp_model", name)] = _run_model(name, kw, rows, wrap=True)
    if rank == 1:  # a call made on one process only must not wait for the others
        with local_only():
            results["local_only"] = _run("simclr", dict(CASES)["simclr"], slice(4, 8), torch.float64)
    dist.destroy_process_group()
    torch.save(results, os.path.join(out, f"rank{rank}.pt"))


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[Any, Any]]:
    tmp: Path = tmp_path_factory.mktemp("ddp")
    # fork: the children inherit the imported modules instead of importing torch again (seconds each);
    # DistributedDataParallel imports torch._dynamo on first use: import it once here, before forking
    import torch._dynamo

    mp.start_processes(
        _worker, args=(f"file://{tmp / 'init'}", str(tmp)), nprocs=WORLD, join=True, start_method="fork"
    )
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _tolerance(dtype_name: str) -> float:
    return 1e-10 if dtype_name == "float64" else 1e-5


@pytest.mark.ddp
@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("split", list(SPLITS))
@pytest.mark.parametrize("name", [*(c[0] for c in CASES), "batchnorm2d"])
def test_two_processes_equal_one_process_on_the_whole_batch(
    ranks: list[dict[Any, Any]], name: str, split: str, dtype_name: str
) -> None:
    if name == "batchnorm2d":  # not distributed here, so this is plain nn.BatchNorm2d
        single = _run_batchnorm2d(slice(0, N), DTYPES[dtype_name])
    else:
        single = _run(name, dict(CASES)[name], slice(0, N), DTYPES[dtype_name])
    parts = [r[(split, dtype_name, name)] for r in ranks]
    tol = _tolerance(dtype_name)
    # mean of the per-process losses is the single-process loss
    torch.testing.assert_close(sum(p["loss"] for p in parts) / WORLD, single["loss"], rtol=tol, atol=tol)
    # each process's input gradient is W times the single-process gradient of its rows
    for key in ("z1", "z2"):
        torch.testing.assert_close(
            torch.cat([p[key] for p in parts]) / WORLD, single[key], rtol=tol, atol=tol
        )
    # DDP averages parameter gradients: that average is the single-process gradient
    for pname, grad in single["params"].items():
        torch.testing.assert_close(sum(p["params"][pname] for p in parts) / WORLD, grad, rtol=tol, atol=tol)
    # synced BatchNorm: every process tracks the running statistics of the global batch
    for bname, buf in single["buffers"].items():
        for p in parts:
            torch.testing.assert_close(p["buffers"][bname], buf, rtol=tol, atol=tol)


@pytest.mark.ddp
@pytest.mark.parametrize("split", list(SPLITS))
@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_ddp_wrapped_model_gradients_equal_one_process(
    ranks: list[dict[Any, Any]], name: str, split: str
) -> None:
    """End to end: torch's DistributedDataParallel (gradient averaging) on encoder + objective."""
    single = _run_model(name, dict(CASES)[name], slice(0, N), wrap=False)
    assert "encoder.weight" in single
    for r in ranks:
        grads = r[(split, "ddp_model", name)]
        assert set(grads) == set(single)
        for key, grad in single.items():
            torch.testing.assert_close(grads[key], grad, rtol=1e-10, atol=1e-10)


@pytest.mark.ddp
def test_per_process_losses_differ_for_per_anchor_objectives(ranks: list[dict[Any, Any]]) -> None:
    """Guards the test above against a vacuous pass: SimCLR's local shares are not the global value."""
    a, b = (r[("even", "float64", "simclr")]["loss"] for r in ranks)
    assert abs(float(a) - float(b)) > 1e-3
    c, d = (r[("uneven", "float64", "vicreg")]["loss"] for r in ranks)
    assert float(c) == pytest.approx(float(d), rel=1e-12)  # global-statistics losses: the same value


@pytest.mark.ddp
def test_local_only_uses_the_local_batch_without_collectives(ranks: list[dict[Any, Any]]) -> None:
    alone = ranks[1]["local_only"]
    single = _run("simclr", dict(CASES)["simclr"], slice(4, 8), torch.float64)
    torch.testing.assert_close(alone["loss"], single["loss"], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(alone["z1"], single["z1"], rtol=1e-12, atol=1e-12)
