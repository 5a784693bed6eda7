"""SO, soft orthogonality (OR paper; Bansal et al. 2018): sum over layers of ||G - I||_F^2, G smaller Gram."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dimcollapse.registry import register
from dimcollapse.regularizers.gram import gram_deviation_sq
from dimcollapse.regularizers.weights import WeightLayerRegularizer


@register("regularizer", "so")
class SoftOrthogonality(WeightLayerRegularizer):
    """SO: coefficient * sum_l ||G_l - I||_F^2, G_l = W W^T if W is wide else W^T W (OR paper, SPEC 4)."""

    def __init__(
        self,
        weight: float = 1e-4,
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
        """||G - I||_F^2 on the smaller Gram of the reshaped weight."""
        return gram_deviation_sq(weight, form="smaller")
