"""Overhead of SO, SRIP (2 power steps) and LDReg on a ResNet-18 (CIFAR stem) SSL training step.

A step = two views through the backbone, a stand-in SSL loss (negative cosine of r1, r2), the
regularizer, backward and an SGD step. Steps with and without each regularizer are interleaved (the
CPU is shared) and the ratio of medians is reported; the regularizer's own forward + backward is also
timed alone. Writes benchmarks/results/regularizers.json.

python benchmarks/bench_regularizers.py [--batch 64] [--steps 5] [--threads 2] [--clock wall|process]

``--clock process`` times CPU seconds of this process (use with --threads 1): on a shared, overloaded
machine wall-clock ratios are dominated by other jobs, CPU time much less so.
Targets (issue 5): SO <= 10%, SRIP <= 15%, LDReg <= 5% overhead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dimcollapse.registry import build
from dimcollapse.utils.atomic import atomic_write_json

TARGETS = {"so": 0.10, "srip": 0.15, "ldreg": 0.05}
OPTIONS: dict[str, dict[str, int]] = {"so": {}, "srip": {"power_steps": 2}, "ldreg": {}}
WEIGHTS = {"so": 1e-4, "srip": 1e-4, "ldreg": 0.01}  # the run's coefficients (the terms hold none)


CLOCK = time.perf_counter


def step(net, opt, views, reg, weight=1.0) -> float:  # type: ignore[no-untyped-def]
    """Seconds of one training step (forward both views, loss + regularizer, backward, SGD step)."""
    t0 = CLOCK()
    opt.zero_grad(set_to_none=True)
    r1, r2 = net(views[0]), net(views[1])
    loss = -F.cosine_similarity(r1, r2, dim=1).mean()
    if reg is not None:
        term = reg(net) if reg.target == "weights" else reg([r1, r2])
        loss = loss + weight * term
    loss.backward()
    opt.step()
    return CLOCK() - t0


def reg_alone(net, reg, views) -> float:  # type: ignore[no-untyped-def]
    """Seconds of the regularizer's forward + backward alone (features precomputed for LDReg)."""
    if reg.target == "weights":
        t0 = CLOCK()
        reg(net).backward()
        return CLOCK() - t0
    with torch.no_grad():
        feats = [net(v) for v in views]
    feats = [f.requires_grad_(True) for f in feats]
    t0 = CLOCK()
    reg(feats).backward()
    return CLOCK() - t0


def main() -> None:
    """Measure and write benchmarks/results/regularizers.json."""
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--clock", choices=["wall", "process"], default="wall")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "regularizers.json"))
    a = p.parse_args()
    global CLOCK
    CLOCK = time.process_time if a.clock == "process" else time.perf_counter
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = build("backbone", "resnet18", in_channels=3, stem="cifar")
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    views = [torch.randn(a.batch, 3, 32, 32) for _ in range(2)]
    regs = {name: build("regularizer", name, **OPTIONS[name]) for name in TARGETS}
    n_layers = len(regs["so"].selected(net))
    for reg in [None, *regs.values()]:  # warm-up
        step(net, opt, views, reg)
    times: dict[str, list[float]] = {"base": [], **{n: [] for n in regs}}
    alone: dict[str, list[float]] = {n: [] for n in regs}
    for i in range(a.steps):
        times["base"].append(step(net, opt, views, None))
        for name, reg in regs.items():
            times[name].append(step(net, opt, views, reg, WEIGHTS[name]))
            alone[name].append(reg_alone(net, reg, views))
        print(f"round {i + 1}/{a.steps}: " + ", ".join(f"{k} {1e3 * v[-1]:.0f} ms" for k, v in times.items()))
    base = statistics.median(times["base"])
    result: dict[str, object] = {
        "backbone": "resnet18 (cifar stem), 32x32, 2 views",
        "batch": a.batch,
        "threads": a.threads,
        "clock": a.clock,
        "steps": a.steps,
        "weight_layers": n_layers,
        "base_step_ms": 1e3 * base,
        "torch": torch.__version__,
    }
    for name in regs:
        med = statistics.median(times[name])
        term = statistics.median(alone[name])
        result[name] = {
            "step_ms": 1e3 * med,
            "overhead_step_ratio": med / base - 1.0,
            "term_fwd_bwd_ms": 1e3 * term,
            "overhead_term_ratio": term / base,
            "target": TARGETS[name],
        }
        print(
            f"{name:6s} step {1e3 * med:7.1f} ms vs base {1e3 * base:7.1f} ms: overhead "
            f"{100 * (med / base - 1):+.1f}% (term alone {1e3 * term:.1f} ms = {100 * term / base:.1f}%), "
            f"target <= {100 * TARGETS[name]:.0f}%"
        )
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    previous[a.clock] = result  # one entry per clock: "wall" and "process"
    atomic_write_json(out, previous)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
