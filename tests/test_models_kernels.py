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


def run(
    conv: nn.Conv2d, x: torch.Tensor, g: torch.Tensor, channels_last: bool, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, ...]:
    """Output, input gradient and weight gradient of ``conv`` in one memory layout and dtype; the
    backward pass starts from the output gradient ``g``."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    m = copy.deepcopy(conv).to(dtype=dtype, memory_format=layout)  # type: ignore[call-overload]
    xi = x.detach().to(dtype).contiguous(memory_format=layout).requires_grad_()
    y = m(xi)
    (y * g.to(dtype)).sum().backward()
    assert xi.grad is not None and m.weight.grad is not None
    return y.detach(), xi.grad, m.weight.grad


def float32_bounds(conv: nn.Conv2d, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per-element bounds on the float32 rounding error of the output and both gradients.

    Each is a sum of L products; in any summation order (blocked, vectorised, FMA) its float32 error is
    at most gamma_L * sum |a_i b_i| with gamma_L = L u / (1 - L u), u = 2^-24 (Higham, Accuracy and
    Stability of Numerical Algorithms, 2nd ed., eq. 3.5). sum |a_i b_i| is the same operation on |x|,
    |w|, |g| in float64; L is the longest reduction (conservatively, the product of the sizes that can
    take part). The bound holds on every CPU for direct and GEMM-based kernels; it is doubled as room for
    kernels that round an extra time (e.g. partial sums kept in a float32 buffer). A wrong kernel (bad
    layout, corrupt memory) misses it by orders of magnitude.
    """
    a = copy.deepcopy(conv).double()
    with torch.no_grad():
        a.weight.abs_()
        if a.bias is not None:
            a.bias.abs_()
    mag = run(a, x.abs(), g.abs(), False, torch.float64)
    kh, kw = conv.kernel_size
    cin, cout = conv.in_channels // conv.groups, conv.out_channels // conv.groups
    n, hout, wout = g.shape[0], g.shape[2], g.shape[3]
    lengths = (cin * kh * kw + 1, cout * kh * kw, n * hout * wout)  # output (+ bias), d input, d weight
    u = 2.0**-24
    return tuple(2.0 * m * (ln * u / (1 - ln * u)) for m, ln in zip(mag, lengths, strict=True))


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
        with torch.no_grad():
            g = torch.linspace(-1, 1, conv(x).numel()).reshape(conv(x).shape)
        exact = run(conv, x, g, False, torch.float64)
        bounds = float32_bounds(conv, x, g)
        for channels_last in (True, False):
            got = run(conv, x, g, channels_last)
            for what, a, ref, bound in zip(
                ("output", "d input", "d weight"), got, exact, bounds, strict=True
            ):
                err = (a.double() - ref).abs()
                worst = float((err / bound.clamp_min(1e-300)).max())
                assert worst <= 1.0, (
                    f"{lname} {what} (channels_last={channels_last}): error {float(err.max()):.3g} is "
                    f"{worst:.3g}x its float32 bound"
                )


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
