"""Which weight layers a monitor watches, and the statistics of one layer's singular values.

Layers are ``named_modules`` names (as ``diagnostics.weights.named_weight_matrices`` keys them: every
Linear, Conv and attention projection); a selection is a list of names or patterns in the one layer
grammar (``diagnostics/layer_names.py``: shell patterns such as ``"projection_head.*"``,
``"encoder.layer.*.attention.*"``, or ``re:<regex>``); ``None`` means every such layer except the
momentum / EMA copies (a name part such as ``backbone_momentum``, ``momentum_target``, ``teacher``,
``target_encoder``, ``ema_model``: they are not trained, they follow the online layers); name them to
watch them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from dimcollapse.diagnostics.engine.matrices import as_matrix
from dimcollapse.diagnostics.layer_names import PATTERN_HELP, matching
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


_COPY_PART = re.compile(r"(^|_)(momentum|ema|teacher|target)(_|$)", re.IGNORECASE)


def is_momentum_copy(name: str) -> bool:
    """True when a part of the dotted layer name marks a momentum / EMA / teacher / target copy."""
    return any(_COPY_PART.search(part) for part in name.split("."))


def select_layers(module: nn.Module, patterns: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Weight matrices of ``module`` whose name matches any pattern, in order (None: all but the
    momentum copies, or all when every layer is one)."""
    weights = named_weight_matrices(module) or parameter_matrices(module)
    if patterns is None:
        online = {n: w for n, w in weights.items() if not is_momentum_copy(n)}
        return online or weights
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


__all__ = ["is_momentum_copy", "layer_stats", "layer_view", "parameter_matrices", "select_layers"]
