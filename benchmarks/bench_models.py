"""Forward + backward time of the CPU backbones at batch 256: ms per batch and ms per image.

python benchmarks/bench_models.py [--threads 2] [--repeats 5] [--batch 256]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from dimcollapse.registry import build

CASES = [
    ("small_resnet", {"in_channels": 1}, (1, 28, 28)),
    ("small_resnet", {"in_channels": 1, "channels_last": False}, (1, 28, 28)),
    ("small_resnet", {"in_channels": 3}, (3, 32, 32)),
    ("mlp", {"in_channels": 1, "image_size": 28}, (1, 28, 28)),
    ("resnet18", {"in_channels": 3, "stem": "cifar"}, (3, 32, 32)),
    ("resnet18", {"in_channels": 1, "stem": "cifar"}, (1, 28, 28)),
    ("vit_tiny", {"in_channels": 1, "image_size": 28, "patch_size": 4}, (1, 28, 28)),
]


def time_fwd_bwd(net: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Median seconds of one forward + backward (sum of r) after one warm-up step."""
    net.train()
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        net.zero_grad(set_to_none=True)
        net(x).sum().backward()
        if i > 0:
            times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def main() -> None:
    """Print ms/batch and ms/img for each backbone case."""
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--only", default="", help="comma-separated backbone names")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    only = set(filter(None, a.only.split(",")))
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    print(f"torch {torch.__version__}, threads {a.threads}, batch {a.batch}, load average {load}")
    for name, kw, shape in CASES:
        if only and name not in only:
            continue
        torch.manual_seed(0)
        net = build("backbone", name, **kw)
        x = torch.randn(a.batch, *shape)
        s = time_fwd_bwd(net, x, a.repeats)
        n_par = sum(q.numel() for q in net.parameters())
        print(
            f"{name:13s} {kw!s:42s} input {shape!s:12s} params {n_par:>10,d}  "
            f"fwd+bwd {1e3 * s:8.1f} ms/batch  {1e3 * s / a.batch:6.3f} ms/img  {a.batch / s:7.0f} img/s"
        )


if __name__ == "__main__":
    main()
