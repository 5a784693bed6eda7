"""Each objective against an independent float64 computation written from the formula (SPEC section 2)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from dimcollapse.registry import build


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def ntxent_loops(z1: np.ndarray, z2: np.ndarray, tau: float) -> float:
    """NT-Xent with explicit loops: 2N anchors, positive = the other view, the 2N - 2 others negatives."""
    z = _unit(np.concatenate([z1, z2]))
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        pos = (i + n2 // 2) % n2
        sims = [float(z[i] @ z[k]) / tau for k in range(n2) if k != i]
        total += -float(z[i] @ z[pos]) / tau + _logsumexp(sims)
    return total / n2


def directclr_loops(z1: np.ndarray, z2: np.ndarray, d0: int, tau: float) -> float:
    """(CE(z1 z2^T / tau, diag) + CE(z2 z1^T / tau, diag)) / 2 on normalised leading slices."""
    a, b = _unit(z1[:, :d0]), _unit(z2[:, :d0])
    n = len(a)
    total = 0.0
    for x, y in ((a, b), (b, a)):
        for i in range(n):
            total += -float(x[i] @ y[i]) / tau + _logsumexp([float(x[i] @ y[j]) / tau for j in range(n)])
    return total / (2 * n)


def barlow_numpy(z1: np.ndarray, z2: np.ndarray, lambd: float, eps: float = 1e-5) -> float:
    """sum (1 - C_ii)^2 + lambda sum_{i!=j} C_ij^2, C = standardised cross-correlation (biased var)."""
    s1 = (z1 - z1.mean(0)) / np.sqrt(z1.var(0) + eps)
    s2 = (z2 - z2.mean(0)) / np.sqrt(z2.var(0) + eps)
    c = s1.T @ s2 / len(z1)
    off = c - np.diag(np.diag(c))
    return float(((1 - np.diag(c)) ** 2).sum() + lambd * (off**2).sum())


def vicreg_numpy(z1: np.ndarray, z2: np.ndarray, eps: float = 1e-4) -> dict[str, float]:
    """VICReg terms: MSE; mean hinge of std over the two views; off-diagonal cov^2 / d summed over views."""
    inv = float(((z1 - z2) ** 2).mean())
    var = 0.0
    cov = 0.0
    for z in (z1, z2):
        c = np.cov(z, rowvar=False)  # unbiased
        var += float(np.maximum(0.0, 1 - np.sqrt(np.diag(c) + eps)).mean()) / 2
        cov += float(((c - np.diag(np.diag(c))) ** 2).sum()) / z.shape[1]
    return {"invariance": inv, "variance": var, "covariance": cov, "loss": 25 * inv + 25 * var + cov}


def predictor_numpy(pred: Any, z: np.ndarray) -> np.ndarray:
    """Linear -> BatchNorm (training: batch mean, biased var, eps 1e-5) -> ReLU -> Linear, in numpy."""
    lin1, bn, lin2 = pred.net[0], pred.net[1], pred.net[3]
    w1, b1 = lin1.weight.detach().double().numpy(), lin1.bias.detach().double().numpy()
    h = z @ w1.T + b1
    h = (h - h.mean(0)) / np.sqrt(h.var(0) + bn.eps)
    h = h * bn.weight.detach().double().numpy() + bn.bias.detach().double().numpy()
    h = np.maximum(h, 0.0)
    return h @ lin2.weight.detach().double().numpy().T + lin2.bias.detach().double().numpy()


def _cos_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (_unit(a) * _unit(b)).sum(1)


@pytest.fixture
def views() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    z1 = rng.normal(size=(7, 5))
    return z1, z1 + 0.7 * rng.normal(size=(7, 5))


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


@pytest.mark.parametrize("tau", [0.5, 0.1])
def test_simclr_matches_loops(views: tuple[np.ndarray, np.ndarray], tau: float) -> None:
    z1, z2 = views
    loss = build("objective", "simclr", temperature=tau)
    assert float(loss(_t(z1), _t(z2)).detach()) == pytest.approx(ntxent_loops(z1, z2, tau), rel=1e-10)
    assert loss.last_stats["pos_sim"] == pytest.approx(float(_cos_rows(z1, z2).mean()), rel=1e-10)
    z = _unit(np.concatenate([z1, z2]))
    n = len(z1)
    negatives = [z[i] @ z[k] for i in range(2 * n) for k in range(2 * n) if k not in (i, (i + n) % (2 * n))]
    assert loss.last_stats["neg_sim"] == pytest.approx(float(np.mean(negatives)), rel=1e-8)


def test_simclr_default_temperature_is_half(views: tuple[np.ndarray, np.ndarray]) -> None:
    z1, z2 = views
    assert float(build("objective", "simclr")(_t(z1), _t(z2))) == pytest.approx(ntxent_loops(z1, z2, 0.5))


def test_directclr_matches_loops(views: tuple[np.ndarray, np.ndarray]) -> None:
    z1, z2 = views
    loss = build("objective", "directclr", d0=3)
    assert float(loss(_t(z1), _t(z2)).detach()) == pytest.approx(directclr_loops(z1, z2, 3, 0.1), rel=1e-10)
    # only the leading d0 coordinates matter
    z1b, z2b = z1.copy(), z2.copy()
    z1b[:, 3:] = 100.0
    assert float(loss(_t(z1b), _t(z2b)).detach()) == pytest.approx(directclr_loops(z1, z2, 3, 0.1), rel=1e-10)


@pytest.mark.parametrize("lambd", [5e-3, 0.5])
def test_barlow_twins_matches_numpy(views: tuple[np.ndarray, np.ndarray], lambd: float) -> None:
    z1, z2 = views
    loss = build("objective", "barlow_twins", lambd=lambd)
    assert float(loss(_t(z1), _t(z2)).detach()) == pytest.approx(barlow_numpy(z1, z2, lambd), rel=1e-10)
    scaled = build("objective", "barlow_twins", lambd=lambd, scale=0.1)
    assert float(scaled(_t(z1), _t(z2)).detach()) == pytest.approx(
        0.1 * barlow_numpy(z1, z2, lambd), rel=1e-10
    )


def test_vicreg_matches_numpy(views: tuple[np.ndarray, np.ndarray]) -> None:
    z1, z2 = views
    z1 = 0.6 * z1  # some std below 1 so the hinge is active
    loss = build("objective", "vicreg")
    ref = vicreg_numpy(z1, z2)
    assert ref["variance"] > 0.01
    assert float(loss(_t(z1), _t(z2)).detach()) == pytest.approx(ref["loss"], rel=1e-10)
    for key in ("invariance", "variance", "covariance"):
        assert loss.last_stats[key] == pytest.approx(ref[key], rel=1e-6)


def test_byol_matches_numpy(views: tuple[np.ndarray, np.ndarray]) -> None:
    z1, z2 = views
    rng = np.random.default_rng(4)
    t1, t2 = rng.normal(size=z1.shape), rng.normal(size=z1.shape)
    loss = build("objective", "byol", dim=5, hidden_dim=9).double()
    p1, p2 = predictor_numpy(loss.predictor, z1), predictor_numpy(loss.predictor, z2)
    ref = 0.5 * ((2 - 2 * _cos_rows(p1, t2)).mean() + (2 - 2 * _cos_rows(p2, t1)).mean())
    assert float(loss(_t(z1), _t(z2), _t(t1), _t(t2)).detach()) == pytest.approx(ref, rel=1e-10)


def test_simsiam_matches_numpy(views: tuple[np.ndarray, np.ndarray]) -> None:
    z1, z2 = views
    loss = build("objective", "simsiam", dim=5, hidden_dim=4).double()
    p1, p2 = predictor_numpy(loss.predictor, z1), predictor_numpy(loss.predictor, z2)
    ref = -0.5 * (_cos_rows(p1, z2).mean() + _cos_rows(p2, z1).mean())
    assert float(loss(_t(z1), _t(z2)).detach()) == pytest.approx(ref, rel=1e-10)
