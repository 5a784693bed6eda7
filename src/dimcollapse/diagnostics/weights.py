"""Singular values of every weight matrix of a model (SPEC 1.5; OR paper fig. 3-5, LL paper fig. 3).

Matrices: ``nn.Linear`` weights (out x in); ``nn.Conv1d/2d/3d`` weights reshaped to C_out x (C_in/groups
* kernel); ``nn.MultiheadAttention`` input projection (the stacked 3E x E ``in_proj_weight``, or the
separate q/k/v projections when key/value sizes differ) and its ``out_proj`` (a Linear). Keys are
``named_modules`` names; attention input projections get the suffix ``.in_proj`` (or ``.q_proj``,
``.k_proj``, ``.v_proj``); the root module itself is keyed ``"root"``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dimcollapse.diagnostics.engine.matrices import as_matrix
from dimcollapse.errors import InputError

WEIGHT_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.MultiheadAttention,
)


def weight_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every Linear, Conv1d/2d/3d and MultiheadAttention of ``module``, input -> output (named_modules order).

    The one definition of "the weight layers of a module": backbones, weight regularizers and the
    weight spectra all use it.
    """
    return [(name, m) for name, m in module.named_modules() if isinstance(m, WEIGHT_LAYER_TYPES)]


def weight_matrix(module: nn.Module) -> torch.Tensor | None:
    """The 2-D weight of a Linear (out x in) or Conv (C_out x rest) module, else None."""
    if isinstance(module, nn.Linear):
        return module.weight
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return as_matrix(module.weight)
    return None


def singular_values(w: torch.Tensor) -> np.ndarray:
    """Singular values of a matrix, float64, descending: s_i = sqrt(lambda_i(G)), G the smaller Gram.

    G = W W^T (or W^T W) is formed in float64 on the weight's own device and its eigenvalues taken
    there: 15-30x faster than a float64 SVD on a CPU for conv weights (512 x 4608: 0.6 s against 15 s)
    and, unlike float32, exact enough for the erank (within 2e-5 of the float64 SVD's on rank-2 to
    full-rank ResNet-shaped weights; a float32 SVD misses by up to 3.5e-4, a float32 Gram by 0.3, on
    low-rank ones: benchmarks/bench_monitor.py). Round-off negatives of G become 0.
    """
    m = w.detach()
    if m.ndim != 2:
        m = m.reshape(m.shape[0], -1)
    if min(m.shape) == 0:
        return np.zeros(0)
    if not bool(torch.isfinite(m).all()):
        raise InputError(
            f"a weight matrix of shape {tuple(m.shape)} holds NaN or Inf: its spectrum is undefined "
            "(the model diverged, or the checkpoint is damaged)."
        )
    a = m.to(torch.float64)
    gram = a @ a.mT if a.shape[0] <= a.shape[1] else a.mT @ a
    eig = torch.linalg.eigvalsh(gram).clamp_min(0.0).sqrt()
    return eig.flip(0).cpu().numpy().copy()


def named_weight_matrices(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every weight matrix of ``module`` keyed by layer name (see module docstring for the naming)."""
    out: dict[str, torch.Tensor] = {}
    for name, m in weight_layers(module):
        key = name or "root"
        w = weight_matrix(m)
        if w is not None:
            out[key] = w
        elif isinstance(m, nn.MultiheadAttention):
            if m.in_proj_weight is not None:
                out[f"{key}.in_proj"] = m.in_proj_weight
            else:
                for part in ("q", "k", "v"):
                    out[f"{key}.{part}_proj"] = getattr(m, f"{part}_proj_weight")
    return out


def weight_spectra(module: nn.Module) -> dict[str, np.ndarray]:
    """Singular values (float64, descending) of each Linear, Conv (C_out x rest), attention weight."""
    return {name: singular_values(w) for name, w in named_weight_matrices(module).items()}


def rank_bound(shape: tuple[int, ...] | list[int]) -> tuple[int, int]:
    """(bound, width) of a weight of shape (out, in, *kernel): rank <= min(out, in * prod(kernel)).

    The layer is rank-limited by construction when bound < width = out (e.g. a 3x3 conv on 1 channel:
    rank <= 9 of 16 outputs); a low rank of its weight or its output is then not collapse.
    """
    if len(shape) < 2 or min(shape) < 1:
        raise InputError(
            f"rank_bound needs a weight shape (out, in, *kernel) of positive sizes, not {shape}."
        )
    width = int(shape[0])
    fan_in = int(np.prod([int(s) for s in shape[1:]]))
    return min(width, fan_in), width
