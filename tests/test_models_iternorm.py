"""IterNorm (Huang et al. 2019) and VIbCReg's projector: converged Newton-Schulz whitening equals ZCA
whitening by numpy's eigh, T iterations follow the paper's recursion, group-wise, running statistics in
eval mode, gradients, mixed precision, options, and the VIbCReg recipes use it."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.models.iternorm import IterNorm, newton_schulz_whitening
from dimcollapse.registry import build
from dimcollapse.training.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def correlated(n: int, c: int, seed: int = 0) -> np.ndarray:
    """Rows x = u Q diag(s) Q^T + m, u standard normal, s in [1, 2]: covariance eigenvalues in ~[1, 4].

    The paper's iteration is the uncoupled Newton-Schulz one, stable in floating point only for a
    well-conditioned Sigma (condition number below ~9; Higham 2008, section 6.4): the convergence tests
    use such data, as IterNorm uses few iterations (T = 5) on ill-conditioned embeddings.
    """
    rng = np.random.default_rng(seed)
    q = np.linalg.qr(rng.normal(size=(c, c)))[0]
    mix = (q * rng.uniform(1.0, 2.0, size=c)) @ q.T
    return rng.normal(size=(n, c)) @ mix + rng.normal(size=c)


def zca(x: np.ndarray, eps: float) -> np.ndarray:
    """(x - mu) Sigma^{-1/2}, Sigma = biased covariance + eps I, the inverse root from numpy's eigh."""
    xc = x - x.mean(0)
    lam, u = np.linalg.eigh(xc.T @ xc / len(x) + eps * np.eye(x.shape[1]))
    return xc @ (u * lam**-0.5) @ u.T


def newton_schulz_loop(x: np.ndarray, t: int, eps: float) -> np.ndarray:
    """The paper's W: P_{k+1} = (3 P_k - P_k^3 Sigma_N) / 2 from P_0 = I, W = P_T / sqrt(tr Sigma)."""
    xc = x - x.mean(0)
    sigma = xc.T @ xc / len(x) + eps * np.eye(x.shape[1])
    sigma_n = sigma / np.trace(sigma)
    p = np.eye(x.shape[1])
    for _ in range(t):
        p = 0.5 * (3 * p - p @ p @ p @ sigma_n)
    return p / np.sqrt(np.trace(sigma))


def whiten(x: np.ndarray, **kw: Any) -> np.ndarray:
    """IterNorm without affine in float64, training mode (batch statistics)."""
    layer = IterNorm(x.shape[1], affine=False, **kw).double().train()
    return layer(torch.from_numpy(x)).detach().numpy()


def test_converged_iternorm_is_zca_whitening_with_identity_covariance() -> None:
    x = correlated(300, 6)
    out = whiten(x, groups=1, iterations=40, eps=1e-5)
    np.testing.assert_allclose(out, zca(x, 1e-5), atol=1e-9)
    cov = out.T @ out / len(out)
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(cov, np.eye(6), atol=1e-4)  # I - eps Sigma^{-1}


def test_t_iterations_follow_the_papers_recursion_and_converge() -> None:
    x = correlated(200, 5, seed=1)
    errors = []
    for t in (1, 2, 3, 4, 5, 30):
        w = newton_schulz_loop(x, t, 1e-9)
        out = whiten(x, groups=1, iterations=t, eps=1e-9)
        np.testing.assert_allclose(out, (x - x.mean(0)) @ w.T, atol=1e-10)
        errors.append(np.abs(out.T @ out / len(out) - np.eye(5)).max())
    assert all(a > b for a, b in itertools.pairwise(errors))  # each extra step whitens more
    assert errors[0] > 0.3 and errors[-1] < 1e-7  # one step is far from white; 30 steps are white


def test_few_iterations_stay_finite_on_an_ill_conditioned_batch() -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(size=(128, 16)) * np.logspace(0, -3, 16)  # condition number 1e6
    out = whiten(x, groups=2, iterations=5)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-10)
    var = out.var(0)
    assert var.max() < 1.5 and var.min() > 0  # the large directions are scaled to about 1


def test_groups_are_whitened_separately() -> None:
    x = correlated(250, 8, seed=2)
    out = whiten(x, groups=2, iterations=40, eps=1e-6)
    np.testing.assert_allclose(out[:, :4], zca(x[:, :4], 1e-6), atol=1e-9)
    np.testing.assert_allclose(out[:, 4:], zca(x[:, 4:], 1e-6), atol=1e-9)
    cross = out[:, :4].T @ out[:, 4:] / len(out)
    assert np.abs(cross).max() > 0.1  # the groups stay correlated with each other: not a full whitening


def test_newton_schulz_on_a_batch_of_matrices() -> None:
    rng = np.random.default_rng(3)
    q = np.linalg.qr(rng.normal(size=(3, 4, 4)))[0]
    lam = rng.uniform(1.0, 3.0, size=(3, 4))
    sigma = (q * lam[:, None, :]) @ q.transpose(0, 2, 1)
    w = newton_schulz_whitening(torch.from_numpy(sigma), 40).numpy()
    for g in range(3):
        np.testing.assert_allclose(w[g], (q[g] * lam[g] ** -0.5) @ q[g].T, atol=1e-10)


def test_running_statistics_and_eval_mode() -> None:
    m, t, eps = 0.1, 5, 1e-5
    layer = IterNorm(6, groups=2, iterations=t, eps=eps, momentum=m, affine=False).double().train()
    batches = [correlated(64, 6, seed=s) for s in (4, 5)]
    mean, wm = np.zeros((2, 3)), np.tile(np.eye(3), (2, 1, 1))
    for x in batches:
        layer(torch.from_numpy(x))
        for g in range(2):
            block = x[:, 3 * g : 3 * g + 3]
            mean[g] = (1 - m) * mean[g] + m * block.mean(0)
            wm[g] = (1 - m) * wm[g] + m * newton_schulz_loop(block, t, eps)
    np.testing.assert_allclose(layer.running_mean.numpy(), mean, atol=1e-12)
    np.testing.assert_allclose(layer.running_wm.numpy(), wm, atol=1e-12)
    layer.eval()
    x = correlated(10, 6, seed=6)
    out = layer(torch.from_numpy(x)).detach().numpy()
    for g in range(2):
        expected = (x[:, 3 * g : 3 * g + 3] - mean[g]) @ wm[g].T
        np.testing.assert_allclose(out[:, 3 * g : 3 * g + 3], expected, atol=1e-12)
    single = layer(torch.from_numpy(x[:1])).detach().numpy()  # eval: a row does not see the others
    np.testing.assert_allclose(single, out[:1], atol=1e-12)
    before = layer.running_wm.clone()
    layer(torch.from_numpy(x))
    assert torch.equal(before, layer.running_wm)  # eval never updates the running statistics


def test_running_statistics_are_saved_and_restored() -> None:
    a = IterNorm(8, groups=4).train()
    a(torch.randn(32, 8) * 3 + 1)
    b = IterNorm(8, groups=4)
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 8)
    torch.testing.assert_close(b.eval()(x), a.eval()(x), rtol=0, atol=0)
    assert {"running_mean", "running_wm", "weight", "bias"} <= set(a.state_dict())


def test_gradients_flow_and_match_finite_differences() -> None:
    layer = IterNorm(4, groups=2, iterations=3, eps=1e-3).double().train()
    assert layer.weight is not None and layer.bias is not None
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.normal_()
    x = torch.from_numpy(correlated(7, 4, seed=7)).requires_grad_()
    assert torch.autograd.gradcheck(layer, (x,), eps=1e-6, atol=1e-6)
    probe = torch.randn(7, 4, dtype=torch.float64)
    (layer(x) * probe).sum().backward()
    for p in (x, layer.weight, layer.bias):
        assert p.grad is not None and bool(torch.isfinite(p.grad).all())
        assert p.grad.abs().sum() > 1e-3


def test_bfloat16_autocast_computes_the_iterations_in_float32() -> None:
    layer = IterNorm(8, groups=2).train()
    x = torch.randn(32, 8) @ torch.randn(8, 8)
    expected = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = layer(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"groups": 3}, "groups = 3 does not divide the 8 features"),
        ({"groups": 0}, "groups must be an integer >= 1"),
        ({"iterations": 0}, "iterations must be an integer >= 1"),
        ({"momentum": 1.5}, r"momentum must be in \[0, 1\]"),
        ({"eps": -1.0}, "eps must be a finite number >= 0"),
    ],
)
def test_bad_options_are_config_errors(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        IterNorm(8, **{"groups": 2, **kw})
    with pytest.raises(ConfigError, match=match):
        build("projector", "vibcreg", in_dim=4, hidden_dim=8, out_dim=8, **{"groups": 2, **kw})


def test_bad_inputs_are_input_errors() -> None:
    layer = IterNorm(8, groups=2)
    with pytest.raises(InputError, match=r"shape \[N, 8\]"):
        layer(torch.randn(4, 6))
    with pytest.raises(InputError, match="at least 2 rows"):
        layer.train()(torch.randn(1, 8))
    assert layer.eval()(torch.randn(1, 8)).shape == (1, 8)


def test_vibcreg_projector_is_the_mlp_then_iternorm() -> None:
    proj = build("projector", "vibcreg", in_dim=12, hidden_dim=16, out_dim=8, groups=2)
    kinds = [type(m).__name__ for m in proj.mlp.net]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU"] * 2 + ["Linear"]
    assert isinstance(proj.iternorm, IterNorm) and (proj.in_dim, proj.out_dim) == (12, 8)
    assert (proj.iternorm.groups, proj.iternorm.group_size, proj.iternorm.iterations) == (2, 4, 5)
    r = torch.randn(64, 12, dtype=torch.float64)
    proj = proj.double().train()
    z = proj(r).detach().numpy()  # affine starts at the identity: z = W_T (h - mu) per group of 4
    h = proj.mlp(r).detach().numpy()
    for g in (slice(0, 4), slice(4, 8)):
        expected = (h[:, g] - h[:, g].mean(0)) @ newton_schulz_loop(h[:, g], 5, 1e-5).T
        np.testing.assert_allclose(z[:, g], expected, atol=1e-10)
    default = build("projector", "vibcreg", in_dim=12)
    assert (default.iternorm.groups, default.iternorm.iterations, default.iternorm.affine) == (64, 5, True)


def test_vibcreg_projector_trains_with_the_vibcreg_objective() -> None:
    proj = build("projector", "vibcreg", in_dim=12, hidden_dim=16, out_dim=8, groups=2).train()
    loss_fn = build("objective", "vibcreg")
    r1, r2 = torch.randn(32, 12), torch.randn(32, 12)
    z = proj(torch.cat([r1, r2]))
    loss = loss_fn(*z.chunk(2))
    loss.backward()
    params = [p for p in proj.parameters() if p.requires_grad]
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in params)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


@pytest.mark.parametrize("folder", ["fmnist", "cifar100"])
def test_vibcreg_recipes_end_their_projector_with_iternorm(folder: str) -> None:
    cfg = load_config(CONFIGS / folder / "vibcreg.yaml")
    assert cfg.model.projector == "vibcreg" and cfg.objective.name == "vibcreg"
    kw = dict(cfg.model.projector_kwargs)
    assert (kw["groups"], kw["iterations"]) == (64, 5)  # VIbCReg's IterNorm settings
    proj = build("projector", "vibcreg", in_dim=128, **kw)
    assert proj.out_dim % 64 == 0 and isinstance(proj.iternorm, IterNorm)
