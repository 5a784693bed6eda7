"""LDReg / MinLID and feature whitening: LID against diagnostics and numpy, DDP equivalence, behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from dimcollapse.diagnostics import lid_mle, lid_mom
from dimcollapse.errors import ConfigError
from dimcollapse.registry import build, get
from dimcollapse.utils.distributed import local_only, world_size
from dimcollapse.utils.distributed import rank as dist_rank


def np_lid(
    queries: np.ndarray, reference: np.ndarray, self_rows: np.ndarray, k: int, method: str
) -> np.ndarray:
    """SPEC 1.7 LID per query in float64 numpy; query i excludes reference row self_rows[i]."""
    d = np.sqrt(((queries[:, None, :] - reference[None, :, :]) ** 2).sum(-1))
    d[np.arange(len(queries)), self_rows] = np.inf
    r = np.sort(d, axis=1)[:, :k]
    if method == "mom":
        m = r.mean(1)
        return m / (r[:, -1] - m)
    return -1.0 / np.log(r / r[:, -1:]).mean(1)


def low_dim_views(n: int = 40, d: int = 12, intrinsic: int = 3, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    basis = torch.randn(intrinsic, d, generator=gen, dtype=torch.float64)
    x = torch.randn(n, intrinsic, generator=gen, dtype=torch.float64) @ basis
    return [x + 0.05 * torch.randn(n, d, generator=gen, dtype=torch.float64) for _ in range(2)]


@pytest.mark.parametrize("estimator", ["mom", "mle"])
@pytest.mark.parametrize("form", ["l1", "l2"])
def test_ldreg_lid_matches_diagnostics_and_numpy(estimator: str, form: str) -> None:
    views = low_dim_views()
    reg = build("regularizer", "ldreg", k=10, estimator=estimator, form=form)  # the raw term: -raw
    term = reg(views)
    z = torch.cat(views)
    diag = (lid_mom if estimator == "mom" else lid_mle)(z.numpy(), k=10)
    ref = np_lid(z.numpy(), z.numpy(), np.arange(len(z)), 10, estimator)
    np.testing.assert_allclose(diag, ref, rtol=1e-9)
    logs = np.log(ref)
    raw = logs.mean() if form == "l1" else np.sqrt((logs**2).mean())
    assert term.item() == pytest.approx(-raw, rel=1e-9)
    assert reg.last_stats["lid_geomean"] == pytest.approx(np.exp(logs.mean()), rel=1e-9)
    minlid = build("regularizer", "minlid", k=10, estimator=estimator, form=form)
    assert minlid(views).item() == pytest.approx(raw, rel=1e-9)


def test_ldreg_reference_includes_target_features() -> None:
    views = low_dim_views(n=30)
    target = [v + 0.1 for v in low_dim_views(n=30, seed=1)]
    reg = build("regularizer", "ldreg", k=8)
    term = reg(views, reference=target)
    q = torch.cat(views).numpy()
    ref = np.concatenate([q, torch.cat(target).numpy()])
    want = np.log(np_lid(q, ref, np.arange(len(q)), 8, "mom")).mean()
    assert term.item() == pytest.approx(-want, rel=1e-9)


def test_ldreg_gradient_matches_independent_torch_and_k_clamp() -> None:
    views = [v.clone().requires_grad_(True) for v in low_dim_views(n=6, d=4)]
    reg = build("regularizer", "ldreg")  # default k = 64 clamped to 12 - 2 = 10
    reg(views).backward()
    assert reg.last_stats["k"] == 10.0
    # independent: cdist to the detached batch, own row masked, MoM on the 10 nearest
    q = torch.cat([v.detach() for v in views]).requires_grad_(True)
    d = torch.cdist(q, q.detach()) + torch.diag(torch.full((12,), float("inf"), dtype=q.dtype))
    r = d.sort(dim=1).values[:, :10]
    m = r.mean(1)
    (-torch.log(m / (r[:, -1] - m)).mean()).backward()
    assert q.grad is not None
    torch.testing.assert_close(torch.cat([v.grad for v in views]), q.grad, rtol=1e-7, atol=1e-10)
    with pytest.raises(ConfigError, match="k = 12 needs more than k reference points"):
        build("regularizer", "ldreg", k=12)(views)
    assert torch.isfinite(build("regularizer", "ldreg", k=11)(views))


def test_ldreg_warmup_holds_the_term_off() -> None:
    from dimcollapse.training.schedules import coefficient_schedule

    c = coefficient_schedule(get("regularizer", "ldreg"), {"warmup_epochs": 1})
    assert (c(0.5), c(1.0)) == (0.0, 0.01)  # held at 0 (not ramped), then LDReg's default weight
    assert get("regularizer", "ldreg").skip_when_off  # the module skips its k-NN search meanwhile


FORMS = ("l1", "l2")


def _ddp_worker(
    rank: int, world: int, init: str, views: list[torch.Tensor], bounds: list[int], out: str
) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    result = {}
    for form in FORMS:
        local = [v[bounds[rank] : bounds[rank + 1]].clone().requires_grad_(True) for v in views]
        term = build("regularizer", "ldreg", k=12, form=form)(local)
        term.backward()
        result[form] = {"term": term.detach(), "grads": [v.grad for v in local]}
    result["world"] = (world_size(), dist_rank())
    with local_only():  # every process on its own rows, no collectives (rank-0 callbacks do this alone)
        result["world_local_only"] = (world_size(), dist_rank())
        local = [v[bounds[rank] : bounds[rank + 1]].clone().requires_grad_(True) for v in views]
        term = build("regularizer", "ldreg", k=6)(local)
        term.backward()
        result["local_only"] = {"term": term.detach(), "grads": [v.grad for v in local]}
    torch.save(result, f"{out}_{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.ddp
@pytest.mark.parametrize("bounds", [[0, 12, 24], [0, 9, 24]], ids=["even", "uneven"])
def test_ldreg_ddp_equals_single_process_on_gathered_batch(tmp_path, bounds: list[int]) -> None:
    views = low_dim_views(n=24)
    world = 2
    args = (world, f"file://{tmp_path}/init", views, bounds, str(tmp_path / "out"))
    mp.spawn(_ddp_worker, args=args, nprocs=world)
    for form in FORMS:
        full = [v.clone().requires_grad_(True) for v in views]
        single = build("regularizer", "ldreg", k=12, form=form)(full)
        single.backward()
        for rank in range(world):
            got = torch.load(tmp_path / f"out_{rank}.pt")[form]
            assert got["term"].item() == pytest.approx(single.item(), rel=1e-10)
            for view, grad in zip(full, got["grads"], strict=True):
                # DDP averages gradients over processes: each rank's local gradient is world x the global one
                want = view.grad[bounds[rank] : bounds[rank + 1]]
                torch.testing.assert_close(grad / world, want, rtol=1e-9, atol=1e-12)
    for rank in range(world):  # inside local_only each process equals one process on its own rows
        saved = torch.load(tmp_path / f"out_{rank}.pt")
        assert saved["world"] == (world, rank) and saved["world_local_only"] == (1, 0)
        got = saved["local_only"]
        mine = [v[bounds[rank] : bounds[rank + 1]].clone().requires_grad_(True) for v in views]
        alone = build("regularizer", "ldreg", k=6)(mine)
        alone.backward()
        assert got["term"].item() == pytest.approx(alone.item(), rel=1e-10)
        for view, grad in zip(mine, got["grads"], strict=True):
            torch.testing.assert_close(grad, view.grad, rtol=1e-9, atol=1e-12)


def effective_rank_np(r: np.ndarray) -> float:
    """exp(entropy) of the normalised covariance eigenvalues (Roy & Vetterli 2007)."""
    eig = np.clip(np.linalg.eigvalsh(np.cov(r.T)), 0, None)
    p = eig / eig.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def _train_tiny(name: str, beta: float, steps: int = 150) -> tuple[float, float]:
    """Train a 2-layer MLP on random data with the regularizer alone; effective rank of r before / after.

    The last layer starts partly collapsed (singular values 3.. scaled by 0.3, erank about 4 of 16), so the
    test can see both directions (LDReg paper table 13: MinLID collapses, LDReg raises effective rank).
    """
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 16))
    with torch.no_grad():
        u, s, vh = torch.linalg.svd(model[2].weight, full_matrices=False)
        s[2:] *= 0.3
        model[2].weight.copy_(u @ torch.diag(s) @ vh)
    x = torch.randn(128, 16)
    reg = build("regularizer", name, k=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with torch.no_grad():
        before = effective_rank_np(model(x).numpy())
    for _ in range(steps):
        opt.zero_grad()
        (beta * reg([model(x), model(x + 0.05 * torch.randn_like(x))])).backward()
        opt.step()
    with torch.no_grad():
        after = effective_rank_np(model(x).numpy())
    return before, after


def test_minlid_collapses_and_ldreg_raises_effective_rank() -> None:
    before, collapsed = _train_tiny("minlid", beta=1.0)
    _, raised = _train_tiny("ldreg", beta=1.0)
    assert 3.0 < before < 6.0
    assert collapsed < 2.5
    assert raised > before + 1.0


def test_whitening_terms_against_numpy() -> None:
    gen = torch.Generator().manual_seed(0)
    views = [
        torch.randn(50, 6, generator=gen, dtype=torch.float64) * torch.linspace(0.1, 2, 6) for _ in range(2)
    ]
    reg = build("regularizer", "whitening", variance_weight=25.0, covariance_weight=1.0)
    term = reg(views)
    want = []
    for v in views:
        a = v.numpy()
        var = np.maximum(0.0, 1.0 - np.sqrt(a.var(0, ddof=1) + 1e-4)).mean()
        c = np.cov(a.T)
        cov = ((c**2).sum() - (np.diag(c) ** 2).sum()) / 6
        want.append((var, cov))
    var_m, cov_m = np.mean(want, axis=0)
    assert term.item() == pytest.approx(25.0 * var_m + cov_m, rel=1e-9)
    # whitened data: zero covariance term and no variance hinge
    raw = torch.randn(50, 6, dtype=torch.float64)
    white = torch.linalg.qr(raw - raw.mean(0)).Q * np.sqrt(49)  # centred, covariance exactly I
    assert build("regularizer", "whitening")([white]).item() == pytest.approx(0.0, abs=1e-12)  # round-off
    assert build("regularizer", "whitening")([white * 0.5]).item() > 10.0  # variance hinge active
