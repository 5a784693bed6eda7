"""Per-method step cost (issue 14): for each Fashion-MNIST recipe of the method family, one training step
of the engine (views, backbone + projector, the objective with its momentum encoder, queues and
multi-crop as the recipe has them, optimizer step, EMA update) against the bare forward + backward of the
same backbone + projector on the same batch (the recipe's global views, made once; loss mean(z^2)).

Every method's two jobs are built up front and timed interleaved in one process, round after round
(every job of every method once per round), so a busy spell of the shared host hits them alike; the ratio
engine / bare is taken per round and summarised by its median (min-max). Timed at step 0 of the
schedule: queues start full (random unit rows), so the cost is that of a later step, except SwAV's
prototypes, which are frozen during its first 0.2 epoch. With one thread (the default) the clock is the
process's CPU time, less disturbed by the other jobs of a shared host than wall time.

python benchmarks/bench_family_step.py [--quick] [--rounds 5] [--threads 1] [--methods dino swav ...]
Writes benchmarks/results/family_step.json (results/quick/ with --quick) with the load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import host, interleaved, ratio_stats, save
from tables import family_step_table

ROOT = Path(__file__).resolve().parents[1]
# one fmnist recipe per registered objective (SimCLR with its MLP projector)
METHODS = ("simclr_mlp", "directclr", "dcl", "byol", "simsiam", "barlow_twins", "vicreg", "vibcreg",
           "wmse", "mocov2plus", "mocov3", "nnclr", "nnbyol", "ressl", "dino", "swav")  # fmt: skip
QUICK_BATCH = 128  # --quick: the smallest batch every recipe takes (W-MSE whitens sub-batches of 128 rows)


def _config(method: str, batch: int | None) -> Any:
    """The recipe's config, with the per-view batch size overridden when given."""
    from dimcollapse.training.config import load_config

    path = ROOT / "configs" / "fmnist" / f"{method}.yaml"
    return load_config(path, [f"data.batch_size={batch}"] if batch else [])


def load_data(batch: int | None) -> Any:
    """The Fashion-MNIST data module of the base recipe (every family recipe reads the same data)."""
    from dimcollapse.training.datamodule import DataSettings, SSLDataModule

    dm = SSLDataModule(DataSettings.from_config(_config("base", batch)))
    dm.setup()
    return dm


def method_jobs(
    method: str, batch: int | None, dm: Any
) -> tuple[dict[str, Callable[[], Any]], dict[str, Any]]:
    """The 'engine' and 'bare' jobs of one recipe on one batch, and a description of what the step holds."""
    from dimcollapse.training.config import to_dict
    from dimcollapse.training.optim import build_optimizer
    from dimcollapse.training.parts import module_from_record
    from dimcollapse.training.schedules import cosine_momentum

    cfg = _config(method, batch)
    module = module_from_record(to_dict(cfg), dm.info.__dict__)
    module.train()
    model = module.model
    opt = build_optimizer(model.online_modules(), cfg.optim)
    b = cfg.data.batch_size
    x, y = dm.pool_images[:b], dm.pool_labels[:b]
    n_global = module.views.n_views
    premade = torch.cat(module.views(x)[:n_global]).detach()

    def bare() -> None:
        model.zero_grad(set_to_none=True)
        model.projector(model.backbone(premade)).pow(2).mean().backward()

    def engine() -> None:
        opt.zero_grad(set_to_none=True)
        module.training_step((x, y), 0)["loss"].backward()
        opt.step()
        if model.uses_momentum_target:
            model.update_target(cosine_momentum(0.5))

    queues: list[Any] = [m for m in model.modules() if type(m).__name__ == "FeatureQueue"]
    local = f" + {module.views.n_local} local" if module.views.n_local else ""
    info: dict[str, Any] = {
        "objective": cfg.objective.name,
        "projector": cfg.model.projector,
        "batch": b,
        "views": f"{n_global}x{module.input_size}px{local}",
        "momentum_encoder": bool(model.uses_momentum_target),
        "queue_rows": sum(int(q.rows.shape[0]) for q in queues),
    }
    return {"engine": engine, "bare": bare}, info


def measure(methods: list[str], batch: int | None, rounds: int, clock: Callable[[], float]) -> dict[str, Any]:
    """Build every method's jobs, time them all interleaved with ``clock``, return per-method cases."""
    dm = load_data(batch)
    jobs: dict[str, Callable[[], Any]] = {}
    infos: dict[str, dict[str, Any]] = {}
    for method in methods:
        pair, infos[method] = method_jobs(method, batch, dm)
        jobs.update({f"{method}/{k}": fn for k, fn in pair.items()})
    times = interleaved(jobs, rounds, clock)
    cases = {}
    for method, info in infos.items():
        eng, bare = times[f"{method}/engine"], times[f"{method}/bare"]
        cases[method] = {
            **info,
            "seconds_median": {"engine": sorted(eng)[len(eng) // 2], "bare": sorted(bare)[len(bare) // 2]},
            "engine_over_bare": ratio_stats(eng, bare),
        }
    return cases


def main() -> None:
    """Measure, print the table, write results/family_step.json."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    quick_help = f"batch {QUICK_BATCH}, 2 rounds: checks that the script runs"
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=None, help="per-view batch (default: the recipes' 256)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, metavar="RECIPE")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore", message=".*self.log.*")  # training_step outside a Trainer
    rounds = 2 if a.quick else a.rounds
    load_start = list(os.getloadavg())
    # one thread: process CPU time, less disturbed by the other jobs of a shared host than wall time
    clock, clock_name = (time.process_time, "cpu") if a.threads == 1 else (time.perf_counter, "wall")
    cases = measure(a.methods, QUICK_BATCH if a.quick else a.batch, rounds, clock)
    payload = {
        "benchmark": "family_step",
        "clock": clock_name,
        "threads": a.threads,
        "rounds": rounds,
        "load_avg_at_start": load_start,
        "note": "one process, interleaved rounds on a shared host; ratio = engine step / bare fwd+bwd",
        "cases": cases,
    }
    print("\n".join(family_step_table({**payload, "host": host()})))
    print(f"wrote {save('family_step', payload, a.quick)}")


if __name__ == "__main__":
    main()
