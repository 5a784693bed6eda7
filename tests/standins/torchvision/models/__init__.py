"""``torchvision.models.resnet18`` with torchvision's parameter names (conv1, bn1, layer1..4, fc)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dimcollapse.models.resnet import resnet18 as _backbone


class ResNet(nn.Module):
    """torchvision's ResNet layout: the stem and stages at the top level, then avgpool and fc."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        body = _backbone(channels_last=False)
        for name, child in body.named_children():
            self.add_module(name, child)
        self._body = [body]  # not a child: its modules are ours already
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """fc(flatten(avgpool(layer4(...))))."""
        return self.fc(self._body[0](x))


def resnet18(weights: Any = None, num_classes: int = 1000) -> ResNet:
    """ResNet-18 (no weights are downloaded here: ``weights`` must be None)."""
    if weights is not None:
        raise RuntimeError("the stand-in cannot download weights")
    return ResNet(num_classes)
