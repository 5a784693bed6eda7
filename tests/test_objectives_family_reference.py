"""MoCo v3, NNCLR, NNBYOL, ReSSL and VIbCReg against direct loop implementations written from the papers'
formulas (float64); Sinkhorn-Knopp's marginals; the queues' first-in-first-out order."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dimcollapse.objectives.swav import sinkhorn
from dimcollapse.registry import build
from test_objectives_reference import predictor_numpy


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _lse(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def _views(n: int = 6, d: int = 4, count: int = 4, seed: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, d))
    return [base + 0.6 * rng.normal(size=(n, d)) for _ in range(count)]


def infonce_rows(anchors: np.ndarray, keys: np.ndarray, tau: float) -> float:
    """mean_i -log(exp(a_i.k_i/tau) / sum_j exp(a_i.k_j/tau)) with loops."""
    total = 0.0
    for i in range(len(anchors)):
        logits = [float(anchors[i] @ keys[j]) / tau for j in range(len(keys))]
        total += -logits[i] + _lse(logits)
    return total / len(anchors)


def test_mocov3_matches_loops() -> None:
    z1, z2, t1, t2 = _views()
    loss = build("objective", "mocov3", dim=4, hidden_dim=7, temperature=0.2).double()
    q1, q2 = (_unit(predictor_numpy(loss.predictor, z)) for z in (z1, z2))
    ref = 2 * 0.2 * (infonce_rows(q1, _unit(t2), 0.2) + infonce_rows(q2, _unit(t1), 0.2))
    assert float(loss(_t(z1), _t(z2), _t(t1), _t(t2)).detach()) == pytest.approx(ref, rel=1e-10)


def _nearest(x: np.ndarray, bank: np.ndarray) -> np.ndarray:
    out = []
    for row in x:
        best = max(range(len(bank)), key=lambda j: float(row @ bank[j]))
        out.append(bank[best])
    return np.array(out)


def test_nnclr_matches_loops_and_pushes_view_one() -> None:
    z1, z2, _, _ = _views()
    torch.manual_seed(0)
    loss = build("objective", "nnclr", dim=4, hidden_dim=7, temperature=0.1, queue_size=10).double()
    bank = loss.support.rows.numpy().copy()
    p1, p2 = (_unit(predictor_numpy(loss.predictor, z)) for z in (z1, z2))
    nn1, nn2 = _nearest(_unit(z1), bank), _nearest(_unit(z2), bank)
    ref = 0.5 * (infonce_rows(nn1, p2, 0.1) + infonce_rows(nn2, p1, 0.1))
    assert float(loss(_t(z1), _t(z2)).detach()) == pytest.approx(ref, rel=1e-10)
    np.testing.assert_allclose(loss.support.rows.numpy()[:6], _unit(z1), rtol=1e-12)
    np.testing.assert_allclose(loss.support.rows.numpy()[6:], bank[6:])


def test_nnbyol_matches_loops() -> None:
    z1, z2, t1, t2 = _views()
    torch.manual_seed(0)
    loss = build("objective", "nnbyol", dim=4, hidden_dim=7, queue_size=9).double()
    bank = loss.support.rows.numpy().copy()
    p1, p2 = (predictor_numpy(loss.predictor, z) for z in (z1, z2))
    n1, n2 = _nearest(_unit(t1), bank), _nearest(_unit(t2), bank)
    terms = [2 - 2 * float(_unit(p1[i]) @ _unit(n2[i])) + 2 - 2 * float(_unit(p2[i]) @ _unit(n1[i]))
             for i in range(len(z1))]  # fmt: skip
    assert float(loss(_t(z1), _t(z2), _t(t1), _t(t2)).detach()) == pytest.approx(
        np.mean(terms) / 2, rel=1e-10
    )
    np.testing.assert_allclose(loss.support.rows.numpy()[:6], _unit(t1), rtol=1e-12)


def test_ressl_matches_loops() -> None:
    z1, z2, t1, t2 = _views()
    torch.manual_seed(0)
    loss = build("objective", "ressl", dim=4, queue_size=8, temperature_q=0.1, temperature_k=0.04).double()
    bank = loss.queue.rows.numpy().copy()
    q, k = _unit(z1), _unit(t2)  # strong student view 1, weak teacher view 2
    total = 0.0
    for i in range(len(q)):
        s = [float(q[i] @ b) / 0.1 for b in bank]
        t = [float(k[i] @ b) / 0.04 for b in bank]
        p_t = [math.exp(v - _lse(t)) for v in t]
        total += -sum(pj * (sj - _lse(s)) for pj, sj in zip(p_t, s, strict=True))
    assert float(loss(_t(z1), _t(z2), _t(t1), _t(t2)).detach()) == pytest.approx(total / len(q), rel=1e-10)
    np.testing.assert_allclose(loss.queue.rows.numpy()[:6], k, rtol=1e-12)


def test_vibcreg_matches_numpy() -> None:
    z1, z2, _, _ = _views(n=9, d=5)
    z1 = 0.5 * z1  # stds below 1: the hinge is active
    ref = 25 * float(((z1 - z2) ** 2).mean())
    for z in (z1, z2):
        std = np.sqrt(z.var(0, ddof=1) + 1e-4)
        ref += 25 * float(np.maximum(0, 1 - std).mean())
        corr = np.corrcoef(z, rowvar=False)
        ref += 200 * float(((corr - np.diag(np.diag(corr))) ** 2).sum()) / 25
    assert float(build("objective", "vibcreg")(_t(z1), _t(z2))) == pytest.approx(ref, rel=1e-10)


def test_sinkhorn_codes_have_uniform_prototype_marginals() -> None:
    scores = torch.nn.functional.normalize(torch.randn(40, 6, dtype=torch.float64), dim=1)
    q = sinkhorn(scores, iterations=200, epsilon=0.05)
    torch.testing.assert_close(q.sum(1), torch.ones(40, dtype=torch.float64))  # one code per sample
    torch.testing.assert_close(q.sum(0), torch.full((6,), 40 / 6, dtype=torch.float64), rtol=1e-6, atol=1e-6)
    # codes prefer the prototypes the sample is closest to
    assert float((q.argmax(1) == scores.argmax(1)).double().mean()) > 0.6


def test_queue_is_first_in_first_out_and_wraps() -> None:
    from dimcollapse.objectives.queue import FeatureQueue

    queue = FeatureQueue(5, 2, init="empty")
    assert queue.values().shape == (0, 2) and not queue.is_full()
    rows = torch.arange(14, dtype=torch.float32).view(7, 2)
    queue.push(rows[:3])
    assert queue.values().tolist() == rows[:3].tolist()
    queue.push(rows[3:7])  # 7 rows in 5 slots: rows 5, 6 overwrite slots 0, 1
    assert queue.is_full() and int(queue.ptr) == 2
    assert queue.values().tolist() == [*rows[5:7].tolist(), *rows[2:5].tolist()]
    queue.push(torch.ones(9, 2))  # more rows than slots: the newest 5 are kept
    assert queue.values().tolist() == torch.ones(5, 2).tolist()
