"""The monitor's weight spectra against one training step of the same model (issue 25 item 1).

For ResNet-18 and ResNet-50 (random weights, CIFAR stem), in one process, interleaved round after round
with the same thread count: one training step (forward + backward + SGD step, batch ``--batch`` of 32 x
32 images), the old measurement (float64 SVD of every weight matrix on the CPU, ``torch.linalg.svdvals``)
and the new one (``track.layers.layer_view``: the float64 Gram of every weight on its own device and its
eigenvalues). Reports medians and per-round ratios, and the largest erank difference new vs old.

    python benchmarks/bench_monitor.py [--rounds 2] [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from _common import host, ratio_stats, save  # type: ignore[import-not-found]

from dimcollapse.diagnostics.rank import effective_rank
from dimcollapse.models.resnet import resnet18, resnet50
from dimcollapse.track.layers import layer_view, select_layers


def old_spectra(model: torch.nn.Module) -> dict[str, float]:
    """The measurement before: float64 SVD of every weight on the CPU; erank per layer."""
    return {
        name: effective_rank(torch.linalg.svdvals(w.detach().to("cpu", torch.float64)).numpy())
        for name, w in select_layers(model).items()
    }


def train_step(model: torch.nn.Module, batch: int) -> Callable[[], None]:
    """One SGD step on random 32 x 32 images (loss: mean square of the representation)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, 3, 32, 32)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        model(x).pow(2).mean().backward()
        opt.step()

    return step


def case(name: str, model: torch.nn.Module, batch: int, rounds: int) -> dict[str, Any]:
    """Interleaved rounds of step / old / new; medians, ratios and the erank agreement."""
    step = train_step(model, batch)
    step()  # warm-up of the training kernels (the spectra need none)
    times: dict[str, list[float]] = {"train_step": [], "old_svd64_cpu": [], "new_gram64_device": []}
    err = 0.0
    for _ in range(rounds):
        t = time.perf_counter()
        step()
        times["train_step"].append(time.perf_counter() - t)
        t = time.perf_counter()
        old = old_spectra(model)
        times["old_svd64_cpu"].append(time.perf_counter() - t)
        t = time.perf_counter()
        new = layer_view(model)
        times["new_gram64_device"].append(time.perf_counter() - t)
        err = max(err, max(abs(new[k]["erank"] - old[k]) for k in old))
    step_t = times["train_step"]
    return {
        "model": name,
        "layers": len(select_layers(model)),
        "batch": batch,
        "median_s": {k: statistics.median(v) for k, v in times.items()},
        "old_over_step": ratio_stats(times["old_svd64_cpu"], step_t),
        "new_over_step": ratio_stats(times["new_gram64_device"], step_t),
        "old_over_new": ratio_stats(times["old_svd64_cpu"], times["new_gram64_device"]),
        "max_erank_abs_diff": err,
        "times": times,
    }


def main() -> None:
    """Run both models and save results/monitor.json."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    width = 0.25 if args.quick else 1.0
    cases = [
        case("resnet18", resnet18(stem="cifar", width=width), args.batch, args.rounds),
        case("resnet50", resnet50(stem="cifar", width=width), args.batch, args.rounds),
    ]
    for c in cases:
        m = c["median_s"]
        print(
            f"{c['model']} ({c['layers']} layers, batch {c['batch']}): step {m['train_step']:.2f} s, "
            f"old {m['old_svd64_cpu']:.2f} s ({c['old_over_step']['median']:.1f} steps), "
            f"new {m['new_gram64_device']:.2f} s ({c['new_over_step']['median']:.2f} steps), "
            f"old/new {c['old_over_new']['median']:.1f}x, erank diff {c['max_erank_abs_diff']:.1e}"
        )
    payload = {"host": host(), "threads": args.threads, "rounds": args.rounds, "cases": cases}
    save("monitor", payload, args.quick)


if __name__ == "__main__":
    main()
