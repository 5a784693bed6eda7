"""The feature-whitening regularizer on the global batch: 2 gloo processes, each with its share of the rows,
give the term of 1 process on the concatenated batch, and (after DDP's averaging) its gradient."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dimcollapse.registry import build


def _views(n: int = 24, d: int = 5) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    scale = torch.linspace(0.2, 2.0, d, dtype=torch.float64)
    return [torch.randn(n, d, generator=gen, dtype=torch.float64) * scale for _ in range(2)]


def _worker(rank: int, world: int, init: str, bounds: list[int], out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    local = [v[bounds[rank] : bounds[rank + 1]].clone().requires_grad_(True) for v in _views()]
    term = build("regularizer", "whitening")(local)
    term.backward()
    torch.save({"term": term.detach(), "grads": [v.grad for v in local]}, f"{out}_{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.ddp
@pytest.mark.parametrize("bounds", [[0, 12, 24], [0, 7, 24]], ids=["even", "uneven"])
def test_whitening_ddp_equals_one_process_on_the_concatenated_batch(
    tmp_path: Path, bounds: list[int]
) -> None:
    world = 2
    mp.spawn(_worker, args=(world, f"file://{tmp_path}/init", bounds, str(tmp_path / "out")), nprocs=world)
    full = [v.clone().requires_grad_(True) for v in _views()]
    single = build("regularizer", "whitening")(full)
    single.backward()
    for rank in range(world):
        got = torch.load(tmp_path / f"out_{rank}.pt")
        # float64 sums of 24 rows in another order: agreement to a few ulps of the term's size
        assert got["term"].item() == pytest.approx(single.item(), rel=1e-12)
        for view, grad in zip(full, got["grads"], strict=True):
            want = view.grad[bounds[rank] : bounds[rank + 1]]
            torch.testing.assert_close(grad / world, want, rtol=1e-10, atol=1e-13)
