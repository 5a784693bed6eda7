"""Base of weight regularizers: layer selection (cached per model) and a sum of per-layer terms."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
from torch import nn

from dimcollapse.regularizers.base import Regularizer
from dimcollapse.regularizers.layers import Heads, select_weight_layers


class WeightLayerRegularizer(Regularizer, ABC):
    """Base of weight regularizers: selects layers by pattern (cached per model) and sums a per-layer term."""

    target: ClassVar[Literal["weights", "features"]] = "weights"
    default_weight: ClassVar[float | None] = 1e-4  # subclasses set their own default coefficient

    def __init__(
        self,
        layers: str | Sequence[str] | None = None,
        include_projector: Heads = False,
        include_predictor: Heads = False,
        encoder: str | None = None,
    ) -> None:
        super().__init__()
        self.layers = layers
        self.include_projector = include_projector
        self.include_predictor = include_predictor
        self.encoder = encoder
        self._cache: tuple[int, list[tuple[str, torch.Tensor]]] | None = None

    def selected(self, model: nn.Module) -> list[tuple[str, torch.Tensor]]:
        """(name, weight) of the regularized layers of ``model`` (resolved once per model)."""
        if self._cache is None or self._cache[0] != id(model):
            chosen = select_weight_layers(
                model, self.layers, self.include_projector, self.include_predictor, self.encoder
            )
            self._cache = (id(model), chosen)
        return self._cache[1]

    @abstractmethod
    def layer_term(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        """The raw term of one layer."""

    def forward(self, model: nn.Module) -> torch.Tensor:
        """sum over the selected layers of layer_term(W)."""
        layers = self.selected(model)
        raw = torch.stack([self.layer_term(name, w) for name, w in layers]).sum()
        return self.record(raw, layers=raw.new_tensor(float(len(layers))))
