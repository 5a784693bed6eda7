"""Every conv of every backbone gives the same forward and gradients in channels_last and contiguous memory.

torch 2.13.0+cpu's oneDNN backward of a channels_last 1x1 stride-2 conv corrupts the heap on AVX2-only
hosts (docs/known_bugs.md). Before the strided 1x1 shortcuts were rewritten as subsample + stride-1
conv, this file aborted the test process on such hosts; now every layer must agree in both layouts.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dimcollapse.models.pointwise import StridedPointwiseConv2d
from dimcollapse.registry import build

BACKBONES = [
    ("resnet18", {"stem": "cifar", "width": 0.125}, 16),
    ("resnet18", {"stem": "imagenet", "width": 0.125}, 32),
    ("resnet50", {"stem": "cifar", "width": 0.0625}, 16),
    ("small_resnet", {"in_channels": 1}, 28),
    ("vit_tiny", {"image_size": 16, "patch_size": 4}, 16),
]


def conv_calls(net: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Conv2d, torch.Size]]:
    """(name, module, input shape) of every Conv2d call in one forward pass."""
    calls: list[tuple[str, nn.Conv2d, torch.Size]] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, inp, name=name: calls.append((name, mod, inp[0].shape)))
        for name, m in net.named_modules()
        if isinstance(m, nn.Conv2d)
    ]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    return calls


def run(conv: nn.Conv2d, x: torch.Tensor, channels_last: bool) -> tuple[torch.Tensor, ...]:
    """Output, input gradient and weight gradient of ``conv`` in one memory layout."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    m = copy.deepcopy(conv).to(memory_format=layout)  # type: ignore[call-overload]
    xi = x.detach().clone().contiguous(memory_format=layout).requires_grad_()
    y = m(xi)
    g = torch.linspace(-1, 1, y.numel()).reshape(y.shape)
    (y * g).sum().backward()
    assert xi.grad is not None and m.weight.grad is not None
    return y.detach(), xi.grad, m.weight.grad


@pytest.mark.parametrize(
    ("name", "kw", "size"), BACKBONES, ids=[f"{b[0]}-{i}" for i, b in enumerate(BACKBONES)]
)
def test_every_conv_agrees_in_both_layouts(name: str, kw: dict, size: int) -> None:
    kw = dict(kw)
    channels = kw.setdefault("in_channels", 3)
    net = build("backbone", name, **kw).eval()
    calls = conv_calls(net, torch.randn(2, channels, size, size))
    assert calls, "no convolution was called"
    for lname, conv, shape in calls:
        x = torch.randn(shape)
        for a, b in zip(run(conv, x, True), run(conv, x, False), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=lambda m, n=lname: f"{n}: {m}")


def test_no_backbone_uses_a_strided_pointwise_kernel() -> None:
    """A 1x1 conv with stride > 1 is always the subsampling StridedPointwiseConv2d, never nn.Conv2d."""
    for name, kw, _ in BACKBONES:
        net = build("backbone", name, **kw)
        for mname, m in net.named_modules():
            if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride != (1, 1):
                assert isinstance(m, StridedPointwiseConv2d), f"{name}.{mname} runs the strided 1x1 kernel"


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_strided_pointwise_equals_the_strided_kernel(stride: int) -> None:
    """Subsample + stride-1 conv equals torch's strided 1x1 conv (contiguous layout: the safe kernel)."""
    ours = StridedPointwiseConv2d(5, 7, stride, bias=True)
    ref = nn.Conv2d(5, 7, 1, stride, bias=True)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(3, 5, 11, 10, dtype=torch.float64)
    torch.testing.assert_close(ours.double()(x), ref.double()(x), rtol=1e-12, atol=1e-12)
