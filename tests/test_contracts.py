"""Every registered backbone, projector, objective and regularizer obeys its contract (dimcollapse.contracts).

The test loops over ``registry.names(kind)``, so a newly registered component is checked without
editing this file: it is built with the small keyword arguments of the tables below (a sensible
default when its name is not listed), run forward and backward on a tiny input, and its documented
attributes are checked against what it actually does.
"""

from __future__ import annotations

import inspect
import itertools
from typing import Any

import pytest
import torch
from torch import nn

from dimcollapse import contracts
from dimcollapse.errors import ConfigError
from dimcollapse.registry import build, get, keyword_options, names
from dimcollapse.regularizers.base import Regularizer
from dimcollapse.regularizers.schedule import SCHEDULE_OPTIONS

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
    assert loss.last_stats and all(isinstance(v, float) for v in loss.last_stats.values())
    value.backward()
    # every view that reaches the loss gets a finite gradient (ReSSL's weak view 2 feeds only the teacher)
    grads = [z.grad for z in (z1, z2) if z.grad is not None]
    assert z1.grad is not None and all(bool(torch.isfinite(g).all()) for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert _finite_grads([p for p in loss.parameters() if p.requires_grad])
    if loss.uses_momentum_target:  # tau(progress) non-decreasing in [0, 1], ending at 1
        assert isinstance(loss, contracts.MomentumObjective)
        taus = [loss.momentum(p) for p in (0.0, 0.25, 0.5, 1.0)]
        assert all(0.0 <= a <= b <= 1.0 for a, b in itertools.pairwise(taus))
        assert taus[-1] == pytest.approx(1.0)


def _regularizer(name: str, weight: float) -> nn.Module:
    return build("regularizer", name, weight=weight, **REGULARIZER_KW.get(name, REGULARIZER_DEFAULT))


def _apply(reg: nn.Module, inputs: Any) -> torch.Tensor:
    return reg(inputs) if reg.target == "weights" else reg(inputs[0], reference=inputs[1])


@pytest.mark.parametrize("name", names("regularizer"))
def test_regularizer_contract(name: str) -> None:
    reg = _regularizer(name, 0.5)
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
    reg.set_progress(0.5)
    assert reg.coefficient() == pytest.approx(0.5)  # default schedule: constant, no warm-up
    torch.manual_seed(1)
    term = _apply(reg, inputs)
    assert term.dim() == 0 and torch.isfinite(term)
    assert reg.last_stats and all(isinstance(v, float) for v in reg.last_stats.values())
    term.backward()
    assert any(t.grad is not None and t.grad.abs().sum() > 0 for t in leaves)
    assert all(t.grad is None or torch.isfinite(t.grad).all() for t in leaves)
    # the returned term already carries the coefficient: twice the weight, twice the term
    double = _regularizer(name, 1.0)
    double.set_progress(0.5)
    torch.manual_seed(1)
    assert _apply(double, inputs).item() == pytest.approx(2 * term.item(), rel=1e-5, abs=1e-12)


@pytest.mark.parametrize("name", names("regularizer"))
def test_regularizer_takes_the_schedule_keywords_and_rejects_unknown_ones(name: str) -> None:
    valid = keyword_options(get("regularizer", name))
    assert valid is not None and set(SCHEDULE_OPTIONS) <= set(valid)
    with pytest.raises(ConfigError, match=r"unknown option.*Valid options: .*warmup_epochs"):
        build("regularizer", name, not_an_option=1)
    reg = build("regularizer", name, weight=2.0, schedule="step", milestones=[1.0], multipliers=[0.25])
    reg.set_progress(1.5)
    assert reg.coefficient() == pytest.approx(0.5)
    reg = build("regularizer", name, weight=2.0, off_epoch=1.0)
    reg.set_progress(1.0)
    assert reg.coefficient() == 0.0


def test_schedule_options_are_the_base_class_keywords() -> None:
    params = list(inspect.signature(Regularizer.__init__).parameters)
    assert tuple(params[2:]) == SCHEDULE_OPTIONS  # self, weight, then the schedule keywords
