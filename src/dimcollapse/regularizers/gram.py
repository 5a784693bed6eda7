"""Weights as matrices and their smaller Gram: conv (C_out, C_in, kh, kw) -> C_out x C_in*kh*kw (SPEC 4).

The two per-layer terms (SO's ||G - I||_F^2 and SRIP's ||(G - I) v||) have hand-derived backward passes
that write one dense gradient in the weight's own layout (no transposed copies, no extra matmul).
"""

from __future__ import annotations

from typing import Any

import torch

from dimcollapse.diagnostics.engine.matrices import as_matrix

# W as a matrix (C_out x C_in*kh*kw, a view in the weight's own layout): the one helper of diagnostics
weight_matrix = as_matrix


def gram(mat: torch.Tensor) -> torch.Tensor:
    """The smaller Gram of a matrix: W W^T if W is wide (rows <= cols), else W^T W."""
    return mat @ mat.t() if mat.shape[0] <= mat.shape[1] else mat.t() @ mat


class _GramDeviationSq(torch.autograd.Function):
    """||G - I||_F^2, G the smaller Gram; gradient 4 (G - I) W (wide) or 4 W (G - I) (tall)."""

    @staticmethod
    def forward(ctx: Any, mat: torch.Tensor) -> torch.Tensor:
        dev = gram(mat)
        dev.diagonal().sub_(1.0)
        ctx.save_for_backward(mat, dev)
        return (dev * dev).sum()

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> torch.Tensor:
        mat, dev = ctx.saved_tensors
        grad = dev @ mat if mat.shape[0] <= mat.shape[1] else mat @ dev
        return grad.mul_(4.0 * grad_out)


def gram_deviation_sq(weight: torch.Tensor, form: str = "smaller") -> torch.Tensor:
    """||G - I||_F^2 with G the smaller Gram (``form="smaller"``) or G = W W^T (``form="rows"``).

    Both forms have the same gradient: ||W W^T - I||^2 - ||W^T W - I||^2 = rows - cols (a constant).
    """
    mat = weight_matrix(weight)
    value = _GramDeviationSq.apply(mat)
    rows, cols = mat.shape
    if form == "rows" and rows > cols:
        value = value + float(rows - cols)
    return value


def gram_minus_identity_matvec(mat: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(G - I) v for G the smaller Gram of ``mat``, as W (W^T v) - v or W^T (W v) - v (never forms G)."""
    if mat.shape[0] <= mat.shape[1]:
        return mat @ (mat.t() @ v) - v
    return mat.t() @ (mat @ v) - v


class _GramDeviationNorm(torch.autograd.Function):
    """||(G - I) v|| for a fixed vector v, G the smaller Gram; d/dW = u^ w^T + v (W^T u^)^T (wide case)."""

    @staticmethod
    def forward(ctx: Any, mat: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        wide = mat.shape[0] <= mat.shape[1]
        w = mat.t() @ v if wide else mat @ v
        u = (mat @ w if wide else mat.t() @ w) - v
        norm = u.norm()
        unit = u / norm.clamp_min(1e-30)
        ctx.save_for_backward(mat, v, w, unit)
        ctx.mark_non_differentiable(unit)
        return norm, unit

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor, _grad_unit: torch.Tensor) -> tuple[torch.Tensor, None]:
        mat, v, w, unit = ctx.saved_tensors
        if mat.shape[0] <= mat.shape[1]:
            left, right = torch.stack([unit, v], dim=1), torch.stack([w, mat.t() @ unit])
        else:
            left, right = torch.stack([w, mat @ unit], dim=1), torch.stack([unit, v])
        return (left * grad_out) @ right, None


def gram_deviation_norm(weight: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(||(G - I) v||, (G - I) v / ||(G - I) v||), G the smaller Gram of the weight, v fixed (no grad)."""
    norm, unit = _GramDeviationNorm.apply(weight_matrix(weight), v.detach())
    return norm, unit
