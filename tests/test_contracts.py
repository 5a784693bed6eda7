"""Every registered backbone, projector, objective and regularizer obeys its contract (dimcollapse.contracts).

The test loops over ``registry.names(kind)``, so a newly registered component is checked without
editing this file: it is built with the small keyword arguments of the tables below (a sensible
default when its name is not listed), run forward and backward on a tiny input, and its documented
attributes are checked against what it actually does.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from dimcollapse import contracts
from dimcollapse.errors import ConfigError
from dimcollapse.registry import build, get, keyword_options, names
from dimcollapse.training.schedules import SCHEDULE_OPTIONS, coefficient_schedule, split_term_kwargs

# small constructor keywords per registered name; a name not listed gets the kind's DEFAULT
BACKBONE_KW: dict[str, dict[str, Any]] = {
    "mlp": {"in_channels": 1, "image_size": 8, "hidden_dims": (16, 12)},
    "resnet18": {"in_channels": 1, "stem": "cifar", "width": 0.125},
    "resnet34": {"in_channels": 1, "stem": "cifar", "width": 0.125},
    "resnet50": {"in_channels": 1, "stem": "cifar", "width": 0.0625},
    "small_resnet": {"in_channels": 1, "widths": (4, 4, 8, 8)},
    "vit_tiny": {"in_channels": 1, "image_size": 8, "patch_size": 4, "depth": 1},
    "vit_small": {"in_channels": 1, "image_size": 8, "patch_size": 4, "depth": 1},
    "vit_base": {"in_channels": 1, "image_size": 8, "patch_size": 4, "depth": 1},
}
BACKBONE_DEFAULT: dict[str, Any] = {"in_channels": 1}
IN_DIM = 16
PROJECTOR_KW: dict[str, dict[str, Any]] = {
    "mlp": {"hidden_dim": 8, "out_dim": 6},
    "linear": {"out_dim": 6},
    "orthogonal": {"out_dim": 6},
    "constant_subvector": {"d0": 4},
    "random_subvector": {"d0": 4},
    "fixed_lowrank": {"d0": 4},
    "fixed_lowrank_diagonal": {"d0": 4},
    "vibcreg": {"hidden_dim": 8, "out_dim": 6, "groups": 2},
}
PROJECTOR_DEFAULT: dict[str, Any] = {}
DIM = 8
ROWS = 24
OBJECTIVE_KW: dict[str, dict[str, Any]] = {
    "byol": {"hidden_dim": 16},
    "simsiam": {"hidden_dim": 16},
    "directclr": {"d0": 4},
    "wmse": {"w_size": 12},  # whitening sub-batches: > DIM rows, dividing the batch of ROWS
}
OBJECTIVE_DEFAULT: dict[str, Any] = {}
REGULARIZER_KW: dict[str, dict[str, Any]] = {
    "ldreg": {"k": 5},
    "minlid": {"k": 5},
}
REGULARIZER_DEFAULT: dict[str, Any] = {}


def _finite_grads(tensors: list[torch.Tensor]) -> bool:
    return all(t.grad is not None and bool(torch.isfinite(t.grad).all()) for t in tensors)


def _tiny_backbone() -> nn.Module:
    return build("backbone", "small_resnet", **BACKBONE_KW["small_resnet"])


@pytest.mark.parametrize("name", names("backbone"))
def test_backbone_contract(name: str) -> None:
    torch.manual_seed(0)
    net = build("backbone", name, **BACKBONE_KW.get(name, BACKBONE_DEFAULT))
    assert isinstance(net, nn.Module) and isinstance(net, contracts.Backbone)
    size = getattr(net, "image_size", 8)
    x = torch.randn(3, net.in_channels, size, size)
    r = net(x)
    assert r.shape == (3, net.out_dim) and torch.isfinite(r).all()
    r.square().sum().backward()
    params = [p for p in net.parameters() if p.requires_grad]
    assert params and any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    layers = net.weight_layers()
    order = [n for n, _ in net.named_modules()]
    positions = [order.index(n) for n, _ in layers]
    assert layers and positions == sorted(positions)  # input -> output, named_modules names
    for layer_name, module in layers:
        assert dict(net.named_modules())[layer_name] is module
        weight = getattr(module, "weight", None)
        assert isinstance(weight, torch.Tensor) and weight.dim() >= 2, layer_name
    assert net.last_layer_name == layers[-1][0]


@pytest.mark.parametrize("name", names("projector"))
def test_projector_contract(name: str) -> None:
    torch.manual_seed(0)
    proj = build("projector", name, in_dim=IN_DIM, **PROJECTOR_KW.get(name, PROJECTOR_DEFAULT))
    assert isinstance(proj, nn.Module) and isinstance(proj, contracts.Projector)
    assert proj.in_dim == IN_DIM
    r = torch.randn(5, IN_DIM, requires_grad=True)
    z = proj(r)
    assert z.shape == (5, proj.out_dim) and torch.isfinite(z).all()
    z.square().sum().backward()
    assert _finite_grads([r]) and r.grad is not None and r.grad.abs().sum() > 0
    assert _finite_grads([p for p in proj.parameters() if p.requires_grad])


def _objective(name: str) -> nn.Module:
    kw = dict(OBJECTIVE_KW.get(name, OBJECTIVE_DEFAULT))
    if getattr(get("objective", name), "needs_dim", False):
        kw["dim"] = DIM  # what the training module passes: dim = projector.out_dim
    return build("objective", name, **kw)


@pytest.mark.parametrize("name", names("objective"))
def test_objective_contract(name: str) -> None:
    torch.manual_seed(0)
    loss = _objective(name)
    assert isinstance(loss, nn.Module) and isinstance(loss, contracts.Objective)
    assert isinstance(loss.uses_momentum_target, bool) and isinstance(loss.needs_dim, bool)
    z1, z2 = (torch.randn(ROWS, DIM, requires_grad=True) for _ in range(2))
    targets = [torch.randn(ROWS, DIM) for _ in range(2)] if loss.uses_momentum_target else []
    value = loss(z1, z2, *targets)
    assert value.dim() == 0 and torch.isfinite(value)
    stats = loss.last_stats.values()  # detached tensors: no host sync inside forward
    assert stats and all(
        isinstance(v, torch.Tensor) and not v.requires_grad and v.numel() == 1 for v in stats
    )
    value.backward()
    # every view that reaches the loss gets a finite gradient (ReSSL's weak view 2 feeds only the teacher)
    grads = [z.grad for z in (z1, z2) if z.grad is not None]
    assert z1.grad is not None and all(bool(torch.isfinite(g).all()) for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert _finite_grads([p for p in loss.parameters() if p.requires_grad])
    base, final = loss.default_momentum  # read by the run's schedules (the objective holds none)
    assert 0.0 <= base <= final <= 1.0
    assert not hasattr(loss, "set_progress") and not hasattr(loss, "momentum")  # no clock, no schedule
    for online, target in loss.momentum_pairs():
        assert all(not p.requires_grad for p in target.parameters()) and online is not target


def _regularizer(name: str) -> nn.Module:
    return build("regularizer", name, **REGULARIZER_KW.get(name, REGULARIZER_DEFAULT))


def _apply(reg: nn.Module, inputs: Any) -> torch.Tensor:
    return reg(inputs) if reg.target == "weights" else reg(inputs[0], reference=inputs[1])


@pytest.mark.parametrize("name", names("regularizer"))
def test_regularizer_contract(name: str) -> None:
    reg = _regularizer(name)
    assert isinstance(reg, nn.Module) and isinstance(reg, contracts.Regularizer)
    assert reg.target in ("weights", "features")
    torch.manual_seed(0)
    if reg.target == "weights":
        assert isinstance(reg, contracts.WeightRegularizer)
        net = _tiny_backbone()
        inputs: Any = net
        leaves = [p for p in net.parameters() if p.requires_grad]
    else:
        assert isinstance(reg, contracts.FeatureRegularizer)
        feats = [torch.randn(12, DIM, requires_grad=True) for _ in range(2)]
        inputs = (feats, [torch.randn(12, DIM)])
        leaves = feats
    assert not hasattr(reg, "set_progress") and not hasattr(reg, "coefficient")  # no clock, no weight
    torch.manual_seed(1)
    term = _apply(reg, inputs)
    assert term.dim() == 0 and torch.isfinite(term)
    stats = reg.last_stats.values()  # detached tensors: no host sync inside forward
    assert stats and all(isinstance(v, torch.Tensor) and not v.requires_grad for v in stats)
    term.backward()
    assert any(t.grad is not None and t.grad.abs().sum() > 0 for t in leaves)
    assert all(t.grad is None or torch.isfinite(t.grad).all() for t in leaves)
    # the returned term is the raw one: the same for a second instance (the run owns the coefficient)
    again = _regularizer(name)
    torch.manual_seed(1)
    assert _apply(again, inputs).item() == pytest.approx(term.item(), rel=1e-5, abs=1e-12)


@pytest.mark.parametrize("name", names("regularizer"))
def test_regularizer_entry_splits_into_schedule_and_term_keywords(name: str) -> None:
    cls = get("regularizer", name)
    with pytest.raises(ConfigError, match=r"unknown option"):
        build("regularizer", name, not_an_option=1)
    for key in SCHEDULE_OPTIONS:  # the coefficient's keywords belong to the run, never to the term
        assert key not in (keyword_options(cls) or [])
    entry = {"weight": 2.0, "schedule": "step", "milestones": [1.0], "multipliers": [0.25]}
    sched, own = split_term_kwargs({**entry, **REGULARIZER_KW.get(name, REGULARIZER_DEFAULT)})
    assert sched == entry and own == REGULARIZER_KW.get(name, REGULARIZER_DEFAULT)
    assert coefficient_schedule(cls, sched)(1.5) == pytest.approx(0.5)
    assert coefficient_schedule(cls, {"weight": 2.0, "off_epoch": 1.0})(1.0) == 0.0
