"""Upstream bug repro (no project code): channels_last 1x1 stride-2 conv backward corrupts the heap.

Seen with torch 2.13.0+cpu on AVX2-only CPUs (AMD EPYC, no AVX-512, no AMX): glibc aborts with
"free(): invalid next size" or "corrupted size vs. prev_size", or hangs.
Run: python benchmarks/repro/channels_last_1x1_stride2.py
"""

import torch

conv = torch.nn.Conv2d(4, 8, 1, stride=2, bias=False).to(memory_format=torch.channels_last)
for _ in range(200):
    x = torch.randn(16, 4, 15, 15).contiguous(memory_format=torch.channels_last).requires_grad_()
    conv(x).square().sum().backward()
print("no crash after 200 backward passes")
