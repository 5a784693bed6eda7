"""Weights as matrices and their smaller Gram: conv (C_out, C_in, kh, kw) -> C_out x C_in*kh*kw (SPEC 4)."""

from __future__ import annotations

from typing import Any

import torch


def weight_matrix(weight: torch.Tensor) -> torch.Tensor:
    """W as a matrix: rows are output units / filters, W.shape = (C_out, C_in*kh*kw)."""
    return weight.reshape(weight.shape[0], -1)


def short_side(weight: torch.Tensor) -> torch.Tensor:
    """A with rows <= cols: A = W if W is wide, else W^T, so that A A^T is the smaller Gram of W."""
    mat = weight_matrix(weight)
    return mat if mat.shape[0] <= mat.shape[1] else mat.t()


class _GramDeviationSq(torch.autograd.Function):
    """||A A^T - I||_F^2 with the hand-derived gradient 4 (A A^T - I) A (two matmuls instead of three)."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor) -> torch.Tensor:
        dev = a @ a.t()
        dev.diagonal().sub_(1.0)
        ctx.save_for_backward(a, dev)
        return (dev * dev).sum()

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> torch.Tensor:
        a, dev = ctx.saved_tensors
        return (dev @ a).mul_(4.0 * grad_out)


def gram_deviation_sq(weight: torch.Tensor, form: str = "smaller") -> torch.Tensor:
    """||G - I||_F^2 with G the smaller Gram (``form="smaller"``) or G = W W^T (``form="rows"``).

    Both forms have the same gradient: ||W W^T - I||^2 - ||W^T W - I||^2 = rows - cols (a constant).
    """
    a = short_side(weight)
    value = _GramDeviationSq.apply(a)
    rows, cols = weight_matrix(weight).shape
    if form == "rows" and rows > cols:
        value = value + float(rows - cols)
    return value


def gram_minus_identity_matvec(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(A A^T - I) v computed as A (A^T v) - v, without forming the Gram (O(mn) instead of O(m^2 n))."""
    return a @ (a.t() @ v) - v
