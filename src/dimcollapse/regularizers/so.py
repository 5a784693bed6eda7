"""SO, soft orthogonality (OR paper; Bansal et al. 2018): sum over layers of ||G - I||_F^2, G smaller Gram."""

from __future__ import annotations

import torch

from dimcollapse.registry import register
from dimcollapse.regularizers.gram import gram_deviation_sq
from dimcollapse.regularizers.weights import WeightLayerRegularizer


@register("regularizer", "so")
class SoftOrthogonality(WeightLayerRegularizer):
    """SO: coefficient * sum_l ||G_l - I||_F^2, G_l = W W^T if W is wide else W^T W (OR paper, SPEC 4)."""

    default_weight = 1e-4

    def layer_term(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        """||G - I||_F^2 on the smaller Gram of the reshaped weight."""
        return gram_deviation_sq(weight, form="smaller")
