"""The strided 1x1 convolution picks its kernel by device: the CPU keeps the subsample + stride-1 rewrite
(a CPU oneDNN bug), other devices run the plain strided kernel; both give the same output."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dimcollapse.models.pointwise import StridedPointwiseConv2d, plain_kernel


def test_kernel_choice_by_device() -> None:
    assert not plain_kernel(torch.device("cpu"))
    assert plain_kernel(torch.device("cuda")) and plain_kernel(torch.device("meta"))


def test_cpu_path_is_the_rewrite_and_the_plain_path_agrees() -> None:
    torch.manual_seed(0)
    conv = StridedPointwiseConv2d(4, 6, stride=2, bias=True)
    x = torch.randn(2, 4, 9, 9)
    rewrite = F.conv2d(x[:, :, ::2, ::2], conv.weight, conv.bias)
    assert torch.equal(conv(x), rewrite)  # the CPU keeps today's computation, bit for bit
    plain = F.conv2d(x, conv.weight, conv.bias, stride=2)  # what another device runs
    xs = x[:, :, ::2, ::2]  # float32 error of a length-4 dot product: <= 4 eps sum_k |w_k x_k| (+ bias)
    scale = F.conv2d(xs.abs(), conv.weight.detach().abs(), conv.bias.detach().abs()).max()
    torch.testing.assert_close(plain, rewrite, rtol=0, atol=float(5 * torch.finfo(torch.float32).eps * scale))
    meta = StridedPointwiseConv2d(4, 6, stride=2).to("meta")
    assert meta(torch.empty(2, 4, 9, 9, device="meta")).shape == (2, 6, 5, 5)  # the plain kernel's path
