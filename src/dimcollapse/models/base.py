"""Backbone base class: representation size, ordered weight layers, and weight-initialisation conventions.

Initialisation conventions (``init_weights``), applied by every backbone unless stated otherwise:
- Conv2d: Kaiming-normal, fan_out, ReLU gain (He et al. 2015); bias zero.
- Linear: Kaiming-uniform as torch's default for ResNet/MLP; ViT uses truncated normal std 0.02.
- BatchNorm / GroupNorm / LayerNorm: weight one, bias zero (ResNets may zero the last BN of each
  residual branch, Goyal et al. 2017, with ``zero_init_residual=True``).
"""

from __future__ import annotations

import torch
from torch import nn

from dimcollapse.diagnostics.weights import weight_layers
from dimcollapse.errors import InputError


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU) for convs, ones/zeros for norm layers; Linear keeps torch's default."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Backbone(nn.Module):
    """A network mapping images [N, C, H, W] to representations r of size ``out_dim``."""

    out_dim: int
    in_channels: int

    def weight_layers(self) -> list[tuple[str, nn.Module]]:
        """Conv/Linear (and attention) layers ordered input -> output (names as in ``named_modules``)."""
        return weight_layers(self)

    @property
    def last_layer_name(self) -> str:
        """Name of the last weight layer (the one last-layer regularization acts on)."""
        return self.weight_layers()[-1][0]

    def check_input(self, x: torch.Tensor) -> None:
        """Raise InputError unless ``x`` is a float tensor [N, in_channels, H, W]."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise InputError(
                f"{type(self).__name__} expects images of shape [N, {self.in_channels}, H, W], got "
                f"{list(x.shape)}; pass in_channels={x.shape[1] if x.dim() == 4 else '?'} or fix the data."
            )
        if not x.is_floating_point():
            raise InputError(
                f"{type(self).__name__} expects a float tensor, got {x.dtype}; normalise the images first "
                "(dimcollapse.data.views.eval_transform)."
            )
