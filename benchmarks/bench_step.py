"""Training step against what an expert would write (issue 15): the engine's SimCLR step vs the bare
backbone forward + backward and vs a plain loop with the same model and optimizer using (a) our SimCLR loss
and (b) lightly's NTXentLoss; plus each regularizer's and the collapse monitor's own cost (the term's
forward + backward alone, interleaved with whole steps), as a share of one engine step.

python benchmarks/bench_step.py [--quick] [--rounds 7] [--recipe configs/fmnist/simclr_mlp.yaml]
Writes benchmarks/results/step.json (results/quick/ with --quick). lightly is optional
(`pip install --no-deps lightly`); its loss module imports torchvision.ops, which we replace by a
stand-in module whose names raise if used (NTXentLoss uses none of them).
"""

from __future__ import annotations

import argparse
import sys
import types
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_ratio, interleaved, ratio_stats, save


def _torchvision_stand_in() -> None:
    """Register a minimal ``torchvision.ops`` whose every name is a class that refuses to be built."""
    if "torchvision" in sys.modules:
        return

    def missing(name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)

        def refuse(*_a: Any, **_k: Any) -> None:
            raise RuntimeError(f"torchvision.ops.{name} is a benchmark stand-in; install torchvision")

        return type(name, (), {"__init__": refuse})

    tv, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
    ops.__getattr__ = missing  # type: ignore[method-assign]
    tv.ops = ops  # type: ignore[attr-defined]
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = tv, ops


def lightly_loss(temperature: float) -> torch.nn.Module | None:
    """lightly's NTXentLoss, or None when lightly is not installed."""
    _torchvision_stand_in()
    try:
        from lightly.loss import NTXentLoss
    except ImportError:
        return None
    return NTXentLoss(temperature=temperature)


def step_jobs(
    recipe: str, overrides: list[str], batch: int | None
) -> tuple[dict[str, Callable[[], Any]], Any]:
    """Whole-step contenders on one batch of the recipe, and the module (for the term jobs)."""
    from dimcollapse.training.config import load_config, to_dict
    from dimcollapse.training.datamodule import DataSettings, SSLDataModule
    from dimcollapse.training.optim import build_optimizer
    from dimcollapse.training.parts import module_from_record

    cfg = load_config(recipe, [*overrides, *([f"data.batch_size={batch}"] if batch else [])])
    dm = SSLDataModule(DataSettings.from_config(cfg))
    dm.setup()
    module = module_from_record(to_dict(cfg), dm.info.__dict__)
    module.train()
    model = module.model
    opt = build_optimizer(model.online_modules(), cfg.optim)
    b = cfg.data.batch_size
    x, y = dm.pool_images[:b], dm.pool_labels[:b]
    premade = torch.cat(module.views(x)).detach()

    def bare() -> None:
        model.backbone.zero_grad(set_to_none=True)
        model.backbone(premade).sum().backward()

    def engine() -> None:
        opt.zero_grad(set_to_none=True)
        module.training_step((x, y), 0)["loss"].backward()
        opt.step()

    def plain(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            opt.zero_grad(set_to_none=True)
            v1, v2 = module.views(x)
            z = model.projector(model.backbone(torch.cat([v1, v2])))
            z1, z2 = z.chunk(2)
            loss_fn(z1, z2).backward()
            opt.step()

        return run

    jobs: dict[str, Callable[[], Any]] = {"bare": bare, "engine": engine}
    jobs["plain_ours"] = plain(model.objective)
    lightly = lightly_loss(float(getattr(model.objective, "temperature", 0.5)))
    if lightly is not None:
        jobs["plain_lightly"] = plain(lightly)
    return jobs, (module, premade, dm)


def term_jobs(module: Any, premade: torch.Tensor, dm: Any, every: int) -> dict[str, Callable[[], Any]]:
    """Each term's own forward + backward (regularizers) and the monitor's measurement / ``every``."""
    from dimcollapse.registry import build
    from dimcollapse.training.callbacks.collapse_monitor import CollapseMonitor

    backbone = module.model.backbone
    with torch.no_grad():
        r = backbone(premade)
    half = r.shape[0] // 2
    jobs: dict[str, Callable[[], Any]] = {}
    for name in ("so", "srip"):
        reg = build("regularizer", name)

        def weight_term(reg: Any = reg) -> None:
            backbone.zero_grad(set_to_none=True)
            (1e-4 * reg(backbone)).backward()

        jobs[name] = weight_term
    ldreg = build("regularizer", "ldreg")

    def ldreg_term() -> None:
        leaf = r.detach().requires_grad_(True)
        (0.01 * ldreg([leaf[:half], leaf[half:]])).backward()

    jobs["ldreg"] = ldreg_term
    monitor = CollapseMonitor(dm.pool_images[:512], every_n_steps=every)
    jobs[f"monitor_per_step (every {every})"] = lambda: monitor.measure(module, 0)
    return jobs


def main() -> None:
    """Interleave the whole steps and the terms; print each ratio with min / median / max."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="batch 32, 2 rounds: checks that the script runs")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--recipe", default="configs/fmnist/simclr_mlp.yaml")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore", message=".*self.log.*")  # training_step outside a Trainer
    rounds = 2 if a.quick else a.rounds
    jobs, (module, premade, dm) = step_jobs(a.recipe, a.overrides, 32 if a.quick else None)
    every = 50
    terms = term_jobs(module, premade, dm, every)
    times = interleaved({**jobs, **terms}, rounds)
    mon = next(k for k in terms if k.startswith("monitor"))
    times[mon] = [t / every for t in times[mon]]
    ratios = {f"engine / {k}": ratio_stats(times["engine"], times[k]) for k in jobs if k != "engine"}
    shares = {f"{k} / engine step": ratio_stats(times[k], times["engine"]) for k in terms}
    for key, s in {**ratios, **shares}.items():
        print(f"{key}: {fmt_ratio(s)}")
    payload = {
        "benchmark": "step",
        "recipe": a.recipe,
        "overrides": a.overrides,
        "batch": int(premade.shape[0] // 2),
        "threads": a.threads,
        "rounds": rounds,
        "seconds_median": {k: sorted(v)[len(v) // 2] for k, v in times.items()},
        "ratios": ratios,
        "term_shares": shares,
    }
    print(f"\nwrote {save('step', payload, a.quick)}")


if __name__ == "__main__":
    main()
