"""Projectors of SPEC section 3: shapes, trainable vs fixed, and each variant's defining property."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.registry import build, names

D = 24

# (name, kwargs, out_dim, trainable) as in SPEC section 3's table
VARIANTS = [
    ("none", {}, D, False),
    ("linear", {}, D, True),
    ("linear", {"out_dim": 10}, 10, True),
    ("mlp", {"hidden_dim": 32, "out_dim": 16}, 16, True),
    ("orthogonal", {}, D, True),
    ("orthogonal", {"orthogonal_map": "cayley", "out_dim": 20}, 20, True),
    ("diagonal", {}, D, True),
    ("fixed_lowrank", {"d0": 6}, D, False),
    ("fixed_lowrank_diagonal", {"d0": 6}, 6, False),
    ("random_subvector", {"d0": 6}, D, False),
    ("constant_subvector", {"d0": 6, "k": "one"}, D, False),
    ("vibcreg", {"hidden_dim": 32, "out_dim": 16, "groups": 4}, 16, True),  # MLP + IterNorm (VIbCReg)
]


def effective_matrix(proj: torch.nn.Module, dim: int = D) -> np.ndarray:
    """The linear map of a projector read off by applying it to the identity (rows = e_i)."""
    with torch.no_grad():
        return proj(torch.eye(dim)).double().numpy().T  # column i = proj(e_i)


def test_every_spec_variant_is_registered() -> None:
    expected = {v[0] for v in VARIANTS}
    assert expected == set(names("projector"))


@pytest.mark.parametrize(("name", "kw", "out_dim", "trainable"), VARIANTS)
def test_shapes_and_trainability(name: str, kw: dict, out_dim: int, trainable: bool) -> None:
    proj = build("projector", name, in_dim=D, **kw)
    z = proj(torch.randn(7, D))
    assert proj.out_dim == out_dim
    assert z.shape == (7, out_dim)
    params = [p for p in proj.parameters() if p.requires_grad]
    assert bool(params) == trainable
    if trainable:
        z.square().sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_linear_is_a_matrix_product() -> None:
    proj = build("projector", "linear", in_dim=D, out_dim=5)
    r = torch.randn(3, D)
    w = proj.linear.weight.detach().numpy().astype(np.float64)
    x = r.numpy().astype(np.float64)
    err = np.abs(proj(r).detach().numpy() - x @ w.T)
    # float32 sum of D products: error <= gamma_D * sum |r_i w_i| in any summation order (any CPU)
    u = 2.0**-24
    assert (err <= D * u / (1 - D * u) * (np.abs(x) @ np.abs(w).T)).all(), err.max()
    assert proj.linear.bias is None


@pytest.mark.parametrize(("depth", "last_bn"), [(1, False), (2, True), (3, True), (3, False)])
def test_mlp_structure(depth: int, last_bn: bool) -> None:
    proj = build("projector", "mlp", in_dim=D, hidden_dim=12, out_dim=5, depth=depth, last_bn=last_bn)
    kinds = [type(m).__name__ for m in proj.net]
    assert kinds.count("Linear") == depth
    assert kinds.count("ReLU") == depth - 1
    assert kinds.count("BatchNorm1d") == depth - 1 + int(last_bn)
    assert kinds[-1] == ("BatchNorm1d" if last_bn else "Linear")
    z = proj.train()(torch.randn(9, D))
    if last_bn:  # batch-normalised output with unit gamma: per-dim mean 0, biased var 1
        np.testing.assert_allclose(z.mean(0).detach().numpy(), 0, atol=1e-5)
        np.testing.assert_allclose(z.var(0, unbiased=False).detach().numpy(), 1, atol=1e-3)


@pytest.mark.parametrize("orthogonal_map", ["matrix_exp", "cayley"])
@pytest.mark.parametrize("out_dim", [D, 9])
def test_orthogonal_stays_orthogonal_after_optimiser_step(orthogonal_map: str, out_dim: int) -> None:
    proj = build("projector", "orthogonal", in_dim=D, out_dim=out_dim, orthogonal_map=orthogonal_map)
    opt = torch.optim.SGD(proj.parameters(), lr=0.5)
    w0 = proj.weight.detach().clone()
    r = torch.randn(16, D)
    target = torch.randn(16, out_dim)
    for _ in range(3):
        opt.zero_grad()
        (proj(r) - target).square().sum().backward()
        opt.step()
    w = proj.weight.detach().double()
    assert (w - w0.double()).abs().max() > 1e-3  # it did train
    np.testing.assert_allclose((w @ w.T).numpy(), np.eye(out_dim), atol=1e-5)
    np.testing.assert_allclose(proj(r).detach().numpy(), r.numpy() @ w.numpy().T, atol=1e-5)
    assert proj(r).dtype == torch.float32


def test_diagonal_scales_each_dimension() -> None:
    proj = build("projector", "diagonal", in_dim=D, init=0.5)
    with torch.no_grad():
        proj.scale.copy_(torch.arange(D, dtype=torch.float32))
    r = torch.randn(4, D)
    np.testing.assert_allclose(effective_matrix(proj), np.diag(np.arange(D)), atol=0)
    torch.testing.assert_close(proj(r), r * torch.arange(D))


@pytest.mark.parametrize("d0", [1, 5, D])
def test_fixed_lowrank_has_rank_d0_and_unit_singular_values(d0: int) -> None:
    proj = build("projector", "fixed_lowrank", in_dim=D, d0=d0, seed=3)
    m = effective_matrix(proj)
    assert np.linalg.matrix_rank(m, tol=1e-4) == d0
    sv = np.linalg.svd(m, compute_uv=False)
    np.testing.assert_allclose(sv[:d0], 1.0, atol=1e-5)
    np.testing.assert_allclose(sv[d0:], 0.0, atol=1e-5)
    u = proj.u.double().numpy()
    np.testing.assert_allclose(u.T @ u, np.eye(D), atol=1e-5)
    assert list(proj.parameters()) == []
    assert {"u", "v", "matrix"} <= set(proj.state_dict())


def test_fixed_lowrank_is_seeded() -> None:
    a = build("projector", "fixed_lowrank", in_dim=D, d0=4, seed=1)
    b = build("projector", "fixed_lowrank", in_dim=D, d0=4, seed=1)
    c = build("projector", "fixed_lowrank", in_dim=D, d0=4, seed=2)
    torch.testing.assert_close(a.matrix, b.matrix)
    assert not torch.allclose(a.matrix, c.matrix)


def test_fixed_lowrank_diagonal_equals_slicing() -> None:
    proj = build("projector", "fixed_lowrank_diagonal", in_dim=D, d0=7)
    r = torch.randn(5, D)
    assert torch.equal(proj(r), r[:, :7])
    np.testing.assert_array_equal(effective_matrix(proj)[:, :], np.eye(D)[:7])


def nonzero_columns(z: torch.Tensor) -> set[int]:
    return set(torch.nonzero(z.abs().sum(0)).flatten().tolist())


def test_random_subvector_draws_new_dims_in_training_and_fixed_in_eval() -> None:
    proj = build("projector", "random_subvector", in_dim=D, d0=6, seed=0).train()
    r = torch.randn(8, D) + 3.0  # no zero entries
    draws = []
    for _ in range(4):
        z = proj(r)
        cols = nonzero_columns(z)
        assert len(cols) == 6
        idx = sorted(cols)
        assert torch.equal(z[:, idx], r[:, idx])  # kept dims pass through unchanged
        draws.append(tuple(idx))
    assert len(set(draws)) > 1
    proj.eval()
    e1, e2 = proj(r), proj(r)
    assert torch.equal(e1, e2)
    assert nonzero_columns(e1) == set(torch.nonzero(proj.eval_mask).flatten().tolist())
    assert len(nonzero_columns(e1)) == 6


def test_random_subvector_resume_reproduces_masks() -> None:
    a = build("projector", "random_subvector", in_dim=D, d0=5, seed=7)
    r = torch.randn(2, D) + 3.0
    a(r)
    state = a.state_dict()
    next_a = a(r)
    b = build("projector", "random_subvector", in_dim=D, d0=5, seed=99)
    b.load_state_dict(state)
    assert torch.equal(b(r), next_a)


@pytest.mark.parametrize(
    ("k", "value"), [("zero", 0.0), ("inv_sqrt_d", 1 / math.sqrt(D)), ("one", 1.0), (0.25, 0.25), (-2, -2.0)]
)
def test_constant_subvector_constants(k, value: float) -> None:
    proj = build("projector", "constant_subvector", in_dim=D, d0=5, k=k)
    r = torch.randn(6, D)
    z = proj(r)
    assert torch.equal(z[:, :5], r[:, :5])
    np.testing.assert_allclose(z[:, 5:].numpy(), np.full((6, D - 5), value), rtol=0, atol=1e-7)
    # gradient flows only into the kept dims
    r.requires_grad_(True)
    proj(r).sum().backward()
    assert torch.equal(r.grad, torch.cat([torch.ones(6, 5), torch.zeros(6, D - 5)], 1))


@pytest.mark.parametrize(
    "name", ["fixed_lowrank", "fixed_lowrank_diagonal", "random_subvector", "constant_subvector"]
)
@pytest.mark.parametrize("d0", [D + 1, 0, -3, 2.5])
def test_bad_d0_is_a_config_error(name: str, d0) -> None:
    with pytest.raises(ConfigError, match="d0"):
        build("projector", name, in_dim=D, d0=d0)


def test_other_bad_configuration_and_inputs() -> None:
    with pytest.raises(ConfigError, match="k"):
        build("projector", "constant_subvector", in_dim=D, d0=3, k="half")
    with pytest.raises(ConfigError, match="orthogonal_map"):
        build("projector", "orthogonal", in_dim=D, orthogonal_map="householder")
    with pytest.raises(ConfigError, match="out_dim"):
        build("projector", "orthogonal", in_dim=D, out_dim=D + 1)
    with pytest.raises(ConfigError, match="depth"):
        build("projector", "mlp", in_dim=D, depth=0)
    with pytest.raises(ConfigError, match="in_dim"):
        build("projector", "linear", in_dim=0)
    with pytest.raises(ConfigError, match="Valid projector names"):
        build("projector", "quadratic", in_dim=D)
    with pytest.raises(InputError, match=r"\[N, 24\]"):
        build("projector", "mlp", in_dim=D)(torch.randn(4, D + 1))
