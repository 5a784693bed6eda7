"""MLP backbone: flattens the image and applies Linear-BN-ReLU layers."""

from __future__ import annotations

import torch
from torch import nn

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.models.base import Backbone, init_weights
from dimcollapse.registry import register


@register("backbone", "mlp")
class MLPBackbone(Backbone):
    """r = ReLU(BN(W_L ... ReLU(BN(W_1 vec(x))))), D = hidden_dims[-1]."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        hidden_dims: tuple[int, ...] | list[int] = (512, 512),
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        dims = [int(h) for h in hidden_dims]
        if in_channels < 1 or image_size < 1:
            raise ConfigError(
                f"mlp needs in_channels >= 1 and image_size >= 1, got {in_channels}, {image_size}."
            )
        if not dims or min(dims) < 1:
            raise ConfigError(
                f"mlp hidden_dims must be a non-empty list of positive ints, got {hidden_dims}."
            )
        self.in_channels = in_channels
        self.image_size = image_size
        self.in_features = in_channels * image_size * image_size
        layers: list[nn.Module] = []
        d_in = self.in_features
        for d in dims:
            layers.append(nn.Linear(d_in, d, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(d))
            layers.append(nn.ReLU(inplace=True))
            d_in = d
        self.net = nn.Sequential(*layers)
        self.out_dim = d_in
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """r = MLP(flatten(x)) of shape [N, out_dim]."""
        flat = x.flatten(1)
        if flat.shape[1] != self.in_features:
            raise InputError(
                f"mlp backbone expects {self.in_features} input values per sample "
                f"(in_channels={self.in_channels}, image_size={self.image_size}), got shape {list(x.shape)}; "
                "set in_channels / image_size to match the data."
            )
        return self.net(flat)
