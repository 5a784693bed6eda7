"""KoLeo and SIGReg: closed forms, invariances and the behaviour they exist for (against collapse)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.registry import build
from dimcollapse.regularizers.sigreg import epps_pulley


def _directions(d: int, m: int, seed: int) -> torch.Tensor:
    a = torch.randn(d, m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a / a.norm(dim=0)


def test_sigreg_expected_value_under_the_gaussian_null() -> None:
    """For x ~ N(0, I): E[N |phi_N(t) - phi(t)|^2] = 1 - e^{-t^2}, so E[T] = int_{-3}^{3} (1 - e^{-t^2})
    e^{-t^2/2} dt for every N (17-knot trapezoid instead of the exact integral: < 1% apart)."""
    t = np.linspace(-3, 3, 200_001)
    expected = float(np.trapezoid((1 - np.exp(-(t**2))) * np.exp(-(t**2) / 2), t))
    g = torch.Generator().manual_seed(0)
    values = [
        float(epps_pulley(torch.randn(400, 6, generator=g, dtype=torch.float64), _directions(6, 64, s)))
        for s in range(30)
    ]
    assert np.mean(values) == pytest.approx(expected, rel=0.1)


def test_sigreg_grows_with_the_batch_for_collapsed_or_shifted_features() -> None:
    a = _directions(8, 128, 1)
    g = torch.Generator().manual_seed(1)
    line = torch.randn(300, 1, generator=g, dtype=torch.float64) * torch.ones(1, 8, dtype=torch.float64)
    gauss = torch.randn(300, 8, generator=g, dtype=torch.float64)
    assert float(epps_pulley(line, a)) > 20 * float(epps_pulley(gauss, a))
    assert float(epps_pulley(gauss + 1.0, a)) > 20 * float(epps_pulley(gauss, a))
    double = torch.cat([line, line])  # the same (non-Gaussian) law, twice the samples: twice the statistic
    torch.testing.assert_close(epps_pulley(double, a), 2 * epps_pulley(line, a))


def test_sigreg_gradient_step_spreads_a_collapsed_batch() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(200, 1, generator=g) * torch.ones(1, 6) + 0.01 * torch.randn(200, 6, generator=g)
    x = x.double().requires_grad_()
    reg = build("regularizer", "sigreg", num_directions=64)
    torch.manual_seed(0)
    before = reg([x])
    before.backward()
    with torch.no_grad():
        x2 = x - 0.5 * x.grad / x.grad.norm() * x.norm()
    torch.manual_seed(0)
    assert float(reg([x2]).detach()) < float(before.detach())


def test_koleo_closed_form_and_direction() -> None:
    """Orthonormal rows: every nearest neighbour at distance sqrt(2): KoLeo = -log sqrt(2)."""
    reg = build("regularizer", "koleo")
    eye = torch.eye(5, dtype=torch.float64)
    assert float(reg([eye])) == pytest.approx(-math.log(math.sqrt(2)), abs=1e-7)
    assert float(reg([3.0 * eye])) == pytest.approx(-math.log(math.sqrt(2)), abs=1e-7)  # scale-free
    clustered = torch.nn.functional.normalize(torch.ones(5, 5, dtype=torch.float64) + 0.01 * eye, dim=1)
    assert float(reg([clustered])) > float(reg([eye])) + 3  # collapsed features cost more
    x = clustered.clone().requires_grad_()
    reg([x]).backward()
    with torch.no_grad():
        spread = x - 1e-3 * x.grad / x.grad.norm()
    assert float(reg([spread])) < float(reg([clustered]))


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="num_directions"):
        build("regularizer", "sigreg", num_directions=0)
    with pytest.raises(ConfigError, match="eps"):
        build("regularizer", "koleo", eps=0.0)
    for name in ("koleo", "sigreg"):
        with pytest.raises(InputError, match=">= 2"):
            build("regularizer", name)([torch.randn(1, 3)])
