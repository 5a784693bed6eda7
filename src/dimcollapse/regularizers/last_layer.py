"""LL: last-layer weight regularization ||W W^T - I||_F^2 on the encoder's last weight layer (LL paper)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from dimcollapse.registry import register
from dimcollapse.regularizers.gram import gram_deviation_sq
from dimcollapse.regularizers.layers import last_weight_layer
from dimcollapse.regularizers.schedule import ScheduleOptions
from dimcollapse.regularizers.weights import WeightLayerRegularizer

if TYPE_CHECKING:
    from typing import Unpack


@register("regularizer", "last_layer")
class LastLayerRegularizer(WeightLayerRegularizer):
    """coefficient * ||W W^T - I||_F^2 for W the encoder's last layer (or ``layer``); never a head's layer.

    The encoder is found in any module layout (``regularizers.layers.find_encoder``) or named by ``encoder``.
    """

    def __init__(
        self,
        weight: float = 1e-3,
        layer: str | None = None,
        encoder: str | None = None,
        **schedule: Unpack[ScheduleOptions],
    ) -> None:
        super().__init__(weight, None, encoder=encoder, **schedule)
        self.layer = layer

    def selected(self, model: nn.Module) -> list[tuple[str, torch.Tensor]]:
        """The one regularized layer: (name, weight)."""
        if self._cache is None or self._cache[0] != id(model):
            self._cache = (id(model), [last_weight_layer(model, self.layer, self.encoder)])
        return self._cache[1]

    def layer_term(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        """||W W^T - I||_F^2 (computed on the smaller Gram plus the constant rows - cols when W is tall)."""
        return gram_deviation_sq(weight, form="rows")
