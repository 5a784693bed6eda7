"""LL: last-layer weight regularization ||W W^T - I||_F^2 on the encoder's last weight layer (LL paper)."""

from __future__ import annotations

import torch
from torch import nn

from dimcollapse.registry import register
from dimcollapse.regularizers.gram import gram_deviation_sq
from dimcollapse.regularizers.layers import last_weight_layer
from dimcollapse.regularizers.weights import WeightLayerRegularizer


@register("regularizer", "last_layer")
class LastLayerRegularizer(WeightLayerRegularizer):
    """||W W^T - I||_F^2 for W the encoder's last layer (or ``layer``); never a head's layer.

    The encoder is found in any module layout (``regularizers.layers.find_encoder``) or named by ``encoder``.
    """

    default_weight = 1e-3

    def __init__(
        self,
        layer: str | None = None,
        encoder: str | None = None,
    ) -> None:
        super().__init__(None, encoder=encoder)
        self.layer = layer

    def selected(self, model: nn.Module) -> list[tuple[str, torch.Tensor]]:
        """The one regularized layer: (name, weight)."""
        if self._cache is None or self._cache[0] != id(model):
            self._cache = (id(model), [last_weight_layer(model, self.layer, self.encoder)])
        return self._cache[1]

    def layer_term(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        """||W W^T - I||_F^2 (computed on the smaller Gram plus the constant rows - cols when W is tall)."""
        return gram_deviation_sq(weight, form="rows")
