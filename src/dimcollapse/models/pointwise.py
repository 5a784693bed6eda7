"""A strided 1x1 convolution computed as subsample + stride-1 convolution.

``conv1x1(x, stride=s) == conv1x1(x[:, :, ::s, ::s], stride=1)`` exactly: a 1x1 kernel reads one pixel, so
a stride only chooses which pixels. We compute it that way because torch 2.13.0+cpu's oneDNN backward for a
channels_last 1x1 stride-2 convolution corrupts the heap on AVX2-only CPUs (docs/known_bugs.md); the
stride-1 kernel is correct on every CPU and just as fast. On other devices (CUDA: cuDNN's strided 1x1
kernel has no such bug and reads 1/s^2 of the input directly, without the strided view's gather) the
plain ``nn.Conv2d`` kernel runs (``plain_kernel``). ``workaround`` (None: by the device) forces either
form (``set_workaround``: trainer.strided_1x1_workaround, the on/off rows of ``make gpu-check``).
Parameters and state_dict keys are those of ``nn.Conv2d``, so checkpoints load either way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def plain_kernel(device: torch.device) -> bool:
    """True where the strided 1x1 kernel is used as is (every device but the CPU)."""
    return device.type != "cpu"


class StridedPointwiseConv2d(nn.Conv2d):
    """y = W * x[:, :, ::s, ::s] (+ b): ``nn.Conv2d(c_in, c_out, 1, stride=s)`` without the strided kernel."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, bias: bool = False) -> None:
        super().__init__(c_in, c_out, kernel_size=1, stride=stride, bias=bias)
        self.workaround: bool | None = None  # None: on the CPU only (``plain_kernel``)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Subsample by the stride, then the stride-1 1x1 convolution (the plain kernel off the CPU)."""
        sh, sw = self.stride
        rewrite = not plain_kernel(x.device) if self.workaround is None else self.workaround
        if not rewrite:
            return super().forward(x)
        if sh > 1 or sw > 1:
            x = x[:, :, ::sh, ::sw]
        return F.conv2d(x, self.weight, self.bias)


def set_workaround(module: nn.Module, on: bool | None) -> int:
    """Force (True / False) or release (None: by device) the rewrite in every ``StridedPointwiseConv2d`` of
    ``module``; returns how many there are."""
    convs = [m for m in module.modules() if isinstance(m, StridedPointwiseConv2d)]
    for conv in convs:
        conv.workaround = on
    return len(convs)
