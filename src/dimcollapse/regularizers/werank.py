"""WeRank (LL paper): ||W W^T - I||_F^2 summed over every weight layer of the encoder."""

from __future__ import annotations

import torch

from dimcollapse.registry import register
from dimcollapse.regularizers.gram import gram_deviation_sq
from dimcollapse.regularizers.weights import WeightLayerRegularizer


@register("regularizer", "werank")
class WeRank(WeightLayerRegularizer):
    """coefficient * sum_l ||W_l W_l^T - I||_F^2 over the selected layers (default: all backbone layers)."""

    default_weight = 1e-3

    def layer_term(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        """||W W^T - I||_F^2 (smaller Gram plus the constant rows - cols for a tall W)."""
        return gram_deviation_sq(weight, form="rows")
