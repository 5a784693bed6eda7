"""Hand-made cases, stop-gradients, the momentum schedule, optimisation and bad input for the objectives."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.objectives import (
    GlobalBatchNorm1d,
    GlobalBatchNorm2d,
    convert_to_global_batchnorm,
    ema_update,
)
from dimcollapse.registry import build, get, names
from dimcollapse.training.schedules import cosine_momentum


def _simplex(n: int) -> torch.Tensor:
    """n unit vectors in R^n with pairwise cosine -1/(n-1) (centred standard basis, normalised)."""
    e = torch.eye(n, dtype=torch.float64)
    return torch.nn.functional.normalize(e - e.mean(0), dim=1)


def test_registry_names_and_contract_attributes() -> None:
    assert set(names("objective")) >= {"simclr", "directclr", "byol", "simsiam", "barlow_twins", "vicreg"}
    classes: dict[str, Any] = {name: get("objective", name) for name in names("objective")}
    flags = {name: (cls.uses_momentum_target, cls.needs_dim) for name, cls in classes.items()}
    assert flags["byol"] == (True, True)
    assert flags["simsiam"] == (False, True)
    for name in ("simclr", "directclr", "barlow_twins", "vicreg"):
        assert flags[name] == (False, False)


@pytest.mark.parametrize("tau", [0.5, 0.2])
def test_ntxent_identical_views_closed_forms_and_minimum(tau: float) -> None:
    n = 6
    loss = build("objective", "simclr", temperature=tau)
    ortho = torch.eye(n, dtype=torch.float64)
    # positives at cosine 1, 2n - 2 negatives at cosine 0
    assert float(loss(ortho, ortho)) == pytest.approx(math.log(1 + (2 * n - 2) * math.exp(-1 / tau)))
    # the regular simplex (negatives at -1/(n-1)) is the global minimum for identical views
    simplex = _simplex(n)
    best = math.log(1 + (2 * n - 2) * math.exp((-1 / (n - 1) - 1) / tau))
    assert float(loss(simplex, simplex)) == pytest.approx(best)
    assert best < float(loss(ortho, ortho))
    for _ in range(20):
        z = simplex + 0.05 * torch.randn_like(simplex)
        assert float(loss(z, z + 0.05 * torch.randn_like(z))) > best


def test_directclr_identical_views_closed_forms_and_minimum() -> None:
    n, tau = 5, 0.1
    loss = build("objective", "directclr", d0=n)
    ortho = torch.eye(n, dtype=torch.float64)
    assert float(loss(ortho, ortho)) == pytest.approx(math.log(1 + (n - 1) * math.exp(-1 / tau)))
    simplex = _simplex(n)
    best = math.log(1 + (n - 1) * math.exp((-1 / (n - 1) - 1) / tau))
    assert float(loss(simplex, simplex)) == pytest.approx(best)
    assert loss.last_stats["top1"] == 1.0
    for _ in range(20):
        z = simplex + 0.05 * torch.randn_like(simplex)
        assert float(loss(z, z)) > best


def _whitened(n: int, d: int) -> torch.Tensor:
    """Columns with zero mean, unit (biased) variance and zero correlation."""
    x = torch.randn(n, d, dtype=torch.float64)
    q, _ = torch.linalg.qr(x - x.mean(0))
    return q * math.sqrt(n)


def test_barlow_twins_zero_for_whitened_identical_views_and_positive_otherwise() -> None:
    z = _whitened(32, 6)
    assert float(z.mean(0).abs().max()) < 1e-12
    loss = build("objective", "barlow_twins")
    assert float(loss(z, z)) < 1e-8
    assert float(loss(3 * z + 1, 3 * z + 1)) < 1e-8  # invariant to per-dimension affine maps
    assert float(loss(z, z[:, [1, 0, 2, 3, 4, 5]])) > 1.9  # two diagonal correlations become 0


def test_vicreg_hand_made_terms() -> None:
    loss = build("objective", "vicreg")
    z = 2 * _whitened(40, 5)  # std 2 * sqrt(40/39) > 1, uncorrelated
    assert float(loss(z, z)) == pytest.approx(0.0, abs=1e-10)
    assert loss.last_stats["invariance"] == 0.0
    const = torch.ones(10, 4, dtype=torch.float64)
    loss(const, const)
    assert loss.last_stats["variance"] == pytest.approx(1 - math.sqrt(1e-4))  # std 0: hinge at 1 - sqrt(eps)
    assert loss.last_stats["covariance"] == pytest.approx(0.0)
    shifted = loss(z, z + 0.5)
    assert float(shifted) == pytest.approx(25 * 0.25)


def test_byol_zero_when_predictions_point_at_targets_and_bounds() -> None:
    loss = build("objective", "byol", dim=6, hidden_dim=16)
    z1, z2 = torch.randn(8, 6), torch.randn(8, 6)
    with torch.no_grad():
        p1, p2 = loss.predictor(z1), loss.predictor(z2)
    assert float(loss(z1, z2, 2 * p2, 3 * p1).detach()) == pytest.approx(0.0, abs=1e-5)
    assert float(loss(z1, z2, -p2, -p1).detach()) == pytest.approx(4.0, abs=1e-5)


def test_byol_stop_gradient_on_targets_and_grads_elsewhere() -> None:
    loss = build("objective", "byol", dim=6, hidden_dim=16)
    z1, z2 = torch.randn(8, 6, requires_grad=True), torch.randn(8, 6, requires_grad=True)
    t1, t2 = torch.randn(8, 6, requires_grad=True), torch.randn(8, 6, requires_grad=True)
    loss(z1, z2, t1, t2).backward()
    assert t1.grad is None and t2.grad is None
    assert z1.grad is not None and float(z1.grad.abs().sum()) > 0
    assert all(p.grad is not None for p in loss.predictor.parameters())


def test_simsiam_gradient_is_the_predictor_path_only() -> None:
    loss = build("objective", "simsiam", dim=6, hidden_dim=4).double()
    z1 = torch.randn(8, 6, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(8, 6, dtype=torch.float64, requires_grad=True)
    loss(z1, z2).backward()

    def ref(a: torch.Tensor, b: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor) -> torch.Tensor:
        cos = torch.nn.functional.cosine_similarity
        return -0.5 * (cos(loss.predictor(a), c2).mean() + cos(loss.predictor(b), c1).mean())

    leaves = [z1.detach().clone().requires_grad_() for _ in range(2)]
    leaves += [z2.detach().clone().requires_grad_() for _ in range(2)]
    a, c1, b, c2 = leaves
    ref(a, b, c1, c2).backward()
    assert a.grad is not None and b.grad is not None and c1.grad is not None
    torch.testing.assert_close(z1.grad, a.grad)  # predictor path only
    torch.testing.assert_close(z2.grad, b.grad)
    assert float(c1.grad.abs().sum()) > 1e-6  # the full gradient would differ by this target path


def test_momentum_schedule_values() -> None:
    from dimcollapse.training.schedules import MomentumSchedule

    m = MomentumSchedule(*build("objective", "byol", dim=4, hidden_dim=8).default_momentum)
    assert m(0.0) == pytest.approx(0.99)
    assert m(0.5) == pytest.approx(0.995)
    assert m(1.0) == pytest.approx(1.0)
    assert m(0.25) == pytest.approx(1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2)
    other = MomentumSchedule(0.996, 1.0)
    assert (other(0.0), other(0.5)) == pytest.approx((0.996, 0.998))
    assert m(2.0) == 1.0  # clipped to the end of training


def test_ema_update_moves_target_towards_online() -> None:
    online = torch.nn.Linear(3, 2)
    target = copy.deepcopy(online)
    with torch.no_grad():
        online.weight.add_(1.0)
    before = target.weight.detach().clone()
    ema_update(target, online, 0.9)
    torch.testing.assert_close(target.weight, 0.9 * before + 0.1 * online.weight.detach())


def _two_views(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)


@pytest.mark.parametrize("name", ["simclr", "directclr", "barlow_twins", "vicreg", "byol", "simsiam"])
def test_adam_steps_decrease_each_loss(name: str) -> None:
    x = torch.randn(64, 10)
    model = torch.nn.Linear(10, 8)
    kw = {
        "directclr": {"d0": 4},
        "byol": {"dim": 8, "hidden_dim": 16},
        "simsiam": {"dim": 8, "hidden_dim": 4},
    }
    loss = build("objective", name, **kw.get(name, {}))
    target = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=1e-2)
    torch.manual_seed(1)
    fixed = _two_views(x)

    def evaluate() -> float:
        with torch.no_grad():
            a, b = model(fixed[0]), model(fixed[1])
            return float(
                loss(a, b, target(fixed[0]), target(fixed[1])) if loss.uses_momentum_target else loss(a, b)
            )

    start = evaluate()
    for step in range(40):
        v1, v2 = _two_views(x)
        z1, z2 = model(v1), model(v2)
        value = loss(z1, z2, target(v1), target(v2)) if loss.uses_momentum_target else loss(z1, z2)
        opt.zero_grad()
        value.backward()
        opt.step()
        if loss.uses_momentum_target:
            ema_update(target, model, cosine_momentum(step / 40, *loss.default_momentum))
    end = evaluate()
    assert end < start - 0.05 * abs(start)


def test_bad_input_and_config_errors() -> None:
    directclr = build("objective", "directclr", d0=9)
    with pytest.raises(ConfigError, match=r"d0 = 9 is larger than the representation size 8"):
        directclr(torch.randn(4, 8), torch.randn(4, 8))
    with pytest.raises(ConfigError, match="d0 must be a positive integer"):
        build("objective", "directclr", d0=0)
    with pytest.raises(ConfigError, match="d0 is required"):
        build("objective", "directclr")
    with pytest.raises(ConfigError, match=r"dim .* is required"):
        build("objective", "byol")
    with pytest.raises(ConfigError, match="hidden_dim must be a positive integer"):
        build("objective", "simsiam", dim=8, hidden_dim=0)
    with pytest.raises(ConfigError, match="temperature must be a positive number"):
        build("objective", "simclr", temperature=-1.0)
    with pytest.raises(ConfigError, match="unknown option"):
        build("objective", "vicreg", lam=1.0)
    with pytest.raises(InputError, match="same shape"):
        build("objective", "vicreg")(torch.randn(4, 8), torch.randn(5, 8))
    with pytest.raises(InputError, match=r"2-D batch"):
        build("objective", "simclr")(torch.randn(4, 8, 2), torch.randn(4, 8, 2))
    with pytest.raises(InputError, match="at least 2 rows"):
        build("objective", "barlow_twins")(torch.randn(1, 8), torch.randn(1, 8))
    byol = build("objective", "byol", dim=8, hidden_dim=8)
    with pytest.raises(InputError, match="momentum target's embeddings"):
        byol(torch.randn(4, 8), torch.randn(4, 8))
    with pytest.raises(ConfigError, match="base_momentum"):
        build("objective", "byol", dim=8, base_momentum=1.5)


def test_half_precision_inputs_are_computed_in_float32() -> None:
    z1, z2 = torch.randn(16, 8), torch.randn(16, 8)
    for name in ("simclr", "barlow_twins", "vicreg"):
        loss = build("objective", name)
        full = float(loss(z1, z2))
        half = loss(z1.bfloat16(), z2.bfloat16())
        assert half.dtype == torch.float32
        assert float(half) == pytest.approx(full, rel=0.05)


def test_convert_to_global_batchnorm_keeps_state_and_outputs_when_not_distributed() -> None:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.Flatten(), torch.nn.BatchNorm1d(12)
    ).double()
    x = torch.randn(5, 2, 4, 4, dtype=torch.float64)
    model(x)  # move the running statistics away from their initial values
    reference = copy.deepcopy(model)
    converted: Any = convert_to_global_batchnorm(model)
    assert isinstance(converted[1], GlobalBatchNorm2d) and isinstance(converted[3], GlobalBatchNorm1d)
    for (k, a), (_, b) in zip(converted.state_dict().items(), reference.state_dict().items(), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b), k
    torch.testing.assert_close(converted(x), reference(x))
    converted.eval()
    reference.eval()
    torch.testing.assert_close(converted(x), reference(x))
