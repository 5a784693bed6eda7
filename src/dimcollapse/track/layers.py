"""Which weight layers a monitor watches, and the statistics of one layer's singular values.

Layers are ``named_modules`` names (as ``diagnostics.weights.named_weight_matrices`` keys them: every
Linear, Conv and attention projection); a selection is a list of names or patterns in the one layer
grammar (``diagnostics/layer_names.py``: shell patterns such as ``"projection_head.*"``,
``"encoder.layer.*.attention.*"``, or ``re:<regex>``); ``None`` means every such layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from dimcollapse.diagnostics.layer_names import PATTERN_HELP, matching
from dimcollapse.diagnostics.matrices import as_matrix
from dimcollapse.diagnostics.rank import effective_rank
from dimcollapse.diagnostics.weights import named_weight_matrices, singular_values
from dimcollapse.errors import ConfigError


def parameter_matrices(module: nn.Module) -> dict[str, torch.Tensor]:
    """Fallback for modules whose layer types are hidden (TorchScript): every 'x.weight' with >= 2 dims."""
    return {
        name[: -len(".weight")]: as_matrix(p)
        for name, p in module.named_parameters()
        if name.endswith(".weight") and p.ndim >= 2
    }


def select_layers(module: nn.Module, patterns: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Weight matrices of ``module`` whose name matches any pattern (all of them for None), in order."""
    weights = named_weight_matrices(module) or parameter_matrices(module)
    if patterns is None:
        return weights
    if isinstance(patterns, str):
        patterns = [patterns]
    chosen = {n: weights[n] for n in matching(weights, patterns)}
    if not chosen:
        shown = ", ".join(list(weights)[:12]) + (", ..." if len(weights) > 12 else "")
        raise ConfigError(
            f"no weight layer matches {list(patterns)}; layers with a weight matrix are: "
            f"{shown or '(none)'}. "
            f"Pass names or patterns: {PATTERN_HELP}."
        )
    return chosen


def layer_stats(sv: np.ndarray) -> dict[str, float]:
    """erank of the singular values, sigma_max, sigma_min and ||G - I||_F^2 = sum_i (s_i^2 - 1)^2.

    G is the smaller Gram (W W^T or W^T W): its eigenvalues are the squared singular values.
    """
    return {
        "erank": effective_rank(sv) if sv.size and sv.max() > 0 else 0.0,
        "sigma_max": float(sv[0]) if sv.size else 0.0,
        "sigma_min": float(sv[-1]) if sv.size else 0.0,
        "orth_dev": float(np.sum((sv**2 - 1.0) ** 2)),
    }


def layer_view(module: nn.Module, patterns: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """{layer name: layer_stats} for the selected weight layers of ``module``."""
    return {name: layer_stats(singular_values(w)) for name, w in select_layers(module, patterns).items()}


__all__ = ["layer_stats", "layer_view", "parameter_matrices", "select_layers"]
