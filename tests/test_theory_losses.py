"""Toy losses, their closed-form gradients and DC lemmas 1-2, against numpy and autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dimcollapse.errors import ConfigError
from dimcollapse.theory.chain import chain_forward
from dimcollapse.theory.gradients import chain_step_grads
from dimcollapse.theory.lemmas import block_eigenvalues, lemma1_check, lemma2_gradient_error, lemma2_matrix
from dimcollapse.theory.losses import distance_infonce, dot_infonce, get_loss


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_distance_loss_matches_numpy_eq2() -> None:
    z1, z2 = _rand(6, 3, seed=1), _rand(6, 3, seed=2)
    a, b = z1.numpy(), z2.numpy()
    total = 0.0
    for i in range(6):
        pos = np.exp(-np.sum((a[i] - b[i]) ** 2) / 2)
        neg = sum(np.exp(-np.sum((a[i] - a[j]) ** 2) / 2) for j in range(6) if j != i)
        total += -np.log(pos / (pos + neg))
    assert float(distance_infonce(z1, z2)) == pytest.approx(total / 6, rel=1e-12)


def test_dot_loss_is_cross_entropy_of_scaled_logits() -> None:
    z1, z2 = _rand(8, 4, seed=3), _rand(8, 4, seed=4)
    ref = F.cross_entropy(z1 @ z2.T / 0.1, torch.arange(8))
    assert float(dot_infonce(z1, z2)) == pytest.approx(float(ref), rel=1e-12)


def test_losses_are_batched_over_replicas() -> None:
    z1, z2 = _rand(3, 8, 4, seed=5), _rand(3, 8, 4, seed=6)
    for fn in (distance_infonce, dot_infonce):
        batched = fn(z1, z2)
        assert batched.shape == (3,)
        for r in range(3):
            assert float(batched[r]) == pytest.approx(float(fn(z1[r], z2[r])), rel=1e-12)


def test_unknown_loss_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match="distance, dot"):
        get_loss("cosine")


@pytest.mark.parametrize("loss", ["distance", "dot"])
@pytest.mark.parametrize("slope", [None, 0.0, 0.3])
def test_closed_form_gradients_equal_autograd(loss: str, slope: float | None) -> None:
    ws = [(0.4 * _rand(2, 5, 5, seed=10 + i)).requires_grad_(True) for i in range(3)]
    x, e = _rand(16, 5, seed=20), _rand(2, 16, 5, seed=21)
    slopes = None if slope is None else [torch.full((2, 1, 1), slope, dtype=torch.float64)] * 2
    fn = get_loss(loss)
    ref = fn(chain_forward(ws, x + e, slopes), chain_forward(ws, x - e, slopes))
    grads = torch.autograd.grad(ref.sum(), ws)
    value, mine = chain_step_grads([w.detach() for w in ws], x + e, x - e, loss, slopes)
    torch.testing.assert_close(value, ref.detach(), rtol=1e-12, atol=1e-12)
    for g_ref, g in zip(grads, mine, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)


def _views(s: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = _rand(64, 8, seed=seed)
    scale = torch.tensor([0.0] * 4 + [s] * 4, dtype=torch.float64)
    return x + scale * _rand(64, 8, seed=seed + 1), x + scale * _rand(64, 8, seed=seed + 2)


def test_lemma2_gradient_is_w_times_x() -> None:
    w = 0.3 * _rand(8, 8, seed=30)
    x1, x2 = _views(1.0, 31)
    assert lemma2_gradient_error(w, x1, x2) < 1e-12


def test_lemma2_matrix_is_psd_without_augmentation_and_sigma1_lives_in_noisy_block() -> None:
    w = 0.3 * _rand(8, 8, seed=40)
    x1, x2 = _views(0.0, 41)
    eig = torch.linalg.eigvalsh(lemma2_matrix(w, x1, x2))
    assert float(eig.min()) > 0  # Sigma1 = 0 and Sigma0 is a weighted sum of outer products
    x1, x2 = _views(3.0, 41)
    strong = block_eigenvalues(lemma2_matrix(w, x1, x2), 4)
    # x' - x is zero on the clean coordinates, so the clean block is Sigma0's alone: positive
    assert min(strong["clean_block"]) > 0
    assert min(strong["noisy_block"]) < 0


def test_lemma1_frozen_x_error_is_first_order_in_lr() -> None:
    w = 0.3 * _rand(8, 8, seed=50)
    x1, x2 = _views(1.0, 51)
    coarse = lemma1_check(w, x1, x2, lr=2e-3, steps=50)
    fine = lemma1_check(w, x1, x2, lr=1e-3, steps=100)  # same horizon t = 0.1
    assert coarse.times[-1] == pytest.approx(fine.times[-1])
    assert fine.frozen_error[-1] < 1e-2
    # Euler's error halves with the step; the true loss drifts away from exp(Xt) far more
    assert fine.frozen_error[-1] == pytest.approx(coarse.frozen_error[-1] / 2, rel=0.1)
    assert fine.full_error[-1] > 3 * fine.frozen_error[-1]
