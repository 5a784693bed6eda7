"""WeRank (LL paper): ||W W^T - I||_F^2 summed over every weight layer of the encoder."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dimcollapse.registry import register
from dimcollapse.regularizers.gram import gram_deviation_sq
from dimcollapse.regularizers.weights import WeightLayerRegularizer


@register("regularizer", "werank")
class WeRank(WeightLayerRegularizer):
    """coefficient * sum_l ||W_l W_l^T - I||_F^2 over the selected layers (default: all backbone layers)."""

    def __init__(
        self,
        weight: float = 1e-3,
        layers: str | Sequence[str] | None = None,
        include_projector: bool = False,
        include_predictor: bool = False,
        schedule: str = "constant",
        milestones: Sequence[float] = (),
        multipliers: Sequence[float] = (),
        warmup_epochs: float = 0.0,
        off_epoch: float | None = None,
    ) -> None:
        super().__init__(
            weight,
            layers,
            include_projector,
            include_predictor,
            schedule=schedule,
            milestones=milestones,
            multipliers=multipliers,
            warmup_epochs=warmup_epochs,
            off_epoch=off_epoch,
        )

    def layer_term(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        """||W W^T - I||_F^2 (smaller Gram plus the constant rows - cols for a tall W)."""
        return gram_deviation_sq(weight, form="rows")
