"""ResNet-18/34/50 (He et al. 2016) with an ImageNet or CIFAR stem and a width multiplier.

The representation r is the global-average-pooled output of the last stage (no classifier):
D = round(512 * width) * expansion (expansion 1 for BasicBlock, 4 for Bottleneck).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from dimcollapse.errors import ConfigError
from dimcollapse.models.base import Backbone, init_weights
from dimcollapse.models.pointwise import StridedPointwiseConv2d
from dimcollapse.registry import register

Stem = Literal["imagenet", "cifar"]


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module | None:
    """1x1 conv + BN projection shortcut when shape changes (He et al. 2016, option B), else None."""
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(StridedPointwiseConv2d(c_in, c_out, stride), nn.BatchNorm2d(c_out))


class BasicBlock(nn.Module):
    """y = ReLU(BN(conv3x3(ReLU(BN(conv3x3(x))))) + shortcut(x))."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        c_out = planes * self.expansion
        # The shortcut is registered first so the residual branch's last conv is the block's last layer.
        self.downsample = _shortcut(c_in, c_out, stride)
        self.conv1 = nn.Conv2d(c_in, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)

    def last_bn(self) -> nn.BatchNorm2d:
        """The BN closing the residual branch (zeroed by ``zero_init_residual``)."""
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual basic block."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """y = ReLU(BN(conv1x1(ReLU(BN(conv3x3(ReLU(BN(conv1x1(x))))))))) + shortcut(x)), stride on the 3x3."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        c_out = planes * self.expansion
        self.downsample = _shortcut(c_in, c_out, stride)
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)

    def last_bn(self) -> nn.BatchNorm2d:
        """The BN closing the residual branch."""
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual bottleneck block."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(Backbone):
    """Generic ResNet: stem, four stages of residual blocks, global average pool -> r in R^D."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, ...],
        widths: tuple[int, ...],
        in_channels: int = 3,
        stem: Stem = "imagenet",
        zero_init_residual: bool = False,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ConfigError(f"in_channels must be >= 1, got {in_channels}.")
        if stem not in ("imagenet", "cifar"):
            raise ConfigError(f"unknown ResNet stem '{stem}'. Valid stems: cifar, imagenet.")
        if len(layers) != len(widths) or not layers or min(layers) < 1 or min(widths) < 1:
            raise ConfigError(
                f"ResNet needs one width per stage and >= 1 block per stage; got layers={layers}, "
                f"widths={widths}."
            )
        self.in_channels = in_channels
        self.stem_kind = stem
        c0 = widths[0]
        if stem == "imagenet":  # 7x7 stride 2 + 3x3 max-pool stride 2
            self.conv1 = nn.Conv2d(in_channels, c0, 7, 2, 3, bias=False)
            pool: nn.Module = nn.MaxPool2d(3, 2, 1)
        else:  # CIFAR: 3x3 stride 1, no max-pool
            self.conv1 = nn.Conv2d(in_channels, c0, 3, 1, 1, bias=False)
            pool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(c0)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = pool
        c_in = c0
        stages: list[nn.Sequential] = []
        for i, (n_blocks, planes) in enumerate(zip(layers, widths, strict=True)):
            blocks: list[nn.Module] = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(c_in, planes, stride))
                c_in = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        for i, stage in enumerate(stages):
            self.add_module(f"layer{i + 1}", stage)
        self.stages = len(stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = c_in
        init_weights(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn().weight)
        # NHWC convs are ~2x faster than NCHW on CPU (oneDNN) and the usual choice on GPU; conv weights are
        # then non-contiguous in NCHW order: read them with .reshape / .flatten, not .view.
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """r = avgpool(stages(stem(x))) of shape [N, out_dim]."""
        self.check_input(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return torch.flatten(self.avgpool(x), 1)


def _widths(width: float, base: tuple[int, ...] = (64, 128, 256, 512)) -> tuple[int, ...]:
    if not width > 0:
        raise ConfigError(f"ResNet width multiplier must be > 0, got {width}.")
    return tuple(max(1, round(w * width)) for w in base)


@register("backbone", "resnet18")
def resnet18(
    in_channels: int = 3,
    stem: Stem = "imagenet",
    width: float = 1.0,
    zero_init_residual: bool = False,
    channels_last: bool = True,
) -> ResNet:
    """ResNet-18: BasicBlock x (2, 2, 2, 2), D = 512 * width (He et al. 2016)."""
    return ResNet(
        BasicBlock, (2, 2, 2, 2), _widths(width), in_channels, stem, zero_init_residual, channels_last
    )


@register("backbone", "resnet34")
def resnet34(
    in_channels: int = 3,
    stem: Stem = "imagenet",
    width: float = 1.0,
    zero_init_residual: bool = False,
    channels_last: bool = True,
) -> ResNet:
    """ResNet-34: BasicBlock x (3, 4, 6, 3), D = 512 * width (He et al. 2016)."""
    return ResNet(
        BasicBlock, (3, 4, 6, 3), _widths(width), in_channels, stem, zero_init_residual, channels_last
    )


@register("backbone", "resnet50")
def resnet50(
    in_channels: int = 3,
    stem: Stem = "imagenet",
    width: float = 1.0,
    zero_init_residual: bool = False,
    channels_last: bool = True,
) -> ResNet:
    """ResNet-50: Bottleneck x (3, 4, 6, 3), D = 2048 * width (He et al. 2016)."""
    return ResNet(
        Bottleneck, (3, 4, 6, 3), _widths(width), in_channels, stem, zero_init_residual, channels_last
    )
