"""A small ResNet for CPU runs (Fashion-MNIST / digits sized inputs): CIFAR stem, BasicBlocks."""

from __future__ import annotations

from dimcollapse.errors import ConfigError
from dimcollapse.models.resnet import BasicBlock, ResNet
from dimcollapse.registry import register


@register("backbone", "small_resnet")
def small_resnet(
    in_channels: int = 1,
    widths: tuple[int, ...] | list[int] = (16, 32, 64, 128),
    blocks: tuple[int, ...] | list[int] = (1, 1, 1, 1),
    zero_init_residual: bool = False,
    channels_last: bool = True,
) -> ResNet:
    """Small ResNet: 3x3 stem, BasicBlock stages of ``widths`` (stride 2 from stage 2), D = widths[-1]."""
    widths_t, blocks_t = tuple(int(w) for w in widths), tuple(int(b) for b in blocks)
    if len(widths_t) != len(blocks_t):
        raise ConfigError(
            f"small_resnet needs as many block counts as widths; got widths={widths_t}, blocks={blocks_t}."
        )
    return ResNet(BasicBlock, blocks_t, widths_t, in_channels, "cifar", zero_init_residual, channels_last)
