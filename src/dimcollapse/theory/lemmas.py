"""DC lemmas 1 and 2 for one linear layer z = W x under the distance InfoNCE of DC eq. 2.

Lemma 2: -dL/dW = W X with X = Sigma_0 - Sigma_1,
  Sigma_0 = (1/N) sum_i sum_{j != i} alpha_ij (x_i - x_j)(x_i - x_j)^T   (negatives push apart),
  Sigma_1 = (1/N) sum_i (1 - alpha_ii) (x'_i - x_i)(x'_i - x_i)^T        (augmentation pulls together),
  alpha = softmax of the logits of DC eq. 2 (the 1/N is the mean over anchors).
Lemma 1: with X held fixed, gradient flow dW/dt = W X gives W(t) = W(0) exp(X t).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dimcollapse.errors import InputError
from dimcollapse.theory.losses import distance_infonce, distance_logits, softmax_weights


def lemma2_matrix(w: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """X = Sigma_0 - Sigma_1 of DC lemma 2 for W (d, d) and the two views x1, x2 (N, d) of a batch."""
    if x1.shape != x2.shape or x1.ndim != 2 or w.shape != (x1.shape[1], x1.shape[1]):
        raise InputError(f"need W (d, d) and views (N, d); got W {tuple(w.shape)}, views {tuple(x1.shape)}.")
    n = x1.shape[0]
    alpha = softmax_weights(x1 @ w.T, x2 @ w.T)
    a = alpha.clone()
    a.fill_diagonal_(0.0)
    r = a.sum(1) + a.sum(0)  # sum_ij a_ij (x_i - x_j)(x_i - x_j)^T expands into these four terms
    sigma0 = (x1.T * r) @ x1 - x1.T @ a @ x1 - x1.T @ a.T @ x1
    d = x2 - x1
    sigma1 = (d.T * (1.0 - torch.diagonal(alpha))) @ d
    return (sigma0 - sigma1) / n


def lemma2_gradient_error(w: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> float:
    """||(-dL/dW by autograd) - W X||_F / ||W X||_F: DC lemma 2 against autograd (should be ~1e-15)."""
    wg = w.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(distance_infonce(x1 @ wg.T, x2 @ wg.T), [wg])
    pred = w @ lemma2_matrix(w, x1, x2)
    return float((-g - pred).norm() / pred.norm())


@dataclass
class Lemma1Check:
    """Trajectories of gradient descent against W(0) exp(X t), t = lr * step, X = X(W(0)) of the batch."""

    times: list[float]
    frozen_error: list[float]  # X held fixed (softmax weights frozen at W(0)): tests lemma 1 itself
    full_error: list[float]  # the true loss, whose X drifts as W moves: how long lemma 1 stays accurate


def lemma1_check(w0: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor, lr: float, steps: int) -> Lemma1Check:
    """Plain GD from W(0) on one batch, alpha frozen / alpha live; relative error to W(0) exp(X t)."""
    x_mat = lemma2_matrix(w0, x1, x2)
    with torch.no_grad():
        alpha0 = softmax_weights(x1 @ w0.T, x2 @ w0.T)
    target = torch.eye(alpha0.shape[0], dtype=alpha0.dtype)
    frozen = w0.detach().clone()
    full = w0.detach().clone()
    out = Lemma1Check([], [], [])
    marks = {max(1, steps * k // 10) for k in range(1, 11)}
    for step in range(1, steps + 1):
        wf = frozen.requires_grad_(True)
        # loss whose gradient uses alpha frozen at W(0): sum_ij (alpha0_ij - delta_ij) l_ij(W) / N
        surrogate = ((alpha0 - target) * distance_logits(x1 @ wf.T, x2 @ wf.T)).sum() / alpha0.shape[0]
        (gf,) = torch.autograd.grad(surrogate, [wf])
        frozen = (frozen - lr * gf).detach()
        wl = full.requires_grad_(True)
        (gl,) = torch.autograd.grad(distance_infonce(x1 @ wl.T, x2 @ wl.T), [wl])
        full = (full - lr * gl).detach()
        if step in marks:
            pred = w0 @ torch.linalg.matrix_exp(x_mat * (lr * step))
            out.times.append(lr * step)
            out.frozen_error.append(float((frozen - pred).norm() / pred.norm()))
            out.full_error.append(float((full - pred).norm() / pred.norm()))
    return out


def block_eigenvalues(x_mat: torch.Tensor, split: int) -> dict[str, list[float]]:
    """Eigenvalues (ascending) of the symmetric X, and of its clean [:split] and noisy [split:] blocks."""
    sym = 0.5 * (x_mat + x_mat.T)
    return {
        "all": torch.linalg.eigvalsh(sym).tolist(),
        "clean_block": torch.linalg.eigvalsh(sym[:split, :split]).tolist(),
        "noisy_block": torch.linalg.eigvalsh(sym[split:, split:]).tolist(),
    }
