"""Cost of batched view augmentation against a training step of the backbone, and against kornia.

For batch 256 and 2 views: our ``ViewAugment`` (one affine_grid + grid_sample for crop/flip/resize,
one colour matrix per image), kornia's ``AugmentationSequential`` with the same operations, and a
small_resnet forward + backward + SGD step on the 512 views. Timings are interleaved (5 rounds) so load
changes hit every contender alike; medians are reported. Writes benchmarks/results/views.json.

    python benchmarks/bench_views.py [--threads 1] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import kornia.augmentation as K
import torch

from dimcollapse.data.views import ViewAugment
from dimcollapse.registry import build
from dimcollapse.utils.atomic import atomic_write_json


def _kornia_pipeline(channels: int, size: int) -> K.AugmentationSequential:
    if channels == 3:
        return K.AugmentationSequential(
            K.RandomResizedCrop((size, size), scale=(0.08, 1.0)),
            K.RandomHorizontalFlip(),
            K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
            K.RandomGrayscale(p=0.2),
        )
    return K.AugmentationSequential(
        K.RandomResizedCrop((size, size), scale=(0.2, 1.0)),
        K.RandomHorizontalFlip(),
        K.ColorJitter(0.4, 0.4, 0.0, 0.0, p=0.8),
    )


def _time(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(channels: int, size: int, rounds: int, batch: int = 256) -> dict[str, float]:
    """Median ms of ours / kornia (2 views of ``batch`` images) and of one backbone step on 2 x batch."""
    x = torch.randint(0, 256, (batch, channels, size, size), dtype=torch.uint8)
    ours = ViewAugment("simclr", size, channels, seed=0)
    kaug = _kornia_pipeline(channels, size)
    backbone = build("backbone", "small_resnet", in_channels=channels)
    opt = torch.optim.SGD(backbone.parameters(), lr=0.01)
    views = torch.randn(2 * batch, channels, size, size)

    def step() -> None:
        opt.zero_grad()
        backbone(views).pow(2).mean().backward()
        opt.step()

    fns: dict[str, Callable[[], object]] = {
        "ours": lambda: ours(x),
        "kornia": lambda: [kaug(x.float() / 255) for _ in range(2)],
        "backbone_step": step,
    }
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            times[k].append(_time(fn))
    med = {f"{k}_ms": 1000 * statistics.median(v) for k, v in times.items()}
    med["ours_over_step"] = med["ours_ms"] / med["backbone_step_ms"]
    med["kornia_over_step"] = med["kornia_ms"] / med["backbone_step_ms"]
    return med


def main() -> None:
    """Run both image kinds, print a markdown table, write results/views.json."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = {f"{c}x{s}x{s}": measure(c, s, args.rounds) for c, s in ((1, 28), (3, 32))}
    print("| batch 256, 2 views | ours ms | kornia ms | backbone step ms | ours / step | kornia / step |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, m in rows.items():
        print(
            f"| {name} | {m['ours_ms']:.1f} | {m['kornia_ms']:.1f} | {m['backbone_step_ms']:.0f} | "
            f"{m['ours_over_step']:.1%} | {m['kornia_over_step']:.1%} |"
        )
    out = Path(__file__).parent / "results" / "views.json"
    atomic_write_json(out, {"threads": args.threads, "rounds": args.rounds, "results": rows})


if __name__ == "__main__":
    main()
