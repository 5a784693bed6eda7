"""Training engine benchmarks: step cost vs bare backbone forward+backward, and time-budgeted accuracy runs.

    python benchmarks/bench_training.py speed [--recipe configs/fmnist/simclr_mlp.yaml] [--threads 2]
    python benchmarks/bench_training.py accuracy --budget-min 10 --recipes simclr_mlp,directclr,byol
        [--steps 2311,2400,1500] [--out runs/bench] [key=value ...]

`speed`: minimum over interleaved repeats (wall and process CPU time) of (a) bare backbone forward +
backward on the 2B pre-made views, (b) one full engine step (views on uint8 + forward + projector + loss +
regularizers + backward + optimizer step) on the same batch; prints the ratio (b)/(a) and images/s
(images = B source images per step).
`accuracy`: for each recipe, calibrates the step time on a few steps, sets optim.max_steps so that training
fits in the budget (the cosine schedule then ends on time), trains with dimcollapse.training.train and
prints kNN / linear / effective rank; appends every result to benchmarks/results/bench_training.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from dimcollapse.cli.train import KEYS
from dimcollapse.training.config import load_config, to_dict
from dimcollapse.training.datamodule import DataSettings, SSLDataModule
from dimcollapse.training.optim import build_optimizer
from dimcollapse.training.parts import module_from_record
from dimcollapse.training.run import train
from dimcollapse.utils.atomic import atomic_write_text

KEEP = (*KEYS, "steps", "epochs", "monitor_fraction")  # the CLI summary keys plus run length
RESULTS = Path(__file__).resolve().parent / "results" / "bench_training.json"


def _median_ratio(num: list[float], den: list[float]) -> float:
    """Median over rounds of num[i] / den[i]."""
    return statistics.median(a / b for a, b in zip(num, den, strict=True))


def step_costs(recipe: str, overrides: list[str], repeats: int = 5) -> dict[str, float]:
    """Seconds per bare backbone fwd+bwd and per full engine step on one batch of the recipe."""
    cfg = load_config(recipe, overrides)
    dm = SSLDataModule(DataSettings.from_config(cfg))
    dm.setup()
    module = module_from_record(to_dict(cfg), dm.info.__dict__)
    module.train()
    opt = build_optimizer(module.model.online_modules(), cfg.optim)
    b = cfg.data.batch_size
    x = dm.pool_images[:b]
    y = dm.pool_labels[:b]
    premade = torch.cat(module.views(x)).detach()

    def bare() -> None:
        module.model.backbone.zero_grad(set_to_none=True)
        module.model.backbone(premade).sum().backward()

    def full() -> None:
        opt.zero_grad(set_to_none=True)
        loss = module.training_step((x, y), 0)["loss"]
        loss.backward()
        opt.step()
        if module.model.uses_momentum_target:
            module.model.update_target(0.99)

    def views_only() -> None:
        with torch.no_grad():
            module.views(x)

    def bare_and_target() -> None:  # BYOL-like methods: the extra no-grad forward they need by design
        bare()
        with torch.no_grad():
            module.model.backbone(premade)

    jobs = [("bare", bare), ("full", full), ("views", views_only)]
    if module.model.uses_momentum_target:
        jobs.append(("bare_target", bare_and_target))
    wall: dict[str, list[float]] = {key: [] for key, _ in jobs}
    cpu: dict[str, list[float]] = {key: [] for key, _ in jobs}
    for _, fn in jobs:
        fn()  # warm-up
    for _ in range(repeats):  # interleaved, so that a busy spell hits both; min is the least disturbed
        for key, fn in jobs:
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[key].append(time.perf_counter() - w0)
            cpu[key].append(time.process_time() - c0)
    t_bare, t_full, t_views = min(wall["bare"]), min(wall["full"]), min(wall["views"])
    # each round's full/bare ratio (measured seconds apart): robust to the host's speed drifting between
    # rounds, which moves the two minima independently
    extra = {"ratio_median_of_rounds": _median_ratio(wall["full"], wall["bare"])}
    if "bare_target" in wall:
        extra["bare_target_s"] = min(wall["bare_target"])
        extra["ratio_vs_bare_plus_target"] = t_full / min(wall["bare_target"])
        extra["ratio_vs_bare_plus_target_median_of_rounds"] = _median_ratio(wall["full"], wall["bare_target"])
    cpu_bare, cpu_full = min(cpu["bare"]), min(cpu["full"])
    return {
        **extra,
        "cpu_bare_s": cpu_bare,
        "cpu_step_s": cpu_full,
        "cpu_ratio": cpu_full / cpu_bare,
        "bare_s": t_bare,
        "step_s": t_full,
        "views_s": t_views,
        "ratio": t_full / t_bare,
        "images_per_s_step": b / t_full,
        "images_per_s_bare": b / t_bare,
        "batch": float(b),
    }


def load_average() -> float:
    """1-minute load average (how busy the shared machine was)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def _append(result: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    data.append(result)
    atomic_write_text(RESULTS, json.dumps(data, indent=2) + "\n")


def cpu_times() -> tuple[int, int]:
    """(busy, steal) jiffies of all CPUs from /proc/stat ((0, 0) where unavailable)."""
    try:
        f = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    steal = f[7] if len(f) > 7 else 0
    return sum(f[:3]) + sum(f[5:7]), steal


def accuracy_run(
    recipe: str, budget_min: float, out: Path, overrides: list[str], margin: float, steps: int | None = None
) -> dict:
    """Train ``recipe`` for about ``budget_min`` minutes (steps from a calibration) and return its metrics.

    With ``steps`` the run trains exactly that many steps with no time cap (comparable whatever the
    host's load); the share of CPU time the hypervisor took ("steal") is recorded either way.
    """
    cost = step_costs(recipe, overrides, repeats=3)  # also recorded for fixed-step runs
    fixed = steps is not None
    if steps is None:
        steps = max(10, int(budget_min * 60.0 * margin / cost["step_s"]))
    cap = "optim.max_time_minutes=null" if fixed else f"optim.max_time_minutes={budget_min}"
    name = Path(recipe).stem
    cfg = load_config(recipe, [*overrides, f"optim.max_steps={steps}", cap])
    busy0, steal0 = cpu_times()
    t0 = time.perf_counter()
    metrics = train(cfg, out / f"{name}_{int(time.time())}")
    wall = time.perf_counter() - t0
    busy1, steal1 = cpu_times()
    steal_share = (steal1 - steal0) / max(1, (busy1 - busy0) + (steal1 - steal0))
    result = {k: metrics[k] for k in KEEP if k in metrics}
    result.update(
        {
            "bench": "accuracy",
            "recipe": recipe,
            "overrides": overrides,
            "budget_min": budget_min,
            "calibrated_step_s": cost["step_s"],
            "wall_s": wall,
            "fixed_steps": fixed,
            "steal_share": steal_share,
            "load_avg": load_average(),
        }
    )
    return result


def main() -> None:
    """Parse arguments and run the chosen benchmark."""
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["speed", "accuracy"])
    p.add_argument("--recipe", default="configs/fmnist/simclr_mlp.yaml")
    p.add_argument("--recipes", default="simclr_mlp", help="comma-separated names in configs/fmnist")
    p.add_argument("--budget-min", type=float, default=10.0)
    p.add_argument("--margin", type=float, default=0.9, help="fraction of the budget the calibration plans")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="runs/bench")
    p.add_argument("--steps", default=None, help="fixed steps per recipe (comma-separated), no time cap")
    p.add_argument("overrides", nargs="*")
    a = p.parse_intermixed_args()
    torch.set_num_threads(a.threads)
    if a.mode == "speed":
        res: dict[str, Any] = step_costs(a.recipe, a.overrides, a.repeats)
        res.update(
            {"bench": "speed", "recipe": a.recipe, "overrides": a.overrides, "load_avg": load_average()}
        )
        print(json.dumps(res, indent=2))
        _append(res)
        return
    names = a.recipes.split(",")
    fixed = [int(v) for v in a.steps.split(",")] if a.steps else [None] * len(names)
    if len(fixed) != len(names):
        p.error("--steps needs one value per recipe")
    for name, steps in zip(names, fixed, strict=True):
        recipe = name if name.endswith(".yaml") else f"configs/fmnist/{name}.yaml"
        res = accuracy_run(recipe, a.budget_min, Path(a.out), a.overrides, a.margin, steps)
        print(json.dumps(res, indent=2))
        _append(res)


if __name__ == "__main__":
    main()
